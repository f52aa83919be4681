"""Train a stable-baselines3 PPO agent on keypoint observations of one Atari game.

    pip install 'permakey[rl]'
    python examples/train_agent.py --run runs/pong --game pong --timesteps 20000 \\
        --eval-episodes 5 --seed 0 --out agent.json --save agent.zip

The agent (an MLP, SB3's ``MlpPolicy``) sees only `permakey.envs.KeypointObservation`: the K
keypoint centres of the model in RUN (with ``--features``, also each keypoint's pooled encoder
features), computed from ``ALE/<Game>-v5`` frames preprocessed exactly as the datasets' were.
After training, the agent (greedy actions) and a uniformly random policy each play the same
``--eval-episodes`` episodes (the same environment seeds); their mean returns are printed on
one line and written as JSON. ``--save`` keeps the agent's zip, which
``permakey collect GAME --policy sb3:agent.zip --policy-keypoints RUN`` can collect with.

One seed and a few episodes show how the pieces fit, not what keypoints are worth to an
agent: ``permakey agents`` measures that (seeds, intervals, pixels and random play beside;
AGENTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder of a trained keypoint model")
    parser.add_argument("--game", default="pong", help="Atari game, any case (default: pong)")
    parser.add_argument(
        "--timesteps", type=int, default=20_000, help="agent training steps (default: 20000)"
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=5, help="episodes per policy (default: 5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default: 0)")
    parser.add_argument("--features", action="store_true", help="add per-keypoint features")
    parser.add_argument(
        "--max-episode-steps",
        type=int,
        help="cut episodes after this many agent steps, in training and evaluation",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--device", default="cpu", help="keypoint model and agent device")
    parser.add_argument("--out", help="JSON file to write (default: print the JSON)")
    parser.add_argument("--save", help="save the trained agent's zip here")
    args = parser.parse_args(argv)
    for name in ("timesteps", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def evaluate(
    make_env: Callable[[], object], act: Callable[[np.ndarray], int], episodes: int, seed: int
) -> list[float]:
    """Returns of ``episodes`` episodes, episode i played from environment seed ``seed + i``."""
    env = make_env()
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from stable_baselines3 import PPO
    except ImportError:
        print("this example needs stable-baselines3: pip install 'permakey[rl]'", file=sys.stderr)
        return 2
    import ale_py
    import gymnasium as gym
    import torch

    import permakey
    from permakey.data.games import env_id, resolve_game
    from permakey.envs import KeypointObservation
    from permakey.fileio import write_json_atomic

    torch.set_num_threads(args.threads)
    gym.register_envs(ale_py)
    game = resolve_game(args.game)
    model = permakey.load(args.run, device=args.device)

    def make_env() -> gym.Env:
        env = gym.make(env_id(game), max_episode_steps=args.max_episode_steps)
        return KeypointObservation(env, model, features=args.features)

    env = make_env()
    n_steps = min(128, args.timesteps)
    agent = PPO(
        "MlpPolicy",
        env,
        n_steps=n_steps,
        batch_size=min(64, n_steps),
        seed=args.seed,
        device=args.device,
        verbose=0,
    )
    start = time.perf_counter()
    agent.learn(total_timesteps=args.timesteps)
    train_s = time.perf_counter() - start
    if args.save:
        agent.save(args.save)

    eval_seed = args.seed + 10_000  # episodes the agent did not train on
    greedy = lambda obs: int(agent.predict(obs, deterministic=True)[0])  # noqa: E731
    agent_returns = evaluate(make_env, greedy, args.eval_episodes, eval_seed)
    rng = np.random.default_rng(args.seed)
    n_actions = int(env.action_space.n)
    uniform = lambda obs: int(rng.integers(n_actions))  # noqa: E731
    random_returns = evaluate(make_env, uniform, args.eval_episodes, eval_seed)

    result = {
        "game": game,
        "run": str(args.run),
        "model": model.identity(),
        "observation": f"{env.observation_space.shape[0]} keypoint values"
        + (" with features" if args.features else ""),
        "timesteps": agent.num_timesteps,
        "train_seconds": round(train_s, 1),
        "train_steps_per_s": round(agent.num_timesteps / train_s, 1),
        "eval_episodes": args.eval_episodes,
        "max_episode_steps": args.max_episode_steps,
        "seed": args.seed,
        "agent_mean_return": float(np.mean(agent_returns)),
        "random_mean_return": float(np.mean(random_returns)),
        "agent_returns": agent_returns,
        "random_returns": random_returns,
    }
    print(
        f"{game}: PPO on keypoints, {agent.num_timesteps} steps ({train_s:.0f} s): mean return "
        f"{result['agent_mean_return']:.1f} over {args.eval_episodes} episodes; random policy "
        f"{result['random_mean_return']:.1f}",
        file=sys.stderr,
    )
    if args.out:
        write_json_atomic(args.out, result)
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
