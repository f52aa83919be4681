"""Agents trained on keypoint observations, as collection policies for `permakey collect`.

An agent trained on `KeypointObservation` (e.g. by examples/train_agent.py) plays from raw
frames once each frame goes through the same `KeypointEncoder` first; whether it saw features
and pixel coordinates is read off its observation space, which must equal the encoder's for
one of those settings.
"""

from __future__ import annotations

import os
from typing import Any

from permakey.data.policies import Policy, agent_name, agent_policy, describe_space, load_agent
from permakey.envs.observation import KeypointEncoder
from permakey.errors import UserError
from permakey.runs import TrainedModel, load


def matching_encoder(agent_space: Any, model: TrainedModel, agent: str) -> KeypointEncoder:
    """The `KeypointEncoder` setting (features, pixels) whose space equals the agent's.

    Raises:
        UserError: no setting gives the agent's observation space.
    """
    options = [(f, p) for f in (False, True) for p in (False, True)]
    encoders = [KeypointEncoder(model, features=f, pixels=p) for f, p in options]
    for encoder in encoders:
        if encoder.space == agent_space:
            return encoder
    sizes = sorted({e.size for e in encoders})
    raise UserError(
        f"agent {agent} observes {describe_space(agent_space)}, which is none of the keypoint "
        f"observations of {model.run or model.name} (float32 vectors of "
        f"{' or '.join(map(str, sizes))} values): was it trained on another keypoint model?"
    )


def keypoint_agent_policy(
    spec: str,
    n_actions: int,
    keypoints: TrainedModel | str | os.PathLike,
    seed: int = 0,
    device: str = "cpu",
) -> Policy:
    """A stable-baselines3 agent trained on keypoint observations, as a collection policy.

    Args:
        spec: "sb3:PATH" (tried as PPO, A2C, then DQN) or "sb3:ALGO:PATH".
        n_actions: the environment's number of actions (minimal action set).
        keypoints: the keypoint model the agent was trained on, or its run folder.
        seed: seeds the agent's action sampling.
        device: where the agent (and a keypoint model loaded from a run folder) runs.

    Returns:
        ``policy(frame) -> action`` for uint8 (210, 160, 3) frames; its ``__qualname__`` names
        the agent and the keypoint model, and ends up in the dataset's meta.json.

    Raises:
        UserError: a missing or unloadable agent or run, an action space other than
            ``Discrete(n_actions)``, or observations that no keypoint setting gives.
    """
    agent, path = load_agent(spec, n_actions, device)
    model = keypoints if isinstance(keypoints, TrainedModel) else load(keypoints, device=device)
    encoder = matching_encoder(agent.observation_space, model, str(path))
    name = f"{agent_name(agent, path)} on keypoints of {model.run or model.name}"
    return agent_policy(agent, name, seed, observe=lambda frame: encoder(frame[None])[0])
