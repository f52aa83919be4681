"""Keypoint observations for agents: Gymnasium wrappers around a trained keypoint model.

An RGB frame of any ALE environment is preprocessed exactly as the model's training frames
were (`permakey.data.frames.resize_frame` to the size and with the resize method its run
recorded, `permakey.runs.FrameSpec`), run through the model, and flattened into one float32
vector:

    [y_1, x_1, f_1 (C values), y_2, x_2, f_2, ..., y_K, x_K, f_K]

with centres ``(y, x)`` in [-1, 1] (`permakey.keypoints`; or ``(row, col)`` in pixels of the
84 x 84 frame with ``pixels=True``) and, with ``features=True``, each keypoint's pooled encoder
features (`permakey.runs.pool_features`: C = 96 for the paper's PermaKey, 32 for its
Transporter; ReLU features, so >= 0). Without features the vector has K * 2 values.

`KeypointObservation` wraps one environment; `VectorKeypointObservation` wraps a
``gymnasium.vector`` environment and runs the model once per batch of environments.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import torch
from gymnasium.spaces import Box
from gymnasium.vector.utils import batch_space

from permakey.data.frames import RESIZE_METHODS, resize_frame
from permakey.keypoints import to_pixels
from permakey.runs import TrainedModel, load
from permakey.runs.trained import check_uint8


def check_rgb_space(space: gym.Space, what: str = "environment") -> None:
    """Checks that a space holds RGB images: a uint8 ``Box`` of shape (H, W, 3).

    Raises:
        ValueError: any other space (grayscale or RAM observations, stacked frames...).
    """
    if not (
        isinstance(space, Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[2] == 3
    ):
        raise ValueError(
            f"keypoint observations need RGB image observations, a uint8 Box (H, W, 3), but the "
            f"{what} observes {space}; make it with obs_type='rgb' and no frame stacking"
        )


class KeypointEncoder:
    """Raw RGB frames -> flat keypoint observations (the module docstring gives the layout).

    Shared by the wrappers and by `permakey collect`'s stable-baselines3 policies, so that an
    agent sees the same observations while collecting as while training.

    Args:
        model: a `TrainedModel`, or a run folder to `permakey.load`.
        features: append each keypoint's pooled encoder features.
        pixels: centres as (row, col) pixels of the model's S x S frame instead of [-1, 1].
        resize: "area", "nearest" or "authors"; None: as the model's training frames (``model.frames``).
        which: "best" or "last" weights, when ``model`` is a run folder.
        device: where to run the model, when ``model`` is a run folder.

    Raises:
        UserError: ``model`` is a run folder that does not exist or holds no weights.
        ValueError: a bad ``resize``.
    """

    def __init__(
        self,
        model: TrainedModel | str | os.PathLike,
        features: bool = False,
        pixels: bool = False,
        resize: str | None = None,
        which: str = "best",
        device: str = "cpu",
    ) -> None:
        self.model = model if isinstance(model, TrainedModel) else load(model, which, device)
        self.frame_size = self.model.frames.size
        self.resize = resize or self.model.frames.resize
        if self.resize not in RESIZE_METHODS:
            raise ValueError(
                f"unknown resize method {self.resize!r}; choose from {', '.join(RESIZE_METHODS)}"
            )
        self.features = features
        self.pixels = pixels
        k, c = self.model.num_keypoints, self.model.feature_dim if features else 0
        low_coord, high_coord = (0.0, self.frame_size - 1.0) if pixels else (-1.0, 1.0)
        low = np.tile([low_coord, low_coord] + [0.0] * c, k)  # (K * (2 + C),)
        high = np.tile([high_coord, high_coord] + [np.inf] * c, k)
        self.space = Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    @property
    def size(self) -> int:
        """Values per observation: K * 2, or K * (2 + C) with features."""
        return self.space.shape[0]

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Keypoint observations of a batch of raw frames.

        Args:
            frames: (N, H, W, 3) uint8 RGB frames, e.g. (N, 210, 160, 3) from ALE.

        Returns:
            (N, `size`) float32 observations inside `space`; (0, `size`) for no frames.

        Raises:
            ValueError: anything but a uint8 numpy array of RGB frames, naming what it got.
        """
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
        check_uint8(frames)
        if frames.ndim != 4 or frames.shape[3] != 3 or 0 in frames.shape[1:3]:
            raise ValueError(f"frames must be RGB frames (N, H, W, 3), got shape {frames.shape}")
        if len(frames) == 0:
            return np.zeros((0, self.size), np.float32)
        images = np.stack([resize_frame(f, self.frame_size, self.resize) for f in frames])
        out = self.model.keypoints(images, windows=False, features=self.features)
        # The spatial softmax's expectation can leave [-1, 1] by a rounding error.
        coords = out.centres.clamp(-1.0, 1.0)  # (N, K, 2)
        if self.pixels:
            coords = to_pixels(coords, self.frame_size, self.frame_size)
        parts = [coords, out.features] if self.features else [coords]
        flat = torch.cat(parts, dim=2).flatten(1)  # (N, K * (2 + C))
        return flat.numpy().astype(np.float32, copy=False)


class KeypointObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replaces an environment's RGB frames by keypoint observations of a trained model.

    Args:
        env: an environment with uint8 RGB observations (H, W, 3), e.g.
            ``gym.make("ALE/Pong-v5")``.
        model: a `TrainedModel` or a run folder (see `KeypointEncoder` for the other arguments).
        features: append each keypoint's pooled encoder features.
        pixels: centres in pixels of the model's S x S frame instead of [-1, 1].
        resize: "area", "nearest" or "authors"; None: as the model's training frames.
        which: "best" or "last" weights of a run folder.
        device: "cpu", "cuda", "mps" or "auto" for a run folder.

    Raises:
        ValueError: observations that are not RGB images.
        UserError: a run folder that does not exist or holds no weights.
    """

    def __init__(
        self,
        env: gym.Env,
        model: TrainedModel | str | os.PathLike,
        features: bool = False,
        pixels: bool = False,
        resize: str | None = None,
        which: str = "best",
        device: str = "cpu",
    ) -> None:
        # Recorded so that env.spec can remake the wrapped environment; the model is shared,
        # not deep-copied.
        gym.utils.RecordConstructorArgs.__init__(
            self,
            _disable_deepcopy=True,
            model=model,
            features=features,
            pixels=pixels,
            resize=resize,
            which=which,
            device=device,
        )
        gym.ObservationWrapper.__init__(self, env)
        check_rgb_space(env.observation_space)
        self.encoder = KeypointEncoder(model, features, pixels, resize, which, device)
        self.observation_space = self.encoder.space

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 frame -> (`KeypointEncoder.size`,) float32 observation."""
        return self.encoder(observation[None])[0]


class VectorKeypointObservation(gym.vector.VectorObservationWrapper):
    """`KeypointObservation` for a ``gymnasium.vector`` environment: one model call per step.

    Takes the same arguments as `KeypointObservation`, with a vector environment whose
    single observation space is RGB images (autoreset mode next-step or disabled, as every
    Gymnasium vector observation wrapper requires).
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        model: TrainedModel | str | os.PathLike,
        features: bool = False,
        pixels: bool = False,
        resize: str | None = None,
        which: str = "best",
        device: str = "cpu",
    ) -> None:
        super().__init__(envs)
        check_rgb_space(envs.single_observation_space, "vector environment")
        self.encoder = KeypointEncoder(model, features, pixels, resize, which, device)
        self.single_observation_space = self.encoder.space
        self.observation_space = batch_space(self.encoder.space, envs.num_envs)

    def observations(self, observations: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 frames -> (N, `KeypointEncoder.size`) float32 observations."""
        return self.encoder(observations)
