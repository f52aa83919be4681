"""`permakey evaluate` end to end: a tiny collected dataset, real (untrained) run folders.

The run folders are written with the training room's `RunFolder` (`conftest.make_run`), so
the real `permakey.load` reads them; only the training itself is skipped.
"""

import argparse

import pytest
from conftest import make_run

import permakey
from permakey.cli import evaluate as cli
from permakey.evaluation.evaluate import read_result
from permakey.models.permakey import PermaKeyConfig
from permakey.models.transporter import TransporterConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    pytest.importorskip("ocatari")
    from permakey.data.collect import collect

    out = tmp_path_factory.mktemp("data") / "pong"
    collect("Pong", out, frames=4, val_frames=4, test_frames=12, progress=False)
    return out


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
    # The error maps of the real PermaKey models on the bars; none for Transporter, controls.
    mass = result.column("pk0").metrics.bar_error_mass
    assert mass.layers == (0, 1) and mass.sprites == "object boxes"
    assert mass.chance == pytest.approx(result.column("pk0").metrics.distractor_chance[2])
    assert all(0.0 <= share <= 1.0 for share in (mass.summed, *mass.per_layer))
    with_mass = {c.name for c in result.columns if c.metrics.bar_error_mass is not None}
    assert with_mass == {"pk0", "pk1"}
    printed = capsys.readouterr().out
    assert "| F1@2" in printed and f"wrote {out}" in printed
    assert "| bar error mass@2 (chance" in printed


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


def test_a_run_from_before_frames_were_recorded_still_evaluates(dataset, tmp_path):
    from permakey.evaluation.evaluate import evaluate_runs

    config = PermaKeyConfig(num_keypoints=3, lsp_hidden=(16,))
    old = make_run(tmp_path / "old", "permakey", config, 0, frames=False)
    new = make_run(tmp_path / "new", "permakey", config, 0)
    with pytest.warns(UserWarning, match="assuming 'area'"):
        before = evaluate_runs([old], dataset, max_frames=4)
    after = evaluate_runs([new], dataset, max_frames=4)
    assert before.columns[0].metrics == after.columns[0].metrics


def test_identity_of_every_column_on_a_collected_dataset(dataset, runs):
    from permakey.evaluation.evaluate import evaluate_runs, format_table

    result = evaluate_runs(runs, dataset, max_frames=12)
    assert result.identities == "slot"  # Pong keeps OCAtari's slots
    assert result.categories.moving == tuple(
        c for c in result.dataset.meta["categories"] if c in ("Player", "Enemy", "Ball")
    )
    tracker = result.tracker_for("pk0")
    assert tracker is not None and tracker.metrics.keypoints == 3
    for column in result.columns:
        identity = column.metrics.identity
        assert identity.kept.tracks == identity.moving.tracks + identity.static.tracks > 0
        assert all(p is None or 0 < p <= 1 for p in identity.purity)
    # The tracker's keypoints each follow one of Pong's single objects.
    assert tracker.metrics.identity.mean_purity == 1.0
    assert tracker.metrics.identity.kept.kept == 3
    assert "mean purity@2" in format_table(result) and "tracks: slot" in format_table(result)


def test_a_dataset_from_before_identities_is_linked_at_evaluation(dataset, runs, tmp_path):
    from permakey.data.store import SPLITS, open_split, write_dataset
    from permakey.evaluation.evaluate import evaluate_runs

    splits = {}
    for name in SPLITS:  # the same frames and objects, written without identities
        with open_split(dataset, name) as split:
            objects = [[(o.category, tuple(o.box)) for o in split.objects(i)] for i in range(len(split))]  # fmt: skip
            splits[name] = {"frames": split.frames[()], "episode": split.episode,
                            "step": split.step, "objects": objects}  # fmt: skip
            categories, game = split.categories, split.meta["game"]
    old = write_dataset(tmp_path / "old", splits, categories=categories, game=game)
    stored = evaluate_runs(runs[:1], dataset, max_frames=12)
    linked = evaluate_runs(runs[:1], old, max_frames=12)
    assert linked.identities == "linked at evaluation"
    assert linked.columns[0].metrics.f1 == stored.columns[0].metrics.f1
    assert linked.columns[0].metrics.identity.kept.tracks > 0
