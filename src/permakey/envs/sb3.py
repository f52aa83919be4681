"""stable-baselines3 vector environments for agents on keypoints, and on pixels beside them.

Every observation kind plays the same game the same way: ``ALE/<Game>-v5`` (4 frames per
step, sticky actions 0.25, the minimal action set), episodes cut after ``max_episode_steps``
agent steps, a `Monitor` recording each episode's raw return and, for training, rewards
clipped to their sign (as DQN did, so that one learning rate suits every game). Observations
are the last ``frame_stack`` observations of:

- "keypoints": `KeypointEncoder` vectors (K * 2 centres in [-1, 1]) of a trained model;
- "keypoints+features": the same with each keypoint's pooled encoder features (K * (2 + C));
- "pixels": 84 x 84 grayscale frames (SB3's ``WarpFrame``), the usual input of its
  ``CnnPolicy``.

The keypoint model runs once per step for all environments (`KeypointVecEnv`), on the frames
of the environments' ``terminal_observation`` too, so that PPO bootstraps a cut episode's value
from what the agent would have seen.

Needs the ``rl`` extra (stable-baselines3), imported lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from permakey.envs.observation import KeypointEncoder, check_rgb_space
from permakey.runs import TrainedModel

OBSERVATIONS = ("keypoints", "keypoints+features", "pixels")


def _vec_env_wrapper():
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class KeypointVecEnv(VecEnvWrapper):
        """A SB3 vector environment of RGB frames, observed as keypoint vectors.

        Args:
            venv: a SB3 ``VecEnv`` whose observations are uint8 RGB frames (H, W, 3).
            encoder: turns (N, H, W, 3) frames into (N, size) keypoint observations.
        """

        def __init__(self, venv: Any, encoder: KeypointEncoder) -> None:
            check_rgb_space(venv.observation_space, "vector environment")
            super().__init__(venv, observation_space=encoder.space)
            self.encoder = encoder

        def reset(self) -> np.ndarray:
            return self.encoder(self.venv.reset())  # (N, size)

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
            frames, rewards, dones, infos = self.venv.step_wait()
            ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]
            if ended:  # one model call for the ended episodes' last frames
                last = self.encoder(np.stack([infos[i]["terminal_observation"] for i in ended]))
                for i, obs in zip(ended, last, strict=True):
                    infos[i]["terminal_observation"] = obs
            return self.encoder(frames), rewards, dones, infos

    return KeypointVecEnv


def make_vec_env(
    game: str,
    observation: str,
    model: TrainedModel | None,
    n_envs: int,
    seed: int,
    max_episode_steps: int,
    clip_rewards: bool,
    frame_stack: int = 4,
) -> Any:
    """The SB3 vector environment of ``n_envs`` copies of a game, observed as ``observation``.

    Args:
        game: any spelling of a game (`permakey.data.games.resolve_game`).
        observation: one of `OBSERVATIONS`.
        model: the keypoint model (for the keypoint observations; None for pixels).
        n_envs: environments stepped together.
        seed: environment i's first episode is played from seed ``seed + i``; later episodes
            follow from its generator, so the same seed gives the same episodes.
        max_episode_steps: agent steps after which an episode is cut (truncated).
        clip_rewards: rewards to their sign (training); the Monitor keeps the raw returns.
        frame_stack: observations stacked along the last axis.

    Returns:
        A ``VecFrameStack``; ``env_is_wrapped(Monitor)`` holds, so that SB3's
        ``evaluate_policy`` reads the raw returns.

    Raises:
        ValueError: an unknown observation, or keypoint observations without a model.
    """
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.atari_wrappers import ClipRewardEnv, WarpFrame
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    from permakey.data.games import env_id

    if observation not in OBSERVATIONS:
        raise ValueError(f"unknown observation {observation!r}; choose from {OBSERVATIONS}")
    if observation != "pixels" and model is None:
        raise ValueError(f"{observation} observations need a keypoint model")
    gym.register_envs(ale_py)

    def make() -> gym.Env:
        env = gym.make(env_id(game), max_episode_steps=max_episode_steps)
        env = Monitor(env)  # raw returns, before any clipping
        if observation == "pixels":
            env = WarpFrame(env)  # (84, 84, 1) grayscale
        return ClipRewardEnv(env) if clip_rewards else env

    venv = DummyVecEnv([make] * n_envs)
    venv.seed(seed)
    if observation != "pixels":
        encoder = KeypointEncoder(model, features=observation == "keypoints+features")
        venv = _vec_env_wrapper()(venv, encoder)
    return VecFrameStack(venv, frame_stack)
