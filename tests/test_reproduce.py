"""`permakey reproduce`: experiment definitions, their expansion, command lines and the runner's rules.

Nothing here trains: commands are parsed by the real parser, and the runner runs with a fake
executor that plays each command's effect on the folders.
"""

import json
import shlex
from pathlib import Path

import pytest
import torch

from permakey.cli.main import build_parser, main
from permakey.cli.train import _model_overrides
from permakey.experiments.definitions import EXPERIMENTS, KEYPOINTS, SCALES
from permakey.experiments.plan import plan_experiment
from permakey.experiments.runner import (
    _stage,
    benchmark_rates,
    in_subprocess,
    print_commands,
    run_plan,
    train_argv,
)
from permakey.models.permakey import PermaKey, PermaKeyConfig
from permakey.training import get_method

SCALE_NAMES = ("paper", "cpu")


def plans(scale, out="out"):
    return {name: plan_experiment(e, SCALES[scale], out) for name, e in EXPERIMENTS.items()}


def option(argv, name):
    """The value after ``name`` in an argument list (the last one if repeated)."""
    argv = list(argv)
    return [argv[i + 1] for i, a in enumerate(argv) if a == name][-1]


def models(run):
    return dict(
        _model_overrides(
            [a for i, a in enumerate(run.new_argv) if run.new_argv[i - 1] == "--model"]
        )
    )


@pytest.mark.parametrize("scale", SCALE_NAMES)
def test_experiments_expand_into_the_papers_runs(scale):
    p = plans(scale)
    atari = p["atari"]
    assert len(atari.runs) == 12 and len(atari.groups) == 6 and len(atari.datasets) == 6
    assert {r.variant.game for r in atari.runs} == {
        "Frostbite", "SpaceInvaders", "Enduro", "BattleZone", "MsPacman", "Seaquest",
    }  # fmt: skip
    for run in atari.runs:
        assert int(option(run.new_argv, "--num-keypoints")) == KEYPOINTS[run.variant.game]
    assert KEYPOINTS["Enduro"] == 10 and KEYPOINTS["Frostbite"] == 20
    for group in atari.groups:
        assert sorted(r.variant.method for r in group.runs) == ["permakey", "transporter"]

    noisy = p["noisy"]
    assert len(noisy.runs) == 12 and len(noisy.datasets) == 2 and len(noisy.groups) == 6
    kinds = {(r.variant.game, option(r.new_argv, "--noise")) for r in noisy.runs}
    assert kinds == {
        (g, n) for g in ("MsPacman", "MontezumaRevenge") for n in ("horizontal", "vertical", "both")
    }
    for group in noisy.groups:  # evaluated and drawn on the noise they were trained on
        assert option(group.evaluate_argv, "--noise") == group.noise != "none"
        assert {option(r.new_argv, "--noise") for r in group.runs} == {group.noise}

    seeds = p["seeds"]
    assert [int(option(r.new_argv, "--seed")) for r in seeds.runs] == [0, 1, 2, 3, 4]
    assert {(r.variant.game, r.variant.method, r.variant.num_keypoints) for r in seeds.runs} == {
        ("Enduro", "permakey", 10)
    }
    assert len(seeds.groups) == 1 and "--seeds" in seeds.groups[0].show_argv
    assert "--seeds" not in p["atari"].groups[0].show_argv

    keypoints = p["num-keypoints"]
    assert [int(option(r.new_argv, "--num-keypoints")) for r in keypoints.runs] == [15, 20, 25]
    assert {r.variant.game for r in keypoints.runs} == {"Frostbite"}

    layers = p["layers"]
    assert [models(r)["lsp_layers"] for r in layers.runs] == [[0], [0, 1], [2, 3], [0, 1, 2, 3]]
    assert {option(r.new_argv, "--num-keypoints") for r in layers.runs} == {"25"}
    assert {r.variant.game for r in layers.runs} == {"SpaceInvaders"}

    kernels = [models(r) for r in p["kernel-size"].runs]
    assert [(m["encoder_kernels"][0], m["encoder_strides"][0]) for m in kernels] == [
        (4, 1), (6, 1), (8, 1), (4, 2), (8, 2),
    ]  # fmt: skip
    assert all(m["pointnet_kernels"] == [4, 3, 3, 3] for m in kernels)


def test_scales_set_data_sizes_presets_and_budgets():
    paper, cpu = plans("paper")["atari"], plans("cpu")["atari"]
    assert [option(paper.datasets[0].argv, f) for f in ("--frames", "--val-frames", "--test-frames")] == [
        "85000", "5000", "5000",
    ]  # fmt: skip
    assert [option(cpu.datasets[0].argv, f) for f in ("--frames", "--val-frames", "--test-frames")] == [
        "5000", "500", "500",
    ]  # fmt: skip
    run = paper.runs[0].start_command
    assert option(run, "--preset") == "paper" and option(run, "--epochs") == "100"
    assert "--time-budget" not in run and "--max-steps" not in run
    steps = {r.variant.method: option(r.start_command, "--max-steps") for r in cpu.runs}
    assert steps == {"permakey": "360", "transporter": "170"}
    run = cpu.runs[0].start_command
    assert option(run, "--preset") == "cpu" and "--time-budget" not in run
    assert "--precision" not in run


def test_device_and_precision_reach_every_training_run(tmp_path):
    plan = plan_experiment(EXPERIMENTS["seeds"], SCALES["cpu"], tmp_path, "cuda", "fp32")
    for run in plan.runs:
        assert option(run.runtime, "--device") == "cuda"
        assert option(run.start_command, "--precision") == "fp32"
        # The precision is a setting of the run: `train --resume` refuses it.
        assert "--precision" not in run.runtime
    assert all(option(g.evaluate_argv, "--device") == "cuda" for g in plan.groups)


@pytest.mark.parametrize("scale", SCALE_NAMES)
def test_model_overrides_build_valid_models(scale):
    """Every --model override validates on its preset and the model runs on an 84 x 84 frame."""
    seen = 0
    for plan in plans(scale).values():
        for run in plan.runs:
            method = get_method(run.variant.method)
            base = method.model_config(option(run.new_argv, "--preset")).to_dict()
            overrides = {**models(run), "num_keypoints": run.variant.num_keypoints}
            config = method.model_config_class.from_dict({**base, **overrides})
            if models(run):
                seen += 1
                assert isinstance(config, PermaKeyConfig)
                if scale == "cpu":  # the same architectures at both scales: build them once
                    torch.manual_seed(0)
                    out = PermaKey(config).eval()(torch.rand(1, 3, 84, 84))
                    assert out.centres.shape == (1, 25, 2)
    assert seen == 9


def parse_printed(text):
    """(command, argparse namespace) of every non-comment line."""
    parser = build_parser()
    parsed = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        assert words[0] == "permakey", line
        parsed.append((words[1], parser.parse_args(words[1:])))
    return parsed


@pytest.mark.parametrize("scale", SCALE_NAMES)
def test_printed_commands_parse_in_dependency_order_and_collect_once(scale, tmp_path, capsys):
    assert (
        main(["reproduce", "all", "--scale", scale, "--out", str(tmp_path), "--print-commands"])
        == 0
    )
    parsed = parse_printed(capsys.readouterr().out)
    commands = [c for c, _ in parsed]
    order = ["collect", "train", "evaluate", "show"]
    assert commands == sorted(commands, key=order.index)  # every collect before any train...
    collects = [args for c, args in parsed if c == "collect"]
    # One dataset per game, even where experiments share it (SpaceInvaders: 3 experiments).
    assert sorted(a.game for a in collects) == sorted(KEYPOINTS)
    assert len({a.out for a in collects}) == len(collects)
    trains = [args for c, args in parsed if c == "train"]
    assert len(trains) == sum(len(e.variants) for e in EXPERIMENTS.values()) == 41
    assert {t.data for t in trains} == {a.out for a in collects}
    assert not list(tmp_path.iterdir())  # printing touches nothing


def test_runs_of_one_game_share_one_dataset():
    plan = plans("cpu")["atari"]
    by_game = {}
    for run in plan.runs:
        by_game.setdefault(run.variant.game, set()).add(run.data.path)
    assert all(len(paths) == 1 for paths in by_game.values())
    assert len({d.path for d in plan.datasets}) == len(by_game)
    # Experiments written to the same folder share it too.
    shared = {d.path for d in plans("cpu")["layers"].datasets}
    assert shared <= {d.path for d in plan.datasets}


def write_status(run: Path, status, checkpoint=False):
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({"status": status, "step": 3}))
    if checkpoint:
        (run / "state.pt").write_bytes(b"")


def test_train_argv_keeps_resumes_or_starts(tmp_path):
    run = tmp_path / "run"
    options, runtime = ["--data", "D", "--preset", "cpu"], ["--time-budget", 5]
    assert train_argv("permakey", run, options, runtime) == [
        "train", "permakey", "--out", str(run), "--data", "D", "--preset", "cpu", "--time-budget", "5",
    ]  # fmt: skip
    for status in ("finished", "early-stopped", "stopped", "diverged"):
        write_status(run, status)
        assert train_argv("permakey", run, options, runtime) is None
    write_status(run, "interrupted", checkpoint=True)
    assert train_argv("transporter", run, options, runtime) == [
        "train", "transporter", "--resume", str(run), "--time-budget", "5",
    ]  # fmt: skip
    (run / "state.pt").unlink()  # interrupted before its first checkpoint: start again
    assert train_argv("permakey", run, options, runtime)[-1] == "--overwrite"


class FakeCommands:
    """Plays each command's effect on the folders instead of running it."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, log):
        self.calls.append(list(argv))
        args = build_parser().parse_args([str(a) for a in argv])
        if args.command == "collect":
            Path(args.out).mkdir(parents=True)
            (Path(args.out) / "meta.json").write_text("{}")
        elif args.command == "train":
            write_status(Path(args.out or args.resume), "stopped", checkpoint=True)
        elif args.command == "show":
            args.out.mkdir(parents=True)
        elif args.command == "evaluate":
            return 1  # no real evaluation here
        return 0


def test_runner_collects_each_dataset_once_before_training(tmp_path):
    plan = plan_experiment(EXPERIMENTS["noisy"], SCALES["cpu"], tmp_path)
    fake = FakeCommands()
    assert run_plan(plan, workers=2, execute=fake) == 1  # evaluate "failed"
    commands = [c[0] for c in fake.calls]
    assert commands == ["collect"] * 2 + ["train"] * 12 + ["evaluate"] * 6 + ["show"] * 6
    assert sorted(c[1] for c in fake.calls[:2]) == ["MontezumaRevenge", "MsPacman"]
    fake.calls.clear()
    run_plan(plan, workers=2, execute=fake)
    assert [c[0] for c in fake.calls] == ["evaluate"] * 6  # shows are newer than the runs


def test_stage_stops_starting_jobs_after_an_interruption():
    started = []

    def execute(argv, log):
        started.append(argv[0])
        return 130 if argv[0] == "b" else 0

    jobs = [(name, [name], Path("log")) for name in "abcde"]
    assert _stage(jobs, 1, execute) == {"a": 0, "b": 130}
    assert started == ["a", "b"]


def test_subprocess_workers_share_the_threads(tmp_path, monkeypatch):
    seen = {}

    def call(command, stdout, stderr, env):
        seen.update(command=command, threads=env["OMP_NUM_THREADS"])
        return 0

    monkeypatch.setattr("permakey.experiments.runner.subprocess.call", call)
    assert in_subprocess(3)(["datasets", "D"], tmp_path / "logs" / "x.log") == 0
    assert seen["command"][-3:] == ["permakey", "datasets", "D"] and seen["threads"] == "3"
    assert "$ permakey datasets D" in (tmp_path / "logs" / "x.log").read_text()


def test_paper_scale_without_gpu_asks_for_yes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["reproduce", "seeds", "--scale", "paper", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs a GPU" in err and "--yes" in err and " h " in err and "images/s" in err
    assert not list(tmp_path.iterdir())
    assert main([*argv, "--dry-run"]) == 0
    assert "5 runs (5 to train)" in capsys.readouterr().out


def test_estimates_read_a_full_benchmark(tmp_path):
    (tmp_path / "quick.json").write_text(
        json.dumps({"quick": True, "permakey_train_img_s_fp32": 1})
    )
    assert benchmark_rates(tmp_path).source.startswith("measured on this project")
    bench = {"quick": False, "permakey_train_img_s_fp32": 400.0, "transporter_train_pairs_s": 900.0}
    (tmp_path / "full.json").write_text(json.dumps(bench))
    rates = benchmark_rates(tmp_path)
    assert rates.permakey_img_s["paper"] == 400.0 and rates.transporter_pairs_s == 900.0
    assert "full.json" in rates.source


def test_print_commands_names_stages(tmp_path, capsys):
    print_commands([plan_experiment(EXPERIMENTS["layers"], SCALES["cpu"], tmp_path)])
    out = capsys.readouterr().out
    assert out.count("# stage") == 4 and "Figure 6" in out
