"""The agent benchmark: PPO on keypoints and on pixels at equal steps, random play beside them.

One *cell* is a game, an observation (`permakey.envs.sb3.OBSERVATIONS`, or "random") and a
training seed. A cell trains a stable-baselines3 PPO agent for the budget's environment steps
(an MLP on keypoints, SB3's Nature CNN on pixels; the same Atari hyperparameters otherwise),
then plays ``eval_episodes`` episodes twice from the same environment seeds: greedy (the most
probable action) and stochastic (actions sampled from the policy). A random cell plays the
uniform random policy on those episodes. Every cell writes one JSON file,
``OUT/cells/<Game>/<observation>/seed-<s>.json``; a finished cell is never run again, so an
interrupted benchmark resumes where it stopped, and more seeds or games extend it.

`agent_table` summarises the cells per game with the interquartile mean of the runs' mean
returns and its stratified bootstrap 95% interval (`permakey.evaluation.intervals`), whether
each agent beats random play and the pixel agent (the interval of the difference excludes
0), and an aggregate over games of human-normalised scores.

Keypoint models default to the shipped ``pretrained:GAME``. Nothing here is in the PermaKey
paper, whose agents were recurrent DQN agents trained far longer (AGENTS.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from permakey.errors import UserError
from permakey.evaluation.intervals import bootstrap_interval, difference_interval, iqm
from permakey.fileio import write_json_atomic
from permakey.locks import hold_folder

RANDOM = "random"
# The four observations of a table row, in its order; "random" needs no training.
SETTINGS = (RANDOM, "pixels", "keypoints", "keypoints+features")
GAMES = ("Pong", "Breakout", "SpaceInvaders", "MsPacman")
BUDGET_JSON = "budget.json"
# Evaluation episodes come from other environment seeds than any training run's.
EVAL_SEED = 100_000
# Human and random scores of the Atari 100k literature (Kaiser et al. 2020; rliable's
# atari_100k tables), for human-normalised scores: (score - random) / (human - random).
REFERENCE_SCORES = {
    "Pong": (-20.7, 14.6),
    "Breakout": (1.7, 30.5),
    "SpaceInvaders": (148.0, 1668.7),
    "MsPacman": (307.3, 6951.6),
    "Frostbite": (65.2, 4334.7),
    "Seaquest": (68.4, 42054.7),
    "BattleZone": (2360.0, 37187.5),
    "MontezumaRevenge": (0.0, 4753.3),
}


@dataclass(frozen=True)
class AgentBudget:
    """What every cell of a benchmark gets; the same for every observation.

    Attributes:
        timesteps: environment (agent) steps of training, over all ``n_envs`` environments.
        eval_episodes: episodes of each evaluation (greedy, stochastic, random).
        max_episode_steps: agent steps after which an episode is cut, in training and
            evaluation (1,000 steps: 4,000 frames, over a minute of play; a greedy agent that
            never serves would otherwise play for half an hour).
        n_envs: environments stepped together (one keypoint model call per step).
        frame_stack: observations stacked (4, as DQN's frames).
    """

    timesteps: int = 25_000
    eval_episodes: int = 20
    max_episode_steps: int = 1_000
    n_envs: int = 8
    frame_stack: int = 4

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise UserError(f"the agent budget's {name} must be an integer >= 1, got {value!r}")


def ppo_hyperparameters(timesteps: int, n_envs: int) -> dict[str, Any]:
    """PPO's Atari hyperparameters (rl-baselines3-zoo's, after Schulman et al. 2017).

    128 steps per environment per rollout (fewer when the budget is smaller), 4 epochs of
    minibatches of 256, learning rate 2.5e-4 and clip range 0.1 both decayed linearly to 0,
    entropy bonus 0.01.
    """
    n_steps = max(8, min(128, timesteps // n_envs))
    return {
        "n_steps": n_steps,
        "n_epochs": 4,
        "batch_size": min(256, n_steps * n_envs),
        "learning_rate": lambda left: 2.5e-4 * left,
        "clip_range": lambda left: 0.1 * left,
        "ent_coef": 0.01,
        "vf_coef": 0.5,
    }


def cell_path(out: str | os.PathLike, game: str, observation: str, seed: int) -> Path:
    """Where a cell's result goes: ``OUT/cells/<Game>/<observation>/seed-<s>.json``."""
    return Path(out) / "cells" / game / observation / f"seed-{seed}.json"


class UniformPolicy:
    """Uniformly random actions, with the ``predict`` of SB3's policies."""

    def __init__(self, n_actions: int, seed: int) -> None:
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic=False):
        return self.rng.integers(self.n_actions, size=len(observation)), state


def _returns(policy: Any, env: Any, episodes: int, deterministic: bool) -> tuple[list, list]:
    from stable_baselines3.common.evaluation import evaluate_policy

    returns, lengths = evaluate_policy(
        policy, env, n_eval_episodes=episodes, deterministic=deterministic,
        return_episode_rewards=True, warn=False,
    )  # fmt: skip
    return [float(r) for r in returns], [int(n) for n in lengths]


def run_cell(
    game: str,
    observation: str,
    seed: int,
    out: str,
    budget: dict[str, int],
    model: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Trains and evaluates one cell and writes its JSON; a finished cell is read back.

    Args:
        game: canonical ALE name.
        observation: one of `SETTINGS`.
        seed: the agent's training seed (PPO's and its environments').
        out: the benchmark folder.
        budget: an `AgentBudget` as a dict.
        model: the keypoint model (run folder or "pretrained:GAME"); default the pretrained.
        device: of the agent and the keypoint model.

    Returns:
        The cell's record: its settings, the returns and lengths of every evaluation episode
        ("greedy", "stochastic"; "random" for a random cell), training time and steps/s.
    """
    import stable_baselines3
    import torch

    from permakey.envs.sb3 import make_vec_env
    from permakey.runs import load

    plan = AgentBudget(**budget)
    path = cell_path(out, game, observation, seed)
    with hold_folder(path.parent / path.stem, "agent cell"):
        if path.is_file():
            return json.loads(path.read_text())
        keypoints, spec = None, None
        if observation not in (RANDOM, "pixels"):
            spec = model or f"pretrained:{game}"
            keypoints = load(spec, device=device)
        eval_seed = EVAL_SEED + 1_000 * seed

        def env(training: bool) -> Any:
            kind = "pixels" if observation == RANDOM else observation  # random play: any frames
            return make_vec_env(
                game, kind, keypoints, plan.n_envs, seed if training else eval_seed,
                plan.max_episode_steps, clip_rewards=training, frame_stack=plan.frame_stack,
            )  # fmt: skip

        record: dict[str, Any] = {
            "game": game, "observation": observation, "seed": seed, "budget": asdict(plan),
            "keypoint_model": spec,
            "keypoint_identity": keypoints.identity() if keypoints is not None else None,
            "eval_seed": eval_seed, "versions": {"stable_baselines3": stable_baselines3.__version__,
                                                 "torch": torch.__version__},
        }  # fmt: skip
        if observation == RANDOM:
            episodes = env(False)
            n_actions = int(episodes.action_space.n)
            returns, lengths = _returns(UniformPolicy(n_actions, seed), episodes,
                                        plan.eval_episodes, False)  # fmt: skip
            episodes.close()
            record["random"] = {"returns": returns, "lengths": lengths}
        else:
            from stable_baselines3 import PPO

            training = env(True)
            policy = "CnnPolicy" if observation == "pixels" else "MlpPolicy"
            agent = PPO(policy, training, seed=seed, device=device, verbose=0,
                        **ppo_hyperparameters(plan.timesteps, plan.n_envs))  # fmt: skip
            start = time.perf_counter()
            agent.learn(total_timesteps=plan.timesteps)
            seconds = time.perf_counter() - start
            record["timesteps"] = int(agent.num_timesteps)
            record["train_seconds"] = round(seconds, 1)
            record["train_steps_per_s"] = round(agent.num_timesteps / seconds, 1)
            training.close()
            for mode, deterministic in (("greedy", True), ("stochastic", False)):
                torch.manual_seed(eval_seed)  # the stochastic policy's samples
                episodes = env(False)
                returns, lengths = _returns(agent, episodes, plan.eval_episodes, deterministic)
                episodes.close()
                record[mode] = {"returns": returns, "lengths": lengths}
        write_json_atomic(path, record)
    print(f"{game} {observation} seed {seed}: {summary_line(record)}", flush=True)
    return record


def summary_line(record: dict[str, Any]) -> str:
    """One line of a cell's mean returns."""
    modes = [m for m in ("greedy", "stochastic", RANDOM) if m in record]
    parts = [f"{m} {np.mean(record[m]['returns']):.1f}" for m in modes]
    timing = f" ({record['train_seconds']:.0f} s of training)" if "train_seconds" in record else ""
    return ", ".join(parts) + f" over {record['budget']['eval_episodes']} episodes{timing}"


def pending_cells(
    out: str | os.PathLike,
    games: Sequence[str],
    settings: Sequence[str],
    seeds: Sequence[int],
    budget: AgentBudget,
    models: dict[str, str] | None = None,
    device: str = "cpu",
) -> list[tuple[str, dict[str, Any], Path]]:
    """The cells still to run: (label, keyword arguments of `run_cell`, log file).

    Records the budget in ``OUT/budget.json`` when ``out`` has none yet.

    Raises:
        UserError: ``out`` holds cells of another budget, or an unknown setting.
    """
    out = Path(out)
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise UserError(f"unknown observation {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
    recorded = out / BUDGET_JSON
    if recorded.is_file():
        before = json.loads(recorded.read_text())
        if before != asdict(budget):
            raise UserError(
                f"{out} holds cells of another budget ({recorded}: {before}); give the same "
                f"budget to extend it, or another --out"
            )
    else:
        write_json_atomic(recorded, asdict(budget))
    pending = []
    for game in games:  # seeds before settings: a partial table has every setting's runs
        for seed in seeds:
            for setting in settings:
                path = cell_path(out, game, setting, seed)
                if path.is_file():
                    continue
                kwargs = {"game": game, "observation": setting, "seed": seed, "out": str(out),
                          "budget": asdict(budget), "device": device}  # fmt: skip
                if models and game in models and setting not in (RANDOM, "pixels"):
                    kwargs["model"] = models[game]
                log = out / "logs" / f"{game}-{setting}-seed-{seed}.log"
                pending.append((f"{game} {setting} seed {seed}", kwargs, log))
    return pending


def read_cells(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every finished cell under ``out``, by game, observation and seed."""
    paths = sorted(Path(out).glob("cells/*/*/seed-*.json"))
    return [json.loads(p.read_text()) for p in paths]


def run_means(cells: list[dict], game: str, setting: str, mode: str) -> np.ndarray:
    """(runs,) mean return per run of one game and setting, in evaluation ``mode``."""
    key = RANDOM if setting == RANDOM else mode
    return np.array(
        [np.mean(c[key]["returns"]) for c in cells
         if c["game"] == game and c["observation"] == setting]
    )  # fmt: skip


def _interval(values: np.ndarray) -> str:
    if len(values) == 0:
        return "—"
    estimate, low, high = bootstrap_interval(values)
    return f"{estimate:.1f} [{low:.1f}, {high:.1f}]"


def _verdict(a: np.ndarray, b: np.ndarray) -> str:
    """ "better", "worse" or "unclear" (the IQM difference's 95% interval holds 0)."""
    if len(a) < 2 or len(b) < 2:
        return "—"
    diff, low, high = difference_interval(a, b)
    word = "better" if low > 0 else "worse" if high < 0 else "unclear"
    return f"{word} ({diff:+.1f} [{low:+.1f}, {high:+.1f}])"


def normalised(values: np.ndarray, game: str) -> np.ndarray:
    """Human-normalised scores: 0 is random play, 1 human play (`REFERENCE_SCORES`)."""
    low, high = REFERENCE_SCORES[game]
    return (np.asarray(values, dtype=np.float64) - low) / (high - low)


def agent_table(cells: list[dict], mode: str = "stochastic") -> str:
    """The benchmark's markdown table: per game and observation, runs, the IQM of the runs'
    mean returns with its 95% bootstrap interval, greedy and stochastic, and whether the
    agent beats random play and the pixel agent in ``mode``; then the human-normalised IQM
    over games (runs resampled within each game), for games with every setting's runs."""
    if not cells:
        return "no finished cells"
    budget = cells[0]["budget"]
    games = [g for g in dict.fromkeys(c["game"] for c in cells)]
    lines = [
        f"| game | observation | runs | greedy IQM [95% CI] | stochastic IQM [95% CI] | "
        f"vs random ({mode}) | vs pixels ({mode}) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for game in games:
        random = run_means(cells, game, RANDOM, mode)
        pixels = run_means(cells, game, "pixels", mode)
        for setting in SETTINGS:
            ours = run_means(cells, game, setting, mode)
            if len(ours) == 0:
                continue
            greedy = (
                "—" if setting == RANDOM else _interval(run_means(cells, game, setting, "greedy"))
            )
            vs_random = "" if setting == RANDOM else _verdict(ours, random)
            vs_pixels = "" if setting in (RANDOM, "pixels") else _verdict(ours, pixels)
            lines.append(
                f"| {game} | {setting} | {len(ours)} | {greedy} | {_interval(ours)} | "
                f"{vs_random} | {vs_pixels} |"
            )
    complete = [g for g in games if g in REFERENCE_SCORES and all(
        len(run_means(cells, g, s, mode)) for s in SETTINGS)]  # fmt: skip
    if len(complete) > 1:
        lines += ["", f"Human-normalised IQM over {', '.join(complete)} ({mode}; 95% CI):", ""]
        for setting in SETTINGS:
            runs = min(len(run_means(cells, g, setting, mode)) for g in complete)
            table = np.stack(
                [normalised(run_means(cells, g, setting, mode)[:runs], g) for g in complete], 1
            )  # (runs, games)
            estimate, low, high = bootstrap_interval(table, iqm)
            lines.append(f"- {setting}: {estimate:.3f} [{low:.3f}, {high:.3f}] ({runs} runs)")
    lines += [
        "",
        f"Budget: {budget['timesteps']:,} agent steps ({budget['timesteps'] * 4:,} frames) per "
        f"run, {budget['n_envs']} environments, {budget['frame_stack']} stacked observations; "
        f"{budget['eval_episodes']} evaluation episodes per run and mode, cut at "
        f"{budget['max_episode_steps']:,} steps.",
    ]
    return "\n".join(lines)
