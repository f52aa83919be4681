"""`permakey evaluate` end to end: a tiny collected dataset, real (untrained) run folders.

The run folders are written with the training room's `RunFolder`, so the real
`permakey.load` reads them; only the training itself is skipped.
"""

import argparse

import pytest
import torch

import permakey
from permakey.cli import evaluate as cli
from permakey.evaluation.evaluate import read_result
from permakey.models.permakey import PermaKeyConfig
from permakey.models.transporter import TransporterConfig
from permakey.training import get_method
from permakey.training.run import RunFolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    pytest.importorskip("ocatari")
    from permakey.data.collect import collect

    out = tmp_path_factory.mktemp("data") / "pong"
    collect("Pong", out, frames=4, val_frames=4, test_frames=12, progress=False)
    return out


def make_run(folder, kind, model_config, seed):
    method = get_method(kind)
    torch.manual_seed(seed)
    model = method.build_model(model_config)
    run = RunFolder(folder)
    info = {
        "kind": kind,
        "model": model_config.to_dict(),
        "train": method.config_class(seed=seed).to_dict(),
    }
    run.create(info, model, overwrite=False)
    run.save_weights("best", model, 0)
    with torch.no_grad():  # last weights that differ from the best ones
        next(model.parameters()).add_(1.0)
    run.save_weights("last", model, 1)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    permakey_config = PermaKeyConfig(num_keypoints=3, lsp_hidden=(16,))
    return [
        make_run(root / "pk0", "permakey", permakey_config, 0),
        make_run(root / "pk1", "permakey", permakey_config, 1),
        make_run(root / "tr", "transporter", TransporterConfig(num_keypoints=4), 0),
    ]


def test_evaluate_command_writes_json_and_prints_table(dataset, runs, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    out = tmp_path / "eval.json"
    argv = ["evaluate", *map(str, runs), "--data", str(dataset), "--noise", "both"]
    argv += ["--out", str(out), "--max-frames", "10", "--batch-size", "4", "--device", "cpu"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    result = read_result(out)
    names = [c.name for c in result.columns]
    assert names[:3] == ["pk0", "template: pk0", "peaks: pk0"]
    assert "tr" in names and "peaks: tr" not in names
    assert {"random K=3", "random K=4"} <= set(names)
    assert result.frames == 10 and result.dataset.identity["game"] == "Pong"
    assert result.code["version"] == permakey.__version__
    assert result.columns[0].identity["kind"] == "permakey"
    assert result.noise.kind == "both"
    # pk0 and pk1 differ only in their seed; the transporter is in no seed group.
    assert [g.runs for g in result.seed_stability] == [("pk0", "pk1")]
    for column in result.columns:
        m = column.metrics
        assert 0.0 <= m.f1[2] <= 1.0
        assert 0.0 <= m.distractor_share[2] <= 1.0
    chance = result.columns[0].metrics.distractor_chance[0]
    assert chance == pytest.approx(1 - (79 / 84) ** 2)  # two 5-pixel bars
    printed = capsys.readouterr().out
    assert "| F1@2" in printed and f"wrote {out}" in printed


def test_weights_choose_the_checkpoint_evaluated(dataset, runs):
    from permakey.evaluation.evaluate import evaluate_runs

    results = {
        which: evaluate_runs(runs[:1], dataset, max_frames=4, weights=which)
        for which in ("best", "last")
    }
    identity = {which: r.columns[0].identity for which, r in results.items()}
    assert identity["best"]["weights"] == "best.safetensors"
    assert identity["last"]["weights"] == "last.safetensors"
    assert identity["best"]["sha256"] != identity["last"]["sha256"]


def test_unknown_category_flag_is_a_user_error(dataset, runs):
    from permakey.errors import UserError
    from permakey.evaluation.evaluate import evaluate_runs

    with pytest.raises(UserError, match="Pill"):
        evaluate_runs(runs[:1], dataset, exclude=["Pill"], max_frames=2)
