"""Built-in behaviour policies for collecting frames, named by a short spec string.

- ``"random"``: a uniformly random action every step (the default, as in the issue).
- ``"random-hold:N"``: a uniformly random action held for N steps, then a fresh one. A
  uniformly random policy barely moves the player in several games (it jitters near its
  start, which flatters static keypoints: evaluation.md); holding actions makes it travel.

Any callable ``policy(observation) -> action`` can be passed to `permakey.data.collect.collect`
instead; observations are uint8 (210, 160, 3) RGB frames.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from permakey.errors import UserError

Policy = Callable[[np.ndarray], int]
POLICY_HELP = "random (uniform action each step) or random-hold:N (a random action held N steps)"


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
        spec: "random" or "random-hold:N" with N >= 1.

    Raises:
        UserError: an unknown spec, or N not a positive integer.
    """
    if spec == "random":
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


def make_policy(spec: str, n_actions: int, rng: np.random.Generator) -> RandomPolicy:
    """Builds a built-in policy from its spec (see the module docstring).

    Args:
        spec: "random" or "random-hold:N".
        n_actions: size of the discrete action space.
        rng: the generator the policy draws from.
    """
    return RandomPolicy(n_actions, rng, hold=parse_policy(spec))
