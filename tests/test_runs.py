"""The trained-run room: the model registry and the one loaded-model interface."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_run

import permakey
from permakey.errors import UserError
from permakey.models.permakey import PermaKeyConfig
from permakey.models.registry import METHODS, model_kind
from permakey.models.transporter import TransporterConfig
from permakey.runs import FrameSpec, TrainedModel
from permakey.training import get_method

SMALL = {
    "permakey": PermaKeyConfig(image_size=32, num_keypoints=3, lsp_hidden=(16,)),
    "transporter": TransporterConfig(image_size=32, num_keypoints=4),
}


def test_every_model_kind_has_a_training_adapter_with_the_same_classes():
    for kind in METHODS:
        method = get_method(kind)
        assert method.kind == kind
        assert method.model_config_class is model_kind(kind).config_class
        assert type(method.build_model(SMALL[kind])) is model_kind(kind).model_class
    with pytest.raises(ValueError, match="unknown model kind 'slot'.*permakey"):
        model_kind("slot")


@pytest.mark.parametrize("kind", METHODS)
def test_load_gives_the_saved_model_and_its_frames(tmp_path, kind):
    run = make_run(tmp_path / kind, kind, SMALL[kind], seed=0)
    best, last = permakey.load(run), permakey.load(run, "last")
    assert isinstance(best, TrainedModel) and best.kind == kind and best.name == kind
    assert best.frames == FrameSpec(32, "area", "RGB", None)
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    a = best.keypoints(frames)
    assert a.centres.shape == (5, SMALL[kind].num_keypoints, 2)
    first = next(iter(best.model.state_dict()))
    difference = last.model.state_dict()[first] - best.model.state_dict()[first]
    torch.testing.assert_close(difference, torch.ones_like(difference))  # as make_run saved them
    # The same weights give the same keypoints, batch by batch or at once.
    torch.testing.assert_close(best.keypoints(frames, batch_size=2).centres, a.centres)
    assert best.identity()["run_json"]["kind"] == kind


def test_error_maps_come_from_models_that_have_them(tmp_path):
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    frames[:, 8:12, 8:12] = 255
    pk = TrainedModel(model_kind("permakey").build(SMALL["permakey"]))
    out = pk.keypoints(frames, error_maps=True)
    layers = SMALL["permakey"].lsp_layers
    assert pk.error_layers == tuple(layers)
    assert out.error_stack.shape == (2, len(layers), 32, 32)
    assert out.error_stack.min() >= 0.0 and out.error_stack.max() <= 1.0
    assert [m.shape[0] for m in out.error_maps] == [2] * len(layers)
    # Keypoints placed on these maps are the ones `keypoints` returns without them.
    torch.testing.assert_close(pk.keypoints(frames).centres, out.centres)
    tr = TrainedModel(model_kind("transporter").build(SMALL["transporter"]))
    found = tr.keypoints(frames, error_maps=True)
    assert tr.error_layers == () and found.error_stack is None and found.error_maps is None


def test_a_damaged_frames_entry_is_a_one_line_error(tmp_path):
    run = make_run(tmp_path / "run", "permakey", SMALL["permakey"], seed=0)
    info = json.loads((run / "run.json").read_text())
    info["frames"]["resize"] = "bicubic"
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match=r"run.json is corrupted \(frames: unknown resize"):
        permakey.load(run)


def test_loading_a_run_imports_no_training_code(tmp_path):
    import subprocess
    import sys

    run = make_run(tmp_path / "run", "permakey", SMALL["permakey"], seed=0)
    code = (
        "import sys, permakey; permakey.load(sys.argv[1]);"
        "print(sorted(m for m in sys.modules if m.startswith('permakey.training')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_bars_a_run_trained_on_read_from_run_json_and_pretrained_records(tmp_path):
    from permakey.data.noise import NoiseConfig
    from permakey.runs.bars import PAPER_LOOK, noise_for_runs, trained_look

    # A run.json from before the random colour and the bars before the resize: the paper's.
    older = {"train": {"noise": "vertical", "noise_width": 3, "noise_colour": [0, 255, 0]}}
    assert trained_look(older) == {**PAPER_LOOK, "noise_width": 3, "noise_colour": (0, 255, 0)}
    assert trained_look({"train": {"noise": "none", "noise_width": 3}}) is None
    assert trained_look({"train": {}}) is None
    data = tmp_path / "data"
    data.mkdir()  # not read: the bars are painted on the stored frames
    # The shipped models trained on clean frames: the paper's bars.
    assert noise_for_runs(["pretrained:MsPacman"], data, "both") == NoiseConfig("both")
    with pytest.raises(UserError, match="run folder .*missing.* does not exist"):
        noise_for_runs([tmp_path / "missing"], data, "both")
