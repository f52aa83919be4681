"""The training loop's machinery: configs, schedules, run folder, resume, stops, NaN guard, load."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_PERMAKEY, tiny_cfg
from safetensors import safe_open
from safetensors.torch import load_file

import permakey
from permakey.cli.main import main
from permakey.data.noise import NoiseConfig
from permakey.devices import resolve_device
from permakey.errors import UserError
from permakey.models.permakey import PermaKeyConfig
from permakey.runs.folder import checkpoint_folder, snapshot_path, weights_path
from permakey.testing import make_sprites_dataset
from permakey.training import get_method
from permakey.training.config import (
    PRESETS,
    PermaKeyTrainConfig,
    TransporterTrainConfig,
    field_docs,
)
from permakey.training.distributed import Processes
from permakey.training.loop import Stopper, TrainingDiverged, train
from permakey.training.optim import (
    SharedCounterAdam,
    build_optimizer,
    decay_factor,
    set_learning_rates,
)
from permakey.training.permakey import PermaKeyMethod
from permakey.training.start import new_run, resume_run

SIZE = TINY_PERMAKEY.image_size


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sprites"
    return make_sprites_dataset(
        path, {"train": 64, "val": 16, "test": 16}, episode_length=32, size=SIZE, sprite_size=4
    )


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this file runs on one thread (`conftest.one_thread`)."""


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(path)


def last(run: Path) -> Path:
    """The weights of a run's last checkpoint."""
    return weights_path(run, "last")


def last_state(run: Path) -> dict:
    """The state of a run's last checkpoint."""
    return torch.load(last(run).parent / "state.pt", weights_only=True)


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# --- configs and schedules ---------------------------------------------------------------


@pytest.mark.parametrize("cls", [PermaKeyTrainConfig, TransporterTrainConfig])
def test_every_config_field_has_help(cls):
    docs = field_docs(cls)
    assert {f.name for f in fields(cls)} <= set(docs)
    assert all(docs[name] for name in docs)


def test_presets_hold_the_papers_values():
    paper = PRESETS["permakey"]["paper"]
    assert (paper.lr, paper.batch_size, paper.epochs, paper.patience) == (2e-4, 32, 100, 10)
    assert (paper.lr_decay, paper.decay_rate, paper.decay_steps) == ("inverse-time", 0.85, 10_000)
    authors = PRESETS["permakey"]["authors-code"]
    assert authors.shared_adam_counter and authors.adam_eps == 1e-7
    cpu = PRESETS["permakey"]["cpu"]
    assert cpu.precision == "auto" and cpu.lr_pointnet == 1e-3
    cpu_model = PermaKeyMethod().model_config("cpu")
    assert cpu_model.lsp_hidden == (128, 64) and cpu_model.encoder_channels == (16, 32, 32, 64)
    # cpu-track: cpu's training; cpu's model with LSP layers 0 and 1 at 42 x 42, a coordinate
    # PointNet that still makes 21 x 21 keypoint maps, and the windows' border cost.
    assert PRESETS["permakey"]["cpu-track"] == cpu
    track = PermaKeyMethod().model_config("cpu-track")
    assert [shape[1] for shape in track.feature_shapes] == [42, 42, 21, 21]
    assert track.keypoint_map_size == 21 and track.pointnet_coords and track.window_border_cost
    untracked = replace(
        track, encoder_strides=(1, 2, 2, 1), pointnet_coords=False, window_border_cost=False
    )
    assert untracked == replace(cpu_model, pointnet_strides=(1, 2, 2, 1))


def test_auto_precision_is_bf16_only_where_native(monkeypatch):
    from permakey import devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: False)
    assert devices.resolve_precision("auto", cpu) == "fp32"
    assert devices.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    assert devices.resolve_precision("auto", cpu) == "bf16"
    assert devices.resolve_precision("fp32", cpu) == "fp32"
    tp = PRESETS["transporter"]["paper"]
    assert (tp.lr, tp.batch_size, tp.epochs, tp.patience) == (5e-4, 64, 100, 5)
    assert (tp.lr_decay, tp.decay_rate, tp.decay_steps, tp.window) == (
        "exponential",
        0.9,
        30_000,
        100,
    )


def test_device_names_resolve_and_bad_ones_are_named():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(str(resolve_device("auto"))) == resolve_device("auto")
    with pytest.raises(UserError, match="'gpu'"):
        resolve_device("gpu")
    with pytest.raises(UserError, match="cuda:9"):
        resolve_device("cuda:9")


def test_config_round_trips_and_rejects_bad_values():
    cfg = PRESETS["permakey"]["cpu"]
    assert PermaKeyTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="lr"):
        PermaKeyTrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="noise"):
        PermaKeyTrainConfig(noise="diagonal")
    with pytest.raises(ValueError, match="bogus"):
        PermaKeyTrainConfig.from_dict({"bogus": 1})


def test_staircase_decays():
    assert decay_factor(9_999, "inverse-time", 0.85, 10_000) == 1.0
    assert decay_factor(10_000, "inverse-time", 0.85, 10_000) == pytest.approx(1 / 1.85)
    assert decay_factor(25_000, "inverse-time", 0.85, 10_000) == pytest.approx(1 / 2.7)
    assert decay_factor(60_000, "exponential", 0.9, 30_000) == pytest.approx(0.81)
    assert decay_factor(10**6, "none", 0.9, 1) == 1.0


def test_shared_counter_decays_every_2500_training_steps():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(4)]
    groups = [permakey.training.optim.ParamGroup(f"g{i}", [p], 2e-4) for i, p in enumerate(params)]
    opt = build_optimizer(groups, 1e-7, shared_counter=True)
    assert isinstance(opt, SharedCounterAdam)
    before = set_learning_rates(opt, 2_499, "inverse-time", 0.85, 10_000)
    after = set_learning_rates(opt, 2_500, "inverse-time", 0.85, 10_000)
    assert all(v == 2e-4 for v in before.values())
    assert all(v == pytest.approx(2e-4 / 1.85) for v in after.values())


def test_shared_counter_adam_bias_correction_follows_the_shared_counter():
    """First update of group j of 4 uses iteration n = j + 1 (Keras's formula, eps ~ 0)."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(4)]
    opt = SharedCounterAdam([{"params": [p], "lr": 1.0} for p in params], eps=1e-12)
    for p in params:
        p.grad = torch.ones(1)
    opt.step()
    b1, b2 = 0.9, 0.999
    for j, p in enumerate(params):
        n = j + 1
        expected = -math.sqrt(1 - b2**n) / (1 - b1**n) * (1 - b1) / math.sqrt(1 - b2)
        assert p.item() == pytest.approx(expected, rel=1e-5)
    assert params[0].item() == pytest.approx(-1.0, rel=1e-5)  # n = 1: plain Adam's first step


def test_param_groups_are_disjoint_and_cover_the_model():
    from permakey.models.permakey import PermaKey

    model = PermaKey(TINY_PERMAKEY)
    groups = PermaKeyMethod().param_groups(model, PermaKeyTrainConfig(lr_pointnet=1e-3))
    assert [g.name for g in groups] == ["vae", "lsp/0", "lsp/1", "pointnet"]
    ids = [id(p) for g in groups for p in g.params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert [g.lr for g in groups] == [2e-4, 2e-4, 2e-4, 1e-3]


def _one_step_changes(cfg: PermaKeyTrainConfig, steps: int = 1) -> dict[str, bool]:
    """Which modules' parameters (not BatchNorm statistics) ``steps`` training steps change."""
    from permakey.models.permakey import PermaKey
    from permakey.training.loop import training_step

    torch.manual_seed(0)
    model = PermaKey(TINY_PERMAKEY)
    method = PermaKeyMethod()
    optimizer = build_optimizer(method.param_groups(model, cfg), cfg.adam_eps)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch = {"frame": torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8)}
    for step in range(steps):
        set_learning_rates(optimizer, step, cfg.lr_decay, cfg.decay_rate, cfg.decay_steps)
        training_step(method, model, optimizer, batch, torch.device("cpu"), cfg)
    after = dict(model.named_parameters())
    changed = {
        part: any(not torch.equal(before[k], after[k]) for k in after if k.startswith(part + "."))
        for part in ("vae", "lsp", "pointnet")
    }
    changed["pointnet_adam_steps"] = int(optimizer.state[next(model.pointnet.parameters())]["step"])
    changed["model"] = model
    return changed


def test_extra_pointnet_updates_move_only_the_pointnet():
    once = _one_step_changes(PermaKeyTrainConfig())
    thrice = _one_step_changes(PermaKeyTrainConfig(pointnet_updates=3))
    assert thrice["pointnet_adam_steps"] == 3 and once["pointnet_adam_steps"] == 1
    for part in ("vae", "lsp"):  # the other modules still get exactly one update
        a, b = dict(once["model"].named_parameters()), dict(thrice["model"].named_parameters())
        assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(part + ".")), part
    a = dict(once["model"].pointnet.named_parameters())
    b = dict(thrice["model"].pointnet.named_parameters())
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_pointnet_warmup_holds_the_pointnet_still_then_lets_it_learn():
    cfg = PermaKeyTrainConfig(pointnet_warmup=2, pointnet_updates=2)
    during = _one_step_changes(cfg, steps=2)
    assert during["vae"] and during["lsp"] and not during["pointnet"]
    assert during["pointnet_adam_steps"] == 2  # no extra updates while warming up
    after = _one_step_changes(cfg, steps=3)
    assert after["pointnet"] and after["pointnet_adam_steps"] == 4


def test_window_anneal_widens_the_windows_and_shrinks_them_to_the_model_width():
    from permakey.models.permakey import PermaKey

    model, method = PermaKey(TINY_PERMAKEY), PermaKeyMethod()
    sigma = TINY_PERMAKEY.gaussian_sigma
    assert method.before_step(model, 0, PermaKeyTrainConfig()) == {}  # off by default
    assert model.pointnet.sigma == sigma
    cfg = PermaKeyTrainConfig(window_anneal=4.0, window_anneal_steps=10)
    widths = [method.before_step(model, step, cfg)["gaussian_sigma"] for step in (0, 5, 10, 30)]
    assert widths == pytest.approx([4 * sigma, 2 * sigma, sigma, sigma])  # geometric, then held
    method.before_step(model, 0, cfg)
    wide = model.pointnet.keypoints(torch.zeros(1, 1, 5, 5)).windows  # (1, 1, 5, 5)
    method.before_step(model, 10, cfg)
    narrow = model.pointnet.keypoints(torch.zeros(1, 1, 5, 5)).windows
    assert wide.sum() > 2 * narrow.sum()  # the windows drawn are the scheduled width


def test_a_wide_window_feels_a_far_error_blob_that_a_narrow_one_does_not():
    # The reason for window_anneal: the PointNet loss moves a keypoint only through the
    # overlap of its window with the error maps.
    from permakey.keypoints import gaussian_windows
    from permakey.models.permakey import pointnet_loss

    stack = torch.zeros(1, 1, 42, 42)
    stack[..., 33:37, 33:37] = 1.0  # a blob near the bottom right corner
    pulls = []
    for sigma in (0.1, 0.4):
        centres = torch.zeros(1, 1, 2, requires_grad=True)  # the frame's centre
        pointnet_loss(gaussian_windows(centres, 21, 21, sigma), stack).backward()
        pulls.append(-centres.grad[0, 0])  # descent direction, (y, x)
    assert pulls[0].abs().max() < 1e-6
    assert (pulls[1] > 1e-4).all()  # towards the blob in both axes


def test_a_run_with_window_anneal_charts_the_width(data, tmp_path):
    cfg = tiny_cfg(data, window_anneal=3.0, window_anneal_steps=8, epochs=1)
    train(PermaKeyMethod(), cfg, TINY_PERMAKEY, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    widths = [r["charts/gaussian_sigma"] for r in rows if "charts/gaussian_sigma" in r]
    sigma = TINY_PERMAKEY.gaussian_sigma
    # Logged every 4 steps, with the width of the window's last step (3 and 7 of 0-7).
    assert widths == pytest.approx([sigma * 3 ** (5 / 8), sigma * 3 ** (1 / 8)])


def test_pointnet_lever_values_are_checked():
    with pytest.raises(ValueError, match="pointnet_updates"):
        PermaKeyTrainConfig(pointnet_updates=0)
    with pytest.raises(ValueError, match="pointnet_warmup"):
        PermaKeyTrainConfig(pointnet_warmup=-1)
    with pytest.raises(ValueError, match="shared_adam_counter"):
        PermaKeyTrainConfig(pointnet_updates=2, shared_adam_counter=True)
    with pytest.raises(ValueError, match="window_anneal must be"):
        PermaKeyTrainConfig(window_anneal=0.5, window_anneal_steps=10)
    with pytest.raises(ValueError, match="needs window_anneal_steps"):
        PermaKeyTrainConfig(window_anneal=2.0)


# --- run folder, checkpoints, load ----------------------------------------------------------


def test_run_folder_contents_and_checkpoint_round_trip(data, tmp_path):
    run = tmp_path / "run"
    result = train(PermaKeyMethod(), tiny_cfg(data), TINY_PERMAKEY, run)
    assert (result.status, result.step, result.epoch) == ("finished", 16, 2)
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "permakey" and info["status"] == "finished"
    assert PermaKeyConfig.from_dict(info["model"]) == TINY_PERMAKEY
    assert PermaKeyTrainConfig.from_dict(info["train"]) == tiny_cfg(data)
    assert info["dataset"]["train"]["sha256"] and info["code"]["version"]
    assert last(run) == checkpoint_folder(run, 16) / "last.safetensors"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000016"]  # only the last
    state = last_state(run)
    assert state["step"] == 16 and state["position"] == {"epoch": 2, "batch": 0, "step": 16}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("losses/pointnet" in r and "charts/images_per_s" in r for r in rows)
    assert sum("val/loss" in r for r in rows) == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb")).Reload()
    assert {"val/keypoints", "val/reconstruction"} <= set(events.Tags()["images"])
    assert "losses/pointnet" in events.Tags()["scalars"]
    assert len(events.Images("val/keypoints")) == 2  # one picture per epoch

    loaded = permakey.load(run, "last")
    assert loaded.kind == "permakey" and loaded.config == TINY_PERMAKEY
    assert not loaded.model.training
    saved = weights(last(run))
    state_dict = loaded.model.state_dict()
    assert saved.keys() == state_dict.keys()
    assert all(torch.equal(saved[k], state_dict[k]) for k in saved)
    ident = loaded.identity()
    assert ident["sha256"] == hashlib.sha256(last(run).read_bytes()).hexdigest()
    assert permakey.load(run, "best").identity()["weights"] == "best.safetensors"


def test_resume_after_interrupt_and_step_budget_is_bit_identical(data, tmp_path):
    method = PermaKeyMethod()
    full = train(method, tiny_cfg(data), TINY_PERMAKEY, tmp_path / "full")

    class InterruptAtCall(PermaKeyMethod):
        calls = 0

        def forward(self, model, batch, device, channels_last):
            InterruptAtCall.calls += 1
            if InterruptAtCall.calls == 3:  # Ctrl-C in the middle of step 3 of epoch 1
                os.kill(os.getpid(), signal.SIGINT)
            return super().forward(model, batch, device, channels_last)

    run = tmp_path / "parts"
    first = train(InterruptAtCall(), tiny_cfg(data), TINY_PERMAKEY, run)
    assert (first.status, first.step) == ("interrupted", 3)
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    second = train(method, tiny_cfg(data, max_steps=11), TINY_PERMAKEY, run, resume=True)
    assert (second.status, second.step, second.epoch) == ("stopped", 11, 1)
    third = train(method, tiny_cfg(data), TINY_PERMAKEY, run, resume=True)
    assert (third.status, third.step) == ("finished", full.step)
    assert_same_weights(last(tmp_path / "full"), last(run))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == sorted(row["step"] for row in rows)
    # The stop at step 11 validated its weights as well: the best weights are the better of
    # those and the uninterrupted run's best.
    (stop_loss,) = [row["val/loss"] for row in rows if row["step"] == 11 and "val/loss" in row]
    best_step = safe_open(run / "best.safetensors", "pt").metadata()["step"]
    if stop_loss < full.best_val_loss:
        assert (third.best_val_loss, best_step) == (stop_loss, "11")
    else:
        assert third.best_val_loss == full.best_val_loss
        assert_same_weights(tmp_path / "full" / "best.safetensors", run / "best.safetensors")


def test_time_budget_stops_cleanly_with_a_best_model(data, tmp_path):
    run = tmp_path / "run"
    result = train(PermaKeyMethod(), tiny_cfg(data, time_budget=1e-6), TINY_PERMAKEY, run)
    assert (result.status, result.step, result.epoch) == ("stopped", 1, 0)
    found = permakey.load(run, "best").keypoints(np.zeros((2, SIZE, SIZE, 3), np.uint8))
    assert found.centres.shape == (2, 3, 2)
    resumed = train(PermaKeyMethod(), tiny_cfg(data, epochs=1), TINY_PERMAKEY, run, resume=True)
    assert (resumed.status, resumed.step) == ("finished", 8)


def test_resuming_a_run_at_or_past_its_step_budget_trains_no_further_step(data, tmp_path, capsys):
    run = tmp_path / "run"
    first = train(PermaKeyMethod(), tiny_cfg(data, max_steps=3), TINY_PERMAKEY, run)
    assert (first.status, first.step) == ("stopped", 3)
    files = ("checkpoints/step-00000003/last.safetensors", "best.safetensors",
             "checkpoints/step-00000003/state.pt", "metrics.jsonl")  # fmt: skip
    before = {name: (run / name).read_bytes() for name in files}
    capsys.readouterr()
    again = train(PermaKeyMethod(), tiny_cfg(data, max_steps=3), TINY_PERMAKEY, run, resume=True)
    assert (again.status, again.step, again.epoch) == ("stopped", 3, 0)
    assert again.best_val_loss == first.best_val_loss
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["step"]) == ("stopped", 3)
    assert {name: (run / name).read_bytes() for name in files} == before  # nothing retrained
    assert f"max steps: stopped at step 3 (epoch 1); continue with --resume {run}" in (
        capsys.readouterr().out
    )
    # A budget the run is already past is an error, not a run reported at the wrong step.
    info = (run / "run.json").read_bytes()
    argv = ["train", "permakey", "--resume", str(run), "--max-steps", "2", "--no-progress"]
    assert main(argv) == 2
    assert f"{run} is at step 3, past --max-steps 2: nothing to train" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in files} == before
    assert (run / "run.json").read_bytes() == info


def test_readme_slurm_script_resumes_the_run_folders_that_training_makes(data, tmp_path):
    # The sbatch script resumes when a file exists in the run folder, and otherwise starts the
    # run anew with --overwrite: a file that training never writes would throw runs away.
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (checked,) = re.findall(r'if \[ -f "\$RUN/([^"]+)" \]', readme)
    run = tmp_path / "run"
    train(PermaKeyMethod(), tiny_cfg(data, max_steps=1), TINY_PERMAKEY, run)
    assert (run / checked).is_file()
    assert resume_run("permakey", run, max_steps=2).step == 2


def test_snapshots_keep_the_weights_that_shorter_budgets_end_with(data, tmp_path):
    short = tmp_path / "short"
    train(PermaKeyMethod(), tiny_cfg(data, max_steps=3), TINY_PERMAKEY, short)
    run = tmp_path / "curve"
    cfg = tiny_cfg(data, max_steps=6, snapshot_steps=(3, 5))
    train(PermaKeyMethod(), cfg, TINY_PERMAKEY, run)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "step-00000003.safetensors", "step-00000005.safetensors",
    ]  # fmt: skip
    assert_same_weights(last(short), snapshot_path(run, 3))
    assert safe_open(snapshot_path(run, 5), "pt").metadata()["step"] == "5"
    # Resumed with a further snapshot (a runtime option): the earlier ones stay as they were.
    before = snapshot_path(run, 3).read_bytes()
    resume_run("permakey", run, max_steps=8, snapshot_steps=[3, 5, 8])
    assert snapshot_path(run, 3).read_bytes() == before
    assert_same_weights(last(run), snapshot_path(run, 8))
    loaded = permakey.load(run, "step-5")
    assert loaded.identity()["weights"] == "step-00000005.safetensors"
    with pytest.raises(UserError, match="step-00000004.safetensors is missing"):
        permakey.load(run, "step-4")
    with pytest.raises(ValueError, match="step-N"):
        permakey.load(run, "step-0")


def test_noise_options_reach_the_training_frames(data):
    cfg = tiny_cfg(data, noise="both", noise_width=2, noise_colour=(9, 9, 9), noise_share=0.5)
    train_set, val_set = PermaKeyMethod().datasets(cfg)
    for dataset in (train_set, val_set):
        assert dataset.noise == NoiseConfig("both", 2, (9, 9, 9)) and dataset.noise_share == 0.5
    pairs, _ = get_method("transporter").datasets(
        TransporterTrainConfig(
            data=str(data), noise="both", noise_random_colour=True, noise_share=0.5, window=8
        )
    )
    assert pairs.noise == NoiseConfig("both", random_colour=True) and pairs.noise_share == 0.5
    with pytest.raises(UserError, match="before the resize"):  # synthetic frames: no resize
        PermaKeyMethod().datasets(replace(cfg, noise_before_resize=True))
    with pytest.raises(ValueError, match="noise_share"):
        tiny_cfg(data, noise_share=1.5)


def test_tensorboard_keeps_what_a_resumed_run_logged_up_to_its_checkpoint(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(PermaKeyMethod(), tiny_cfg(data, max_steps=3), TINY_PERMAKEY, run)
    # TensorBoard reads event files in name order, and a name holds whole seconds, then a
    # counter: two files of one second can sort in the wrong order.
    time.sleep(1.0)
    train(PermaKeyMethod(), tiny_cfg(data, epochs=1), TINY_PERMAKEY, run, resume=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run / "tb")).Reload()
    # The validations of the budget stop (step 3) and of the epoch's end (step 8).
    assert [e.step for e in events.Scalars("val/loss")] == [3, 8]
    assert [r["step"] for r in rows if "val/loss" in r] == [3, 8]


def _stop_reason_of_rank(rank: int, store: str, out: str) -> None:
    """A process of `test_every_process_stops_for_a_signal_that_reached_one`."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    stopper = Stopper(time_budget_min=None, max_steps=None)
    stopper.signalled = rank == 1  # Ctrl-C reached one process only
    reason = stopper.reason(1, Processes(rank, 2, torch.device("cpu")))
    Path(out, f"{rank}.json").write_text(json.dumps(reason))
    dist.destroy_process_group()


@pytest.mark.slow
def test_every_process_stops_for_a_signal_that_reached_one(tmp_path):
    torch.multiprocessing.spawn(
        _stop_reason_of_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2
    )
    reasons = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert reasons == ["interrupted", "interrupted"]


def test_nan_loss_stops_naming_module_and_step_and_keeps_last_checkpoint(data, tmp_path):
    class NaNAtStep10(PermaKeyMethod):
        calls = 0

        def forward(self, model, batch, device, channels_last):
            out = super().forward(model, batch, device, channels_last)
            if model.training:
                NaNAtStep10.calls += 1
                if NaNAtStep10.calls == 10:
                    out.losses["pointnet"] = out.losses["pointnet"] * float("nan")
            return out

    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"'pointnet'.*step 10 \(epoch 2\)") as err:
        train(NaNAtStep10(), tiny_cfg(data), TINY_PERMAKEY, run)
    assert "last.safetensors (step 8)" in str(err.value)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "diverged" and "pointnet" in info["error"]
    loaded = permakey.load(run, "last")
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())
    assert last_state(run)["step"] == 8


def test_huge_learning_rate_diverges_with_a_clear_error(data, tmp_path):
    with pytest.raises(
        TrainingDiverged, match=r"loss '.+' \(module '.+'\) became (nan|inf) at step \d+"
    ):
        train(PermaKeyMethod(), tiny_cfg(data, lr=1e30), TINY_PERMAKEY, tmp_path / "run")
    assert permakey.load(tmp_path / "run", "last")  # the initial weights, step 0


# --- command line -------------------------------------------------------------------------


def cli(data, run, *extra) -> list[str]:
    return [
        "train", "transporter", "--data", str(data), "--out", str(run), "--epochs", "1",
        "--batch-size", "8", "--window", "8", "--workers", "0", "--device", "cpu",
        "--no-progress", "--model", f"image_size={SIZE}", "--model", "channels=[8, 8, 8, 8]",
        "--num-keypoints", "3", *extra,
    ]  # fmt: skip


def test_cli_trains_transporter_and_refuses_to_overwrite(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(cli(data, run)) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "transporter" and info["model"]["num_keypoints"] == 3
    before = last(run).read_bytes()
    assert main(cli(data, run)) == 2
    assert "already exists" in capsys.readouterr().err
    assert last(run).read_bytes() == before
    assert main(cli(data, run, "--overwrite", "--seed", "1")) == 0
    assert json.loads((run / "run.json").read_text())["train"]["seed"] == 1
    # A resumed run keeps its settings; only run-time options may change.
    assert main(["train", "transporter", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "--lr cannot be given with --resume" in capsys.readouterr().err
    assert main(["train", "permakey", "--resume", str(run)]) == 2
    assert "is a transporter run" in capsys.readouterr().err
    assert (
        main(["train", "transporter", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    )
    assert json.loads((run / "run.json").read_text())["epoch"] == 2


def test_new_run_and_resume_run_are_the_train_command_in_python(data, tmp_path):
    run = tmp_path / "run"
    small = {"image_size": SIZE, "channels": [8, 8, 8, 8]}
    options = {"batch_size": 8, "window": 8, "workers": 0, "device": "cpu", "progress": False}
    result = new_run("transporter", data, run, num_keypoints=3, model=small, max_steps=1, **options)
    assert (result.status, result.step, result.run) == ("stopped", 1, run)
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["num_keypoints"] == 3 and info["train"]["data"] == str(data)
    assert info["train"]["lr"] == PRESETS["transporter"]["paper"].lr  # the preset fills the rest
    with pytest.raises(UserError, match="lr cannot change when a run resumes"):
        resume_run("transporter", run, lr=0.1)
    with pytest.raises(UserError, match="is a transporter run, not a permakey run"):
        resume_run("permakey", run)
    with pytest.raises(UserError, match="unknown model preset 'huge'"):
        new_run("transporter", data, tmp_path / "other", model_preset="huge")
    with pytest.raises(UserError, match="unexpected keyword argument 'colour'"):
        new_run("transporter", data, tmp_path / "other", colour=1)
    assert resume_run("transporter", run, max_steps=2, progress=False).step == 2


# --- load ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    with torch.random.fork_rng():
        train(PermaKeyMethod(), tiny_cfg(data, max_steps=1), TINY_PERMAKEY, run)
    return permakey.load(run)


def test_load_accepts_both_layouts(loaded):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, SIZE, SIZE, 3), dtype=np.uint8)
    a = loaded.keypoints(frames, batch_size=2)
    b = loaded.keypoints(torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert a.centres.shape == (5, 3, 2) and a.windows.shape[:2] == (5, 3)
    assert torch.allclose(a.centres, b.centres, atol=1e-6)
    assert a.centres.abs().max() <= 1
    assert torch.allclose(a.pixels, (a.centres + 1) / 2 * (SIZE - 1))
    assert loaded.keypoints(frames, windows=False).windows is None


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((2, SIZE, SIZE, 3), np.float32),
        np.zeros((2, SIZE, SIZE, 3), np.int64),
        np.zeros((SIZE, SIZE, 3), np.uint8),
        np.zeros((2, SIZE, SIZE), np.uint8),
        np.zeros((2, SIZE + 1, SIZE, 3), np.uint8),
        np.zeros((2, 4, SIZE, SIZE), np.uint8),
        [[0]],
    ],
    ids=["float32", "int64", "3d", "no-channels", "wrong-size", "4-channels", "list"],
)
def test_load_rejects_bad_frames(loaded, frames):
    with pytest.raises(ValueError, match="frames"):
        loaded.keypoints(frames)


def test_load_errors_name_the_file(tmp_path, loaded):
    with pytest.raises(UserError, match="does not exist"):
        permakey.load(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    with pytest.raises(UserError, match="run.json is missing"):
        permakey.load(tmp_path / "bad")
    (tmp_path / "bad" / "run.json").write_text("{not json")
    with pytest.raises(UserError, match="run.json is corrupted"):
        permakey.load(tmp_path / "bad")
    run = loaded.run
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "run.json").write_bytes((run / "run.json").read_bytes())
    with pytest.raises(UserError, match="best.safetensors is missing"):
        permakey.load(tmp_path / "copy")
    with pytest.raises(ValueError, match="which"):
        permakey.load(run, "middle")


def test_get_method_knows_both():
    assert get_method("permakey").kind == "permakey"
    assert get_method("transporter").kind == "transporter"
    with pytest.raises(ValueError, match="unknown method"):
        get_method("slots")
