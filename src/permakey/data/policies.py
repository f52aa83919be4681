"""Built-in behaviour policies for collecting frames, named by a short spec string.

- ``"random"``: a uniformly random action every step (the default, as in the issue).
- ``"random-hold:N"``: a uniformly random action held for N steps, then a fresh one. A
  uniformly random policy barely moves the player in several games (it jitters near its
  start, which flatters static keypoints: evaluation.md); holding actions makes it travel.

Any callable ``policy(observation) -> action`` can be passed to `permakey.data.collect.collect`
instead; observations are uint8 (210, 160, 3) RGB frames.

Trained stable-baselines3 agents (the ``rl`` extra) play through `sb3_policy`, which
`permakey collect --policy sb3:[ALGO:]PATH` uses, so that datasets can come from competent
play as the paper's did. The agent must see what it was trained on; two kinds are supported:

- agents trained on the raw RGB frames of ``ALE/<Game>-v5`` (observation space uint8
  (210, 160, 3), or (3, 210, 160) as SB3 stores image spaces): the frame is passed as it is.
  Agents trained with SB3's Atari preprocessing (``AtariWrapper``: 84 x 84 grayscale, its own
  frame skip, frame stacking) are refused: collection steps ``ALE/<Game>-v5`` with frame skip 4
  and sticky actions, which that preprocessing cannot be replayed on faithfully.
- agents trained on keypoint observations (`permakey.envs.KeypointObservation`, e.g. by
  examples/train_agent.py), given the keypoint model's run folder (``--policy-keypoints RUN``):
  `permakey.envs.agents.keypoint_agent_policy` builds them from `load_agent` and
  `agent_policy` here, with the trained keypoint model in front (collection itself needs no
  trained model).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from permakey.errors import UserError

Policy = Callable[[np.ndarray], int]
POLICY_HELP = (
    "random (uniform action each step), random-hold:N (a random action held N steps), or "
    "sb3:[ALGO:]PATH (a stable-baselines3 PPO, A2C or DQN agent's zip, needs the rl extra)"
)
SB3_ALGORITHMS = ("PPO", "A2C", "DQN")
RAW_FRAME_SHAPES = ((210, 160, 3), (3, 210, 160))


class RandomPolicy:
    """Uniformly random actions, each held for ``hold`` consecutive steps.

    Args:
        n_actions: size of the discrete action space.
        rng: the generator to draw from (seeded by the caller).
        hold: steps each drawn action is repeated (1: a fresh action every step).
    """

    def __init__(self, n_actions: int, rng: np.random.Generator, hold: int = 1):
        if hold < 1:
            raise ValueError(f"hold must be >= 1, got {hold}")
        self.n_actions = n_actions
        self.rng = rng
        self.hold = hold
        self._left = 0
        self._action = 0

    def __call__(self, observation: np.ndarray) -> int:
        if self._left == 0:
            self._action = int(self.rng.integers(self.n_actions))
            self._left = self.hold
        self._left -= 1
        return self._action


def parse_policy(spec: str) -> int:
    """Checks a policy spec and returns how many steps it holds each action.

    Args:
        spec: "random", "random-hold:N" with N >= 1, or "sb3:[ALGO:]PATH" (1: the agent acts
            every step).

    Raises:
        UserError: an unknown spec, N not a positive integer, a missing agent file.
    """
    if spec == "random":
        return 1
    if is_sb3(spec):
        parse_sb3(spec)
        return 1
    name, _, value = spec.partition(":")
    if name == "random-hold":
        try:
            hold = int(value)
        except ValueError:
            hold = 0
        if hold >= 1:
            return hold
        raise UserError(
            f"bad policy {spec!r}: random-hold needs a positive step count, e.g. random-hold:8"
        )
    raise UserError(f"unknown policy {spec!r}; choose {POLICY_HELP}")


def make_policy(spec: str, n_actions: int, rng: np.random.Generator) -> Policy:
    """Builds a policy from its spec (see the module docstring).

    Args:
        spec: "random", "random-hold:N", or "sb3:[ALGO:]PATH" for an agent trained on raw
            frames (an agent trained on keypoints needs `sb3_policy` with ``keypoints``).
        n_actions: size of the discrete action space.
        rng: the generator the policy draws from (an sb3 agent's sampling is seeded from it).
    """
    if is_sb3(spec):
        return sb3_policy(spec, n_actions, seed=int(rng.integers(2**31 - 1)))
    return RandomPolicy(n_actions, rng, hold=parse_policy(spec))


def is_sb3(spec: str) -> bool:
    """Whether a policy spec names a stable-baselines3 agent ("sb3:...")."""
    return spec.startswith("sb3:")


def parse_sb3(spec: str) -> tuple[str | None, Path]:
    """Splits "sb3:PATH" or "sb3:ALGO:PATH" into (ALGO or None, PATH).

    Raises:
        UserError: an unknown ALGO or an agent file that does not exist.
    """
    rest = spec[len("sb3:") :]
    algo, sep, path = rest.partition(":")
    if not sep or algo.upper() not in SB3_ALGORITHMS:
        algo, path = None, rest
    if not Path(path).is_file():
        raise UserError(f"agent file {path!r} (from policy {spec!r}) does not exist")
    return (algo.upper() if algo else None), Path(path)


def describe_space(space: Any) -> str:
    """A space in a few words: numpy prints a Box's bounds in full."""
    shape = getattr(space, "shape", None)
    dtype = getattr(space, "dtype", None)
    return f"{type(space).__name__} {tuple(shape)} {dtype}" if shape else str(space)


def _load_agent(algo: str | None, path: Path, device: str) -> Any:
    """Loads an SB3 agent zip as ``algo``, or as each of PPO, A2C, DQN until one fits."""
    try:
        import stable_baselines3
    except ImportError:
        raise UserError("sb3 policies need stable-baselines3: pip install 'permakey[rl]'") from None
    errors = []
    for name in [algo] if algo else SB3_ALGORITHMS:
        try:
            return getattr(stable_baselines3, name).load(path, device=device)
        except Exception as err:  # SB3 raises many types for a zip of another algorithm
            errors.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
    raise UserError(f"cannot load {path} as a stable-baselines3 agent ({'; '.join(errors)})")


def load_agent(spec: str, n_actions: int, device: str = "cpu") -> tuple[Any, Path]:
    """Loads the stable-baselines3 agent of a policy spec and checks its actions.

    Args:
        spec: "sb3:PATH" (tried as PPO, A2C, then DQN) or "sb3:ALGO:PATH".
        n_actions: the environment's number of actions (minimal action set).
        device: where the agent runs.

    Returns:
        (the agent, its zip file).

    Raises:
        UserError: a missing or unloadable agent, stable-baselines3 not installed, or an
            action space other than ``Discrete(n_actions)``.
    """
    from gymnasium.spaces import Discrete

    algo, path = parse_sb3(spec)
    agent = _load_agent(algo, path, device)
    if agent.action_space != Discrete(n_actions):
        raise UserError(
            f"agent {path} acts in {agent.action_space}, but the game has Discrete({n_actions}) "
            "actions: was it trained on another game or with full_action_space?"
        )
    return agent, path


def agent_policy(
    agent: Any, name: str, seed: int = 0, observe: Callable[[np.ndarray], Any] | None = None
) -> Policy:
    """A loaded agent as a collection policy.

    The agent samples from its action distribution (as it did in training), not greedily, so
    that sticky actions are not the only source of variety; ``seed`` seeds torch's global
    generator, which SB3 samples from, for reproducible datasets.

    Args:
        agent: a stable-baselines3 model (`load_agent`).
        name: the policy's ``__qualname__``, which ends up in the dataset's meta.json.
        seed: seeds the agent's action sampling.
        observe: turns a uint8 (210, 160, 3) frame into the agent's observation; None passes
            the frame as it is.

    Returns:
        ``policy(frame) -> action`` for uint8 (210, 160, 3) frames.
    """
    import torch

    torch.manual_seed(seed)

    def policy(frame: np.ndarray) -> int:
        observation = observe(frame) if observe is not None else frame
        action, _ = agent.predict(observation, deterministic=False)
        return int(action)

    policy.__qualname__ = name
    return policy


def agent_name(agent: Any, path: Path) -> str:
    """How a collection policy names an agent: "sb3:ALGO:FILE"."""
    return f"sb3:{type(agent).__name__}:{path.name}"


def sb3_policy(spec: str, n_actions: int, seed: int = 0, device: str = "cpu") -> Policy:
    """A stable-baselines3 agent trained on raw RGB frames as a collection policy.

    Args:
        spec: "sb3:PATH" (tried as PPO, A2C, then DQN) or "sb3:ALGO:PATH".
        n_actions: the environment's number of actions (minimal action set).
        seed: seeds the agent's action sampling (`agent_policy`).
        device: where the agent runs.

    Returns:
        ``policy(frame) -> action`` for uint8 (210, 160, 3) frames, named after the agent.

    Raises:
        UserError: see `load_agent`; also an agent that does not observe raw frames (one
            trained on keypoints needs `permakey.envs.agents.keypoint_agent_policy`).
    """
    from gymnasium.spaces import Box

    agent, path = load_agent(spec, n_actions, device)
    space = agent.observation_space
    if not (isinstance(space, Box) and space.dtype == np.uint8 and space.shape in RAW_FRAME_SHAPES):
        hint = (
            "; pass the keypoint model it was trained on with --policy-keypoints RUN"
            if isinstance(space, Box) and len(space.shape) == 1
            else ""
        )
        raise UserError(
            f"agent {path} observes {describe_space(space)}; an sb3 policy must be trained on raw RGB frames of "
            f"ALE/<Game>-v5 (uint8 210 x 160 x 3, no Atari preprocessing) or on keypoint "
            f"observations{hint}"
        )
    return agent_policy(agent, agent_name(agent, path), seed)
