"""`permakey demo` end to end at a tiny budget: real collection, training, evaluation, figures."""

import json
import re

import pytest
from PIL import Image

from permakey.cli.main import main
from permakey.evaluation.evaluate import read_result

pytestmark = pytest.mark.slow

TINY = [
    "--frames",
    "300",
    "--eval-frames",
    "60",
    "--permakey-steps",
    "2",
    "--transporter-steps",
    "2",
]


def no_command_line(argv=None):
    raise AssertionError("a step ran through the command line, not the library")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("ocatari")
    out = tmp_path_factory.mktemp("demo") / "out"
    with pytest.MonkeyPatch.context() as patch:  # every step is a library call, in process
        patch.setattr("permakey.cli.main.main", no_command_line)
        assert main(["demo", "--out", str(out), "--noise", "both", *TINY]) == 0
    return out


def test_demo_writes_report_metrics_and_figures(demo):
    for label in ("clean", "noisy"):
        result = read_result(demo / f"evaluation_{label}.json")
        assert [c.name for c in result.models] == ["permakey", "transporter"]
        assert result.frames == 60 and result.ground_truth
    assert result.noise.kind == "both"
    for name in ("figure2_clean.png", "figure2_noisy.png", "figure4_windows.png"):
        with Image.open(demo / "figures" / name) as image:
            assert image.format == "PNG" and min(image.size) > 84
    with Image.open(demo / "figures" / "episode_clean.gif") as gif:
        assert gif.n_frames > 1
    html = (demo / "report.html").read_text()
    assert "Metrics on clean test frames" in html and "Metrics on Noisy Atari (both)" in html
    assert "<table" in html and "F1@2" in html
    assert len(re.findall(r'src="data:image/(png|gif);base64,', html)) >= 5
    assert re.search(r"permakey: F1@2 \d\.\d\d against \d\.\d\d for its static template", html)
    assert re.search(r"permakey keeps \d+ of \d+ object tracks .*: moving objects \d+ of", html)
    assert "http://" not in html and "https://" not in html


def numbers(path) -> dict:
    """An evaluation JSON's numbers: every column's metrics, seed stability, the test frames."""
    result = json.loads(path.read_text())
    return {
        "columns": [(c["name"], c["kind"], c["metrics"]) for c in result["columns"]],
        "seed_stability": result["seed_stability"],
        "frames": (result["frames"], result["dataset"]["identity"]["sha256"]),
    }


def test_two_demos_with_the_same_options_give_the_same_numbers(demo, tmp_path, capsys):
    other = tmp_path / "again"
    assert main(["demo", "--out", str(other), "--noise", "both", *TINY]) == 0
    said = capsys.readouterr().out
    assert re.search(r"demo: about \d+ min on this machine from scratch \(training speeds: ", said)
    for label in ("clean", "noisy"):
        first, second = (numbers(d / f"evaluation_{label}.json") for d in (demo, other))
        assert first["columns"] and first == second
    for method, steps in (("permakey", 2), ("transporter", 2)):
        run = json.loads((other / "runs" / method / "run.json").read_text())
        assert run["step"] == steps and run["status"] == "stopped"
        assert run["train"]["precision"] == "fp32"  # whatever the CPU multiplies natively


def test_demo_rerun_keeps_complete_steps(demo, capsys):
    steps = {
        m: json.loads((demo / "runs" / m / "run.json").read_text())["step"]
        for m in ("permakey", "transporter")
    }
    assert main(["demo", "--out", str(demo), "--noise", "both", *TINY]) == 0
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert "keeping the complete run" in said and "nothing to do" in said
    for method, step in steps.items():
        assert json.loads((demo / "runs" / method / "run.json").read_text())["step"] == step


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), *TINY]) == 2
    assert "is not a demo folder" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
