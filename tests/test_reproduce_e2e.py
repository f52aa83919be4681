"""`permakey reproduce` end to end at the hidden tiny scale (300 Frostbite frames, 2 steps).

The `num-keypoints` experiment runs for real: collect, three PermaKey runs, one evaluation and
its figures. Then: a second invocation trains nothing; an interrupted run is resumed.
"""

import json
from pathlib import Path

import pytest

from permakey.cli.main import main
from permakey.evaluation.evaluate import format_table, read_result
from permakey.experiments.definitions import EXPERIMENTS, SCALES
from permakey.experiments.plan import plan_experiment
from permakey.experiments.steps import run_step

pytestmark = pytest.mark.slow

# An explicit precision: a setting of each run that resuming must keep, not repeat.
ARGV = ["reproduce", "num-keypoints", "--scale", "tiny", "--precision", "fp32"]


def info(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def no_command_line(argv=None):
    raise AssertionError("a step ran through the command line, not the library")


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    pytest.importorskip("ocatari")
    out = tmp_path_factory.mktemp("reproduce")
    with pytest.MonkeyPatch.context() as patch:  # every step is a library call, in process
        patch.setattr("permakey.cli.main.main", no_command_line)
        assert main([*ARGV, "--out", str(out)]) == 0
    return plan_experiment(EXPERIMENTS["num-keypoints"], SCALES["tiny"], out, precision="fp32")


def test_experiment_ends_with_table_json_and_figures(done):
    assert [d.name for d in (done.folder.parent / "data").iterdir()] == [done.datasets[0].path.name]
    for run, k in zip(done.runs, (15, 20, 25), strict=True):
        run_info = info(run.path)
        assert run_info["status"] == "stopped" and run_info["step"] == 2
        assert run_info["model"]["num_keypoints"] == k and run_info["train"]["precision"] == "fp32"
    (group,) = done.groups
    result = read_result(group.evaluation)
    assert [c.name for c in result.models] == ["K15", "K20", "K25"]
    assert result.frames == 60 and result.ground_truth
    assert group.table.read_text() == format_table(result) + "\n"
    assert "| F1@2" in group.table.read_text()
    assert list(group.figures.glob("*.png"))
    tables = done.tables.read_text()
    assert "## Frostbite" in tables and "Figure 5" in tables


def test_second_invocation_keeps_everything(done, capsys):
    before = {
        r.path: (info(r.path)["step"], (r.path / "run.json").stat().st_mtime) for r in done.runs
    }
    evaluated = done.groups[0].evaluation.stat().st_mtime
    assert main([*ARGV, "--out", str(done.folder.parent)]) == 0
    said = capsys.readouterr().out
    assert "$ permakey train" not in said and "$ permakey collect" not in said
    assert said.count("stopped, kept") == 3 and "up to date, kept" in said
    after = {
        r.path: (info(r.path)["step"], (r.path / "run.json").stat().st_mtime) for r in done.runs
    }
    assert after == before
    assert done.groups[0].evaluation.stat().st_mtime == evaluated


def test_interrupted_run_is_resumed(done, capsys):
    run = done.runs[1]
    # A run stopped after one step, then marked as a Ctrl-C would leave it.
    start = run.start.with_kwargs(max_steps=1, overwrite=True, progress=False)
    assert run_step(start) == 0
    assert info(run.path)["step"] == 1
    (run.path / "run.json").write_text(json.dumps({**info(run.path), "status": "interrupted"}))
    capsys.readouterr()
    assert main([*ARGV, "--out", str(done.folder.parent), "--dry-run"]) == 0
    assert f"run {run.path}: to resume" in capsys.readouterr().out
    assert main([*ARGV, "--out", str(done.folder.parent)]) == 0
    said = capsys.readouterr().out
    assert f"$ permakey train permakey --resume {run.path}" in said
    assert said.count("$ permakey train") == 1  # the other two are kept
    assert info(run.path)["step"] == 2 and info(run.path)["status"] == "stopped"
    assert "$ permakey evaluate" in said  # the resumed run is evaluated again
