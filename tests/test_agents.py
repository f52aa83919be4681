"""`permakey agents`: SB3 environments on keypoints and pixels, cells, resumption, the table.

Real ALE games, the shipped pretrained Pong model and real stable-baselines3 PPO agents, on
budgets of a few dozen steps (what the benchmark measures is in AGENTS.md, not here).
"""

import json

import gymnasium as gym
import numpy as np
import pytest

import permakey
from permakey.cli.main import main
from permakey.envs.observation import KeypointEncoder
from permakey.experiments.agents import SETTINGS, agent_table, cell_path, read_cells

sb3 = pytest.importorskip("stable_baselines3")
from permakey.envs.sb3 import make_vec_env  # noqa: E402

TINY = ["--games", "Pong", "--timesteps", "64", "--eval-episodes", "2",
        "--max-episode-steps", "30", "--envs", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def pong():
    return permakey.load("pretrained:Pong")


def test_keypoint_env_observes_every_frame_through_the_model_the_last_one_too(pong, one_thread):
    env = make_vec_env("Pong", "keypoints", pong, 2, seed=7, max_episode_steps=5,
                       clip_rewards=False, frame_stack=1)  # fmt: skip
    k = pong.num_keypoints
    assert env.observation_space.shape == (2 * k,)
    obs = env.reset()
    actions = [np.array([a, (a + 1) % 6]) for a in (0, 1, 2, 3, 4)]
    for action in actions:
        obs, _, dones, infos = env.step(action)
    assert dones.all()  # cut after 5 steps
    # The same episode of environment 0 played by hand: its last frame, through the model.
    raw = gym.make("ALE/Pong-v5", max_episode_steps=5)
    frame, _ = raw.reset(seed=7)
    for action in actions:
        frame, *_ = raw.step(int(action[0]))
    encoder = KeypointEncoder(pong)
    last = infos[0]["terminal_observation"]
    assert last.shape == (2 * k,) and np.abs(last).max() <= 1.0
    np.testing.assert_allclose(last, encoder(frame[None])[0], atol=1e-6)
    assert not np.allclose(obs[0], last)  # the new episode's first frame is observed


def test_pixel_env_stacks_84x84_frames_and_clips_rewards_but_monitors_raw_returns():
    env = make_vec_env("SpaceInvaders", "pixels", None, 1, seed=0, max_episode_steps=300,
                       clip_rewards=True)  # fmt: skip
    assert env.observation_space.shape == (84, 84, 4) and env.observation_space.dtype == np.uint8
    env.reset()
    rng = np.random.default_rng(0)
    clipped = 0.0
    while True:
        _, reward, done, info = env.step(rng.integers(6, size=1))
        assert reward[0] in (-1.0, 0.0, 1.0)
        clipped += reward[0]
        if done[0]:
            break
    raw = info[0]["episode"]["r"]
    assert clipped > 0 and raw >= 5 * clipped  # invaders are worth 5 to 30 points


def test_a_benchmark_runs_every_cell_once_resumes_and_tells_its_budget_apart(
    tmp_path, capsys, one_thread
):
    out = tmp_path / "agents"
    argv = ["agents", *TINY, "--seeds", "2", "--out", str(out), "--workers", "2"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "8 cells to run" in said
    cells = read_cells(out)
    assert sorted((c["observation"], c["seed"]) for c in cells) == sorted(
        (s, seed) for s in SETTINGS for seed in (0, 1)
    )
    for cell in cells:
        modes = ["random"] if cell["observation"] == "random" else ["greedy", "stochastic"]
        for mode in modes:
            assert len(cell[mode]["returns"]) == 2 and max(cell[mode]["lengths"]) <= 30
        if cell["observation"].startswith("keypoints"):
            assert cell["keypoint_model"].startswith("pretrained:Pong")
            assert cell["timesteps"] >= 64
    for setting in SETTINGS:
        assert f"| Pong | {setting} | 2 |" in said

    # A finished cell is kept; a lost one is run again, to the same returns (same seeds).
    lost = cell_path(out, "Pong", "keypoints", 1)
    before = json.loads(lost.read_text())
    lost.unlink()
    assert main(["agents", *TINY, "--seeds", "2", "--out", str(out)]) == 0
    assert "1 cells to run" in capsys.readouterr().out
    again = json.loads(lost.read_text())
    for mode in ("greedy", "stochastic"):
        assert again[mode]["returns"] == before[mode]["returns"]

    # Another budget in the same folder is refused, naming the folder; nothing is run.
    other = [a if a != "64" else "128" for a in TINY]
    assert main(["agents", *other, "--out", str(out)]) == 2
    assert str(out) in capsys.readouterr().err
    assert len(read_cells(out)) == 8
    assert main(["agents", "--table-only", "--out", str(out)]) == 0
    assert "| Pong | keypoints+features | 2 |" in capsys.readouterr().out


def _cell(game, observation, seed, returns):
    mode = ["random"] if observation == "random" else ["greedy", "stochastic"]
    budget = {"timesteps": 100, "eval_episodes": len(returns), "max_episode_steps": 10,
              "n_envs": 1, "frame_stack": 4}  # fmt: skip
    cell = {"game": game, "observation": observation, "seed": seed, "budget": budget}
    return cell | {m: {"returns": list(returns), "lengths": [10] * len(returns)} for m in mode}


def test_the_table_says_better_only_where_the_intervals_separate():
    cells = []
    for seed in range(5):
        cells += [
            _cell("Pong", "random", seed, [-21.0, -20.0]),
            _cell("Pong", "pixels", seed, [-20.0 + seed % 2, -21.0]),
            _cell("Pong", "keypoints", seed, [-10.0 + seed, -9.0]),  # far above both
            _cell("Pong", "keypoints+features", seed, [-21.0 + seed % 2, -20.0]),
            _cell("Breakout", "random", seed, [1.0, 2.0]),
            _cell("Breakout", "pixels", seed, [2.0, 1.0]),
            _cell("Breakout", "keypoints", seed, [1.0, 2.0 + seed % 2]),
            _cell("Breakout", "keypoints+features", seed, [0.0, 0.0]),  # below random
        ]
    table = agent_table(cells)
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in table.splitlines()
            if line.startswith("| Pong") or line.startswith("| Breakout")}  # fmt: skip
    assert "better (" in rows[("Pong", "keypoints")].split("|")[6]
    assert "better (" in rows[("Pong", "keypoints")].split("|")[7]
    assert "unclear" in rows[("Pong", "keypoints+features")].split("|")[6]
    assert "worse (" in rows[("Breakout", "keypoints+features")].split("|")[6]
    assert "Human-normalised IQM over Pong, Breakout" in table
    random_line = next(line for line in table.splitlines() if line.startswith("- random"))
    assert abs(float(random_line.split()[2])) < 0.05  # random play is about 0 by definition
