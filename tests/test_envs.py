"""Keypoint observations for agents: the Gymnasium wrappers and per-keypoint features."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY_PERMAKEY, TINY_TRANSPORTER, tiny_cfg
from gymnasium.utils.env_checker import check_env

import permakey
from permakey.cli.main import main
from permakey.data.frames import resize_frame
from permakey.data.store import open_split
from permakey.envs import KeypointObservation, VectorKeypointObservation
from permakey.errors import UserError
from permakey.keypoints import to_pixels
from permakey.models.permakey import PermaKey
from permakey.runs import TrainedModel, pool_features
from permakey.testing import make_sprites_dataset
from permakey.training.config import TransporterTrainConfig
from permakey.training.loop import train
from permakey.training.permakey import PermaKeyMethod
from permakey.training.transporter import TransporterMethod

gym.register_envs(ale_py)
GAME = "ALE/Pong-v5"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data84(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sprites84"
    return make_sprites_dataset(
        path, {"train": 16, "val": 8, "test": 8}, episode_length=16, size=84, sprite_size=8
    )


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this file runs on one thread (`conftest.one_thread`)."""


@pytest.fixture(scope="module")
def runs(data84, tmp_path_factory):
    """A PermaKey and a Transporter run at 84 x 84, each trained for 2 steps."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(
            PermaKeyMethod(),
            tiny_cfg(data84, epochs=1),
            replace(TINY_PERMAKEY, image_size=84),
            root / "permakey",
        )
        cfg = TransporterTrainConfig(
            data=str(data84), batch_size=8, epochs=1, window=4, workers=0, progress=False,
            device="cpu",
        )  # fmt: skip
        train(
            TransporterMethod(), cfg, replace(TINY_TRANSPORTER, image_size=84), root / "transporter"
        )
    finally:
        torch.set_num_threads(threads)  # later test files keep their threads
    return {"permakey": root / "permakey", "transporter": root / "transporter"}


def quiet_check_env(env: gym.Env) -> None:
    """check_env, without its warnings about wrappers and unbounded feature values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("kind", ["permakey", "transporter"])
@pytest.mark.parametrize("features", [False, True])
def test_wrapped_env_passes_check_env_and_observes_the_datasets_frames(runs, kind, features):
    loaded = permakey.load(runs[kind], "last")
    env = KeypointObservation(gym.make(GAME), loaded, features=features)
    quiet_check_env(env)
    k, c = loaded.config.num_keypoints, loaded.feature_dim
    assert env.observation_space.shape == ((k * (2 + c),) if features else (k * 2,))
    assert env.observation_space.dtype == np.float32

    raw = gym.make(GAME)
    frame, _ = raw.reset(seed=3)
    obs, _ = env.reset(seed=3)
    assert obs in env.observation_space
    # Exactly the datasets' preprocessing (area resize to 84 x 84), then the model.
    expected = loaded.keypoints(resize_frame(frame, 84, "area")[None], features=features)
    per_keypoint = obs.reshape(k, -1)
    np.testing.assert_allclose(per_keypoint[:, :2], expected.centres[0].numpy(), atol=1e-6)
    if features:
        np.testing.assert_allclose(per_keypoint[:, 2:], expected.features[0].numpy(), atol=1e-5)
    for action in (0, 2, 3, 2):
        obs, *_ = env.step(action)
        assert obs in env.observation_space


def test_pixels_option_gives_pixel_coordinates(runs):
    loaded = permakey.load(runs["permakey"], "last")
    env = KeypointObservation(gym.make(GAME), loaded, pixels=True)
    plain = KeypointObservation(gym.make(GAME), loaded)
    obs, _ = env.reset(seed=0)
    centres, _ = plain.reset(seed=0)
    assert obs in env.observation_space and env.observation_space.high.max() == 83
    expected = to_pixels(torch.from_numpy(centres).view(-1, 2), 84, 84).flatten().numpy()
    np.testing.assert_allclose(obs, expected, atol=1e-4)


def test_vector_wrapper_runs_the_model_once_per_step_and_matches_one_by_one(runs):
    loaded = permakey.load(runs["permakey"], "last")
    n = 3
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(GAME) for _ in range(n)])
    vector = VectorKeypointObservation(envs, loaded, features=True)
    singles = [KeypointObservation(gym.make(GAME), loaded, features=True) for _ in range(n)]
    assert vector.single_observation_space == singles[0].observation_space
    assert vector.observation_space.shape == (n, *singles[0].observation_space.shape)

    batches = []
    keypoints = loaded.keypoints

    def counting(frames, **kwargs):
        batches.append(len(frames))
        return keypoints(frames, **kwargs)

    vector.encoder.model = TrainedModel(loaded.model, loaded.frames)
    vector.encoder.model.keypoints = counting
    obs, _ = vector.reset(seed=10)  # env i is seeded with 10 + i
    expected = np.stack([env.reset(seed=10 + i)[0] for i, env in enumerate(singles)])
    np.testing.assert_allclose(obs, expected, atol=1e-5)
    for actions in ([0, 2, 3], [3, 3, 0], [2, 0, 2]):
        obs, *_ = vector.step(np.array(actions))
        expected = np.stack([env.step(a)[0] for env, a in zip(singles, actions, strict=True)])
        np.testing.assert_allclose(obs, expected, atol=1e-5)
        assert obs in vector.observation_space
    assert batches == [n] * 4


@pytest.mark.parametrize("kind", ["permakey", "transporter"])
def test_features_are_window_weighted_averages_of_the_documented_layers(runs, data84, kind):
    loaded = permakey.load(runs[kind], "last")
    # TINY configs: 8 channels per layer; PermaKey pools LSP layers 0 and 1, Transporter Phi's last.
    assert loaded.feature_dim == (16 if kind == "permakey" else 8)
    frames = open_split(data84, "test").frames[:2]
    out = loaded.keypoints(frames, features=True)
    assert out.features.shape == (2, loaded.config.num_keypoints, loaded.feature_dim)
    assert (out.features >= 0).all()

    with torch.no_grad():
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        maps = loaded.model.feature_maps(images)
    b, k = 1, 2
    window = out.windows[b, k].double().numpy()  # (h', w')
    pooled = []
    for layer in loaded.model.feature_layers:
        fmap = maps[layer][b].double().numpy()  # (C, h, w)
        weights = bilinear_by_hand(window, fmap.shape[1])
        weights /= weights.sum()
        pooled.append((fmap * weights).sum(axis=(1, 2)))
    np.testing.assert_allclose(
        out.features[b, k].numpy(), np.concatenate(pooled), rtol=1e-4, atol=1e-7
    )


def bilinear_by_hand(window: np.ndarray, size: int) -> np.ndarray:
    """Resizes a square array to size x size, corner pixel centres aligned, one pixel at a time."""
    n = window.shape[0]
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            y, x = i * (n - 1) / (size - 1), j * (n - 1) / (size - 1)
            y0, x0 = min(int(y), n - 2), min(int(x), n - 2)
            dy, dx = y - y0, x - x0
            out[i, j] = (
                window[y0, x0] * (1 - dy) * (1 - dx)
                + window[y0, x0 + 1] * (1 - dy) * dx
                + window[y0 + 1, x0] * dy * (1 - dx)
                + window[y0 + 1, x0 + 1] * dy * dx
            )
    return out


def test_pool_features_picks_the_pixel_under_a_one_pixel_window():
    fmap = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    windows = torch.zeros(2, 1, 4, 4)
    windows[0, 0, 1, 2] = 0.5
    windows[1, 0, 3, 0] = 2.0
    pooled = pool_features(fmap, windows)
    assert pooled.shape == (2, 1, 3)
    torch.testing.assert_close(pooled[0, 0], fmap[0, :, 1, 2])
    torch.testing.assert_close(pooled[1, 0], fmap[1, :, 3, 0])


def _with_run_json(run: Path, edit) -> Path:
    info = json.loads((run / "run.json").read_text())
    edit(info)
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_resize_method_follows_the_run_json(runs, data84, tmp_path):
    info = json.loads((runs["permakey"] / "run.json").read_text())
    assert info["frames"] == {"size": 84, "resize": "area", "channels": "RGB", "game": "Sprites"}
    assert KeypointObservation(gym.make(GAME), runs["permakey"], which="last").encoder.resize == (
        "area"
    )

    def nearest(info):
        info["frames"]["resize"] = "nearest"

    run = _with_run_json(shutil.copytree(runs["permakey"], tmp_path / "run"), nearest)
    env = KeypointObservation(gym.make(GAME), run, which="last")
    assert env.encoder.resize == "nearest"
    frame, _ = gym.make(GAME).reset(seed=1)
    obs, _ = env.reset(seed=1)
    expected = env.encoder.model.keypoints(resize_frame(frame, 84, "nearest")[None]).centres
    np.testing.assert_allclose(obs, expected.flatten().numpy(), atol=1e-6)


def test_a_run_from_before_frames_were_recorded_reads_its_dataset(runs, data84, tmp_path):
    data = shutil.copytree(data84, tmp_path / "nearest")
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, "resize": "nearest"}))

    def old_run(info):  # run.json as written before it had "frames"
        del info["frames"]
        info["dataset"]["train"]["path"] = str(data)

    run = _with_run_json(shutil.copytree(runs["permakey"], tmp_path / "old"), old_run)
    assert KeypointObservation(gym.make(GAME), run, which="last").encoder.resize == "nearest"
    shutil.rmtree(data)  # the dataset moved: "area", and the user is told
    with pytest.warns(UserWarning, match="does not say how its frames were resized"):
        env = KeypointObservation(gym.make(GAME), run, which="last")
    assert env.encoder.resize == "area"


@pytest.mark.parametrize("obs_type", ["grayscale", "ram"])
def test_non_rgb_observations_are_refused_at_construction(runs, obs_type):
    with pytest.raises(ValueError, match="RGB image observations"):
        KeypointObservation(gym.make(GAME, obs_type=obs_type), runs["permakey"])
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(GAME, obs_type=obs_type)])
    with pytest.raises(ValueError, match="RGB image observations"):
        VectorKeypointObservation(envs, runs["permakey"])


def test_a_model_for_smaller_frames_gets_frames_resized_to_its_size():
    model = TrainedModel(PermaKey(TINY_PERMAKEY))  # 32 x 32 frames
    env = KeypointObservation(gym.make(GAME), model, pixels=True)
    assert env.observation_space.high.max() == 31
    frame, _ = gym.make(GAME).reset(seed=2)
    obs, _ = env.reset(seed=2)
    expected = model.keypoints(resize_frame(frame, 32, "area")[None]).pixels
    np.testing.assert_allclose(obs, expected.flatten().numpy(), atol=1e-4)


def test_a_missing_run_is_refused_at_construction(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        KeypointObservation(gym.make(GAME), tmp_path / "no-such-run")


# --- stable-baselines3: the example agent and agents as collection policies ----------------


def rigged_agent(env: gym.Env, policy: str, action: int, path):
    """An untrained PPO agent whose action head always picks ``action``, saved to ``path``."""
    sb3 = pytest.importorskip("stable_baselines3")
    agent = sb3.PPO(policy, env, n_steps=8, batch_size=8, seed=0, device="cpu")
    with torch.no_grad():
        agent.policy.action_net.weight.zero_()
        agent.policy.action_net.bias.fill_(-50.0)
        agent.policy.action_net.bias[action] = 50.0
    agent.save(path)
    return path


def collect_with(policy: str, out, *extra: str) -> int:
    return main(
        ["collect", "pong", "--out", str(out), "--frames", "6", "--val-frames", "3"]
        + ["--test-frames", "3", "--no-objects", "--quiet", "--policy", policy, *extra]
    )


def test_collect_with_an_agent_trained_on_keypoints(runs, tmp_path):
    env = KeypointObservation(gym.make(GAME), runs["permakey"], features=True)
    agent = rigged_agent(env, "MlpPolicy", 3, tmp_path / "agent.zip")
    assert collect_with(f"sb3:{agent}", tmp_path / "no-model") == 2  # keypoints not given
    out = tmp_path / "data"
    assert collect_with(f"sb3:{agent}", out, "--policy-keypoints", str(runs["permakey"])) == 0
    for split in ("train", "val", "test"):
        assert set(open_split(out, split).action.tolist()) == {3}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["policy"].startswith("callable:sb3:PPO:agent.zip on keypoints of")
    # A keypoint model of another size of observation than the agent's is refused.
    assert collect_with(f"sb3:{agent}", out, "--policy-keypoints", str(runs["transporter"])) == 2


def test_collect_with_an_agent_trained_on_raw_frames(tmp_path, capsys):
    agent = rigged_agent(gym.make(GAME), "CnnPolicy", 2, tmp_path / "raw.zip")
    out = tmp_path / "data"
    assert collect_with(f"sb3:PPO:{agent}", out) == 0
    assert set(open_split(out, "train").action.tolist()) == {2}
    assert json.loads((out / "meta.json").read_text())["policy"] == f"sb3:PPO:{agent}"
    assert collect_with(f"sb3:DQN:{agent}", tmp_path / "dqn") == 2
    assert "cannot load" in capsys.readouterr().err


def test_collect_refuses_agents_on_other_observations(tmp_path, capsys):
    agent = rigged_agent(gym.make(GAME, obs_type="ram"), "MlpPolicy", 0, tmp_path / "ram.zip")
    assert collect_with(f"sb3:{agent}", tmp_path / "data") == 2
    assert "raw RGB frames" in capsys.readouterr().err
    assert collect_with(f"sb3:{tmp_path / 'none.zip'}", tmp_path / "data") == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_example_trains_an_agent_and_reports_it_next_to_random_play(runs, tmp_path):
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "result.json"
    command = [
        sys.executable, str(REPO / "examples" / "train_agent.py"), "--run", str(runs["permakey"]),
        "--game", "pong", "--timesteps", "64", "--eval-episodes", "2", "--seed", "0",
        "--max-episode-steps", "40", "--features", "--out", str(out), "--save", str(tmp_path / "a"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["timesteps"] >= 64 and result["eval_episodes"] == 2
    for who in ("agent", "random"):
        assert len(result[f"{who}_returns"]) == 2
        assert result[f"{who}_mean_return"] == pytest.approx(np.mean(result[f"{who}_returns"]))
    assert "mean return" in done.stderr and (tmp_path / "a.zip").is_file()
