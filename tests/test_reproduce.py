"""`permakey reproduce`: experiment definitions, their expansion, command lines and the runner's rules.

Nothing here trains: printed commands are parsed by the real parser, and the runner runs with
a fake executor that plays each step's effect on the folders.
"""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FakeSteps, write_status
from PIL import Image

from permakey.cli.main import build_parser, main
from permakey.cli.reproduce import command, print_commands
from permakey.evaluation.categories import CategorySelection
from permakey.evaluation.error_mass import PARTS
from permakey.evaluation.evaluate import write_result
from permakey.evaluation.results import (
    BarErrorMass,
    Column,
    ColumnMetrics,
    EvaluationResult,
    Motion,
    Noise,
    PartShare,
    peaks_name,
)
from permakey.experiments.definitions import EXPERIMENTS, KEYPOINTS, SCALES
from permakey.experiments.plan import plan_experiment
from permakey.experiments.runner import (
    Rates,
    benchmark_rates,
    in_subprocess,
    run_jobs,
    run_minutes,
    run_plan,
    step_jobs,
    train_step,
    write_curve_figure,
    write_table,
    write_tables,
)
from permakey.experiments.steps import Step
from permakey.experiments.summary import summary_table
from permakey.models.permakey import PermaKey, PermaKeyConfig
from permakey.training import get_method
from permakey.visualisation.colours import run_style

SCALE_NAMES = ("paper", "cpu")


def plans(scale, out="out"):
    return {name: plan_experiment(e, SCALES[scale], out) for name, e in EXPERIMENTS.items()}


def models(run):
    return run.options.get("model", {})


@pytest.mark.parametrize("scale", SCALE_NAMES)
def test_experiments_expand_into_the_papers_runs(scale):
    p = plans(scale)
    atari = p["atari"]
    assert len(atari.runs) == 12 and len(atari.groups) == 6 and len(atari.datasets) == 6
    assert {r.variant.game for r in atari.runs} == {
        "Frostbite", "SpaceInvaders", "Enduro", "BattleZone", "MsPacman", "Seaquest",
    }  # fmt: skip
    for run in atari.runs:
        assert run.options["num_keypoints"] == KEYPOINTS[run.variant.game]
    assert KEYPOINTS["Enduro"] == 10 and KEYPOINTS["Frostbite"] == 20
    for group in atari.groups:
        assert sorted(r.variant.method for r in group.runs) == ["permakey", "transporter"]

    noisy = p["noisy"]
    assert len(noisy.runs) == 12 and len(noisy.datasets) == 2 and len(noisy.groups) == 6
    kinds = {(r.variant.game, r.options["noise"]) for r in noisy.runs}
    assert kinds == {
        (g, n) for g in ("MsPacman", "MontezumaRevenge") for n in ("horizontal", "vertical", "both")
    }
    for group in noisy.groups:  # evaluated and drawn on the noise they were trained on
        assert group.evaluate.kwargs["noise"] == group.show.kwargs["noise"] == group.noise
        assert group.noise != "none"
        assert {r.options["noise"] for r in group.runs} == {group.noise}

    seeds = p["seeds"]
    assert [r.options["seed"] for r in seeds.runs] == [0, 1, 2, 3, 4]
    assert {(r.variant.game, r.variant.method, r.variant.num_keypoints) for r in seeds.runs} == {
        ("Enduro", "permakey", 10)
    }
    assert len(seeds.groups) == 1 and seeds.groups[0].show.kwargs["seeds"] is True
    assert "seeds" not in p["atari"].groups[0].show.kwargs

    keypoints = p["num-keypoints"]
    assert [r.options["num_keypoints"] for r in keypoints.runs] == [15, 20, 25]
    assert {r.variant.game for r in keypoints.runs} == {"Frostbite"}

    layers = p["layers"]
    assert [models(r)["lsp_layers"] for r in layers.runs] == [[0], [0, 1], [2, 3], [0, 1, 2, 3]]
    assert {r.options["num_keypoints"] for r in layers.runs} == {25}
    assert {r.variant.game for r in layers.runs} == {"SpaceInvaders"}

    kernels = [models(r) for r in p["kernel-size"].runs]
    assert [(m["encoder_kernels"][0], m["encoder_strides"][0]) for m in kernels] == [
        (4, 1), (6, 1), (8, 1), (4, 2), (8, 2),
    ]  # fmt: skip
    assert all(m["pointnet_kernels"] == [4, 3, 3, 3] for m in kernels)


def test_scales_set_data_sizes_presets_and_budgets():
    paper, cpu = plans("paper")["atari"], plans("cpu")["atari"]
    sizes = ("frames", "val_frames", "test_frames")
    assert [paper.datasets[0].collect.kwargs[f] for f in sizes] == [85000, 5000, 5000]
    assert [cpu.datasets[0].collect.kwargs[f] for f in sizes] == [5000, 500, 500]
    run = paper.runs[0].start.kwargs
    assert run["preset"] == "paper" and run["epochs"] == 100
    assert "time_budget" not in run and "max_steps" not in run
    steps = {r.variant.method: r.start.kwargs["max_steps"] for r in cpu.runs}
    assert steps == {"permakey": 360, "transporter": 170}
    run = cpu.runs[0].start.kwargs
    assert run["preset"] == "cpu" and "time_budget" not in run
    assert "precision" not in run


def test_device_and_precision_reach_every_training_run(tmp_path):
    plan = plan_experiment(EXPERIMENTS["seeds"], SCALES["cpu"], tmp_path, "cuda", "fp32")
    for run in plan.runs:
        assert run.runtime["device"] == "cuda"
        assert run.start.kwargs["precision"] == "fp32"
        # The precision is a setting of the run: `resume_run` refuses it.
        assert "precision" not in run.runtime
    assert all(g.evaluate.kwargs["device"] == "cuda" for g in plan.groups)
    assert all(g.show.kwargs["device"] == "cuda" for g in plan.groups)


@pytest.mark.parametrize("scale", SCALE_NAMES)
def test_model_overrides_build_valid_models(scale):
    """Every --model override validates on its preset and the model runs on an 84 x 84 frame."""
    seen = 0
    for plan in plans(scale).values():
        for run in plan.runs:
            method = get_method(run.variant.method)
            base = method.model_config(run.options["preset"]).to_dict()
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
    # One dataset per game and resize, even where experiments share it (SpaceInvaders: 4
    # experiments); noisy-mechanism adds MsPacman resized "nearest" and as the authors did.
    assert sorted((a.game, a.resize) for a in collects) == sorted(
        [(game, "area") for game in KEYPOINTS] + [("MsPacman", "nearest"), ("MsPacman", "authors")]
    )
    assert len({a.out for a in collects}) == len(collects)
    trains = [args for c, args in parsed if c == "train"]
    assert len(trains) == sum(len(e.variants) for e in EXPERIMENTS.values()) == 41 + 9 + 10
    assert {t.data for t in trains} == {a.out for a in collects}
    assert not list(tmp_path.iterdir())  # printing touches nothing


def test_printed_commands_are_the_commands_of_before(capsys):
    """The lines a cluster scheduler was given before the steps became library calls."""
    plan = plan_experiment(EXPERIMENTS["seeds"], SCALES["cpu"], "/o")
    print_commands([plan])
    lines = capsys.readouterr().out.splitlines()
    data = "/o/data/Enduro-seed0-5000-500-500-random-hold-4"
    runs = " ".join(f"/o/seeds/runs/seed{i}" for i in range(5))
    assert [line for line in lines if not line.startswith("#")] == [
        f"permakey collect Enduro --out {data} --frames 5000 --val-frames 500 --test-frames 500 "
        "--seed 0 --policy random-hold:4",
        *(
            f"permakey train permakey --out /o/seeds/runs/seed{i} --data {data} --preset cpu "
            f"--num-keypoints 10 --seed {i} --noise none --epochs 100 --max-steps 360 "
            "--in-memory --workers 0"
            for i in range(5)
        ),
        f"permakey evaluate {runs} --data {data} --noise none --out "
        "/o/seeds/evaluation_Enduro.json --weights last",
        f"permakey show {runs} --data {data} --out /o/seeds/figures/Enduro --noise none "
        "--frames 4 --episode-frames 48 --weights last --overwrite --seeds",
    ]
    layers = plan_experiment(EXPERIMENTS["layers"], SCALES["cpu"], "/o", "cuda", "bf16").runs[0]
    assert command(layers.start).endswith(
        " --noise none --model 'lsp_layers=[0]' --model patch_size=3 --precision bf16 "
        "--epochs 100 --max-steps 360 --in-memory --workers 0 --device cuda"
    )


def test_command_lines_render_flags_and_refuse_what_the_command_cannot_say():
    collect = Step("collect", {"game": "Pong", "out": "D", "objects": False, "keep_raw": True})
    assert command(collect.with_kwargs(progress=False)) == (
        "permakey collect Pong --out D --no-objects --raw --quiet"
    )
    resume = Step("resume", {"kind": "permakey", "run": "R", "in_memory": False, "progress": True})
    assert command(resume) == "permakey train permakey --resume R --no-in-memory --progress"
    with pytest.raises(ValueError, match="has no option for 'sticky'"):
        command(collect.with_kwargs(sticky=0.1))


def test_worker_runs_a_step_from_its_json(tmp_path):
    """`python -m permakey.experiments.worker STEP_JSON`: the subprocess of parallel workers."""
    pytest.importorskip("ale_py")
    out = tmp_path / "data"
    collect = Step(
        "collect",
        {"game": "Pong", "out": str(out), "frames": 20, "val_frames": 10, "test_frames": 10}
        | {"objects": False, "progress": False},
    )
    worker = [sys.executable, "-m", "permakey.experiments.worker"]
    done = subprocess.run([*worker, collect.to_json()], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "meta.json").read_text())["game"] == "Pong"
    # A `UserError` exits with status 2 and its message, as the command line does.
    resume = Step("resume", {"kind": "permakey", "run": str(tmp_path / "none")})
    failed = subprocess.run([*worker, resume.to_json()], capture_output=True, text=True)
    assert failed.returncode == 2 and "permakey: error: run folder" in failed.stderr


def test_steps_round_trip_through_json_and_name_their_kind():
    step = Step("show", {"runs": ["a", "b"], "data": "D", "out": "F", "overwrite": True})
    assert Step.from_json(step.to_json()) == step
    assert str(step) == "show(runs=['a', 'b'], data='D', out='F', overwrite=True)"
    with pytest.raises(ValueError, match="unknown step kind"):
        Step("draw", {})


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


def test_train_step_keeps_resumes_or_starts(tmp_path):
    run = tmp_path / "run"
    options, runtime = {"data": "D", "preset": "cpu"}, {"time_budget": 5}
    step = train_step("permakey", run, options, runtime)
    assert step == Step(
        "train",
        {"kind": "permakey", "out": str(run), "data": "D", "preset": "cpu", "time_budget": 5},
    )
    assert (
        command(step)
        == f"permakey train permakey --out {run} --data D --preset cpu --time-budget 5"
    )
    for status in ("finished", "early-stopped", "stopped", "diverged"):
        write_status(run, status)
        assert train_step("permakey", run, options, runtime) is None
    write_status(run, "interrupted", checkpoint=True)
    step = train_step("transporter", run, options, runtime)
    assert step == Step("resume", {"kind": "transporter", "run": str(run), "time_budget": 5})
    assert command(step) == f"permakey train transporter --resume {run} --time-budget 5"
    shutil.rmtree(run)
    run.mkdir()  # an empty folder is in the way: it is replaced
    step = train_step("permakey", run, options, runtime)
    assert step.kind == "train" and step.kwargs["overwrite"] is True
    assert command(step).endswith(" --overwrite")


def test_runner_collects_each_dataset_once_before_training(tmp_path):
    plan = plan_experiment(EXPERIMENTS["noisy"], SCALES["cpu"], tmp_path)
    fake = FakeSteps()
    assert run_plan(plan, workers=2, execute=fake) == 1  # evaluate "failed"
    kinds = [step.kind for step in fake.calls]
    assert kinds == ["collect"] * 2 + ["train"] * 12 + ["evaluate"] * 6 + ["show"] * 6
    assert sorted(s.kwargs["game"] for s in fake.calls[:2]) == ["MontezumaRevenge", "MsPacman"]
    # Parallel workers draw no progress bars into their logs.
    assert all(s.kwargs["progress"] is False for s in fake.calls[:14])
    fake.calls.clear()
    run_plan(plan, workers=2, execute=fake)
    assert [s.kind for s in fake.calls] == ["evaluate"] * 6  # shows are newer than the runs


def test_one_worker_runs_steps_in_process_without_the_command_line(tmp_path, monkeypatch, capsys):
    def no_cli(argv=None):
        raise AssertionError("the runner called the command line")

    monkeypatch.setattr("permakey.cli.main.main", no_cli)
    calls = []

    def run_step(step):
        calls.append(step)
        return FakeSteps()(step, None)

    monkeypatch.setattr("permakey.experiments.runner.run_step", run_step)
    plan = plan_experiment(EXPERIMENTS["seeds"], SCALES["cpu"], tmp_path)
    assert run_plan(plan, workers=1) == 1  # the fake evaluation "failed"
    assert [s.kind for s in calls] == ["collect"] + ["train"] * 5 + ["evaluate", "show"]
    assert "progress" not in calls[0].kwargs  # one worker: progress bars as the defaults say
    said = capsys.readouterr().out
    assert "\n$ collect(game='Enduro', out=" in said  # the call, in Python's words


def test_stage_stops_starting_jobs_after_an_interruption():
    started = []

    def execute(step, log):
        started.append(step.kwargs["game"])
        return 130 if step.kwargs["game"] == "b" else 0

    jobs = [(name, Step("collect", {"game": name}), Path("log")) for name in "abcde"]
    assert run_jobs(step_jobs(jobs, execute), 1) == {"a": 0, "b": 130}
    assert started == ["a", "b"]


def test_subprocess_workers_share_the_threads(tmp_path, monkeypatch):
    seen = {}

    def call(argv, stdout, stderr, env, pass_fds):
        seen.update(argv=argv, threads=env["OMP_NUM_THREADS"])
        return 0

    monkeypatch.setattr("permakey.experiments.runner.subprocess.call", call)
    step = Step("collect", {"game": "Pong", "out": "D"})
    assert in_subprocess(3, command)(step, tmp_path / "logs" / "x.log") == 0
    assert seen["argv"][1:3] == ["-m", "permakey.experiments.worker"] and seen["threads"] == "3"
    assert Step.from_json(seen["argv"][3]) == step
    assert "$ permakey collect Pong --out D" in (tmp_path / "logs" / "x.log").read_text()


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
    bench = {
        "quick": False, "permakey_train_img_s_fp32": 400.0, "transporter_train_pairs_s": 900.0,
        "permakey_cpu_track_preset_train_img_s_fp32": 700.0,
    }  # fmt: skip
    (tmp_path / "full.json").write_text(json.dumps(bench))
    rates = benchmark_rates(tmp_path)
    assert rates.rate("permakey", "paper") == 400.0 and rates.rate("transporter", "paper") == 900.0
    assert rates.rate("permakey", "cpu-track") == 700.0  # the demo's preset
    assert rates.rate("transporter", "cpu") == 900.0  # a preset without a rate: the paper's
    assert "full.json" in rates.source


def test_print_commands_names_stages(tmp_path, capsys):
    print_commands([plan_experiment(EXPERIMENTS["layers"], SCALES["cpu"], tmp_path)])
    out = capsys.readouterr().out
    assert out.count("# stage") == 4 and "Figure 6" in out


# --- the Noisy Atari curve and mechanism (issue 17) ---------------------------------------


@pytest.mark.parametrize("scale", ["paper", "cpu", "tiny"])
def test_noisy_curve_trains_once_and_evaluates_each_budget_on_noisy_and_clean_frames(scale):
    plan = plan_experiment(EXPERIMENTS["noisy-curve"], SCALES[scale], "/o")
    assert {r.variant.game for r in plan.runs} == {"MsPacman", "MontezumaRevenge", "SpaceInvaders"}
    assert len(plan.runs) == 9 and len(plan.datasets) == 3
    # Multiples of the cpu scale's budgets (the paper scale has none; tiny has its own).
    unit = SCALES[scale if scale == "tiny" else "cpu"].max_steps
    expected = {
        "permakey-cpu-track": [unit["permakey"] * m for m in (1, 2, 4, 8)],
        "permakey-paper": [unit["permakey"] * m for m in (1, 2, 4)],
        "transporter": [unit["transporter"] * m for m in (1, 2, 4, 8)],
    }
    for run in plan.runs:
        kind = run.path.name
        steps = expected[kind]
        assert run.runtime["snapshot_steps"] == steps and run.runtime["max_steps"] == steps[-1]
        assert run.options["noise"] == "both"
        assert run.options["patience"] == SCALES[scale].epochs  # no early stop before the end
        preset = {"permakey-cpu-track": "cpu-track", "permakey-paper": "paper"}
        assert run.options["preset"] == preset.get(kind, SCALES[scale].preset)
        evaluated = {
            (g.weights, g.noise) for g in plan.groups for r in g.runs if r.path == run.path
        }
        assert evaluated == {(f"step-{s}", n) for s in steps for n in ("both", "none")}
    for group in plan.groups:
        assert group.evaluate.kwargs["weights"] == group.weights
        assert group.evaluate.kwargs["noise"] == group.noise
        assert group.show is None  # curve points are tables, not figures
        assert len({r.variant.game for r in group.runs}) == 1
        assert ("clean" in group.name) == (group.noise == "none")
    # Each run with a curve is evaluated alone, so that its curve can be read while the
    # others train: PermaKey's two presets at 2x have a group each.
    step = 2 * unit["permakey"]
    at_step = [
        g for g in plan.groups
        if g.name.startswith(f"MsPacman-both-step{step}-") and g.runs[0].variant.method == "permakey"
    ]  # fmt: skip
    assert [g.name for g in at_step] == [
        f"MsPacman-both-step{step}-permakey-cpu-track", f"MsPacman-both-step{step}-permakey-paper"
    ]  # fmt: skip
    assert all(len(g.runs) == 1 for g in plan.groups)
    assert len(plan.groups) == len({g.evaluation for g in plan.groups})


def test_curve_runs_are_estimated_at_their_own_presets_and_budgets():
    plan = plan_experiment(EXPERIMENTS["noisy-curve"], SCALES["cpu"], "/o")
    rates = Rates(
        {"permakey": {"paper": 8.0, "cpu-track": 32.0}, "transporter": {"paper": 64.0}}, ""
    )
    minutes = {r.path.name: run_minutes(r, plan, rates) for r in plan.runs[:3]}
    overhead = SCALES["cpu"].overhead_min
    assert minutes == pytest.approx(
        {
            "permakey-cpu-track": 2880 * 32 / 32.0 / 60 + overhead,
            "permakey-paper": 1440 * 32 / 8.0 / 60 + overhead,
            "transporter": 1360 * 64 / 64.0 / 60 + overhead,
        }
    )


def test_noisy_mechanism_changes_one_detail_per_run(tmp_path):
    plan = plan_experiment(EXPERIMENTS["noisy-mechanism"], SCALES["cpu"], tmp_path)
    runs = {r.variant.name: r for r in plan.runs}
    assert all(
        r.variant.game == "MsPacman" and r.options["preset"] == "cpu-track" for r in plan.runs
    )
    assert all(
        r.runtime["max_steps"] == 360 and "snapshot_steps" not in r.runtime for r in plan.runs
    )
    base = runs["base"].options
    changed = {
        name: {k: v for k, v in r.options.items() if base.get(k) != v} for name, r in runs.items()
    }
    assert {name: set(c) for name, c in changed.items()} == {
        "base": set(), "base-seed1": {"seed"}, "resize-nearest": {"data"},
        "resize-authors": {"data"}, "before-resize": {"noise_before_resize"},
        "width3": {"noise_width"}, "width8": {"noise_width"}, "colour-green": {"noise_colour"},
        "random-colour": {"noise_random_colour"}, "share0.5": {"noise_share"},
    }  # fmt: skip
    resizes = {d.collect.kwargs.get("resize", "area") for d in plan.datasets}
    assert resizes == {"area", "nearest", "authors"} and len(plan.datasets) == 3
    assert command(plan.datasets[1].collect).endswith(" --resize nearest")
    groups = {g.name: g for g in plan.groups}
    # Runs whose bars look the same are evaluated together; the share changes training only.
    assert [r.variant.name for r in groups["MsPacman-both"].runs] == [
        "base",
        "base-seed1",
        "share0.5",
    ]
    assert groups["MsPacman-both-width3"].evaluate.kwargs["noise_width"] == 3
    assert groups["MsPacman-both-colour0.255.0"].evaluate.kwargs["noise_colour"] == [0, 255, 0]
    assert groups["MsPacman-both-random-colour"].evaluate.kwargs["noise_random_colour"] is True
    assert groups["MsPacman-both-before-resize"].evaluate.kwargs["noise_before_resize"] is True
    assert "noise_width" not in groups["MsPacman-both"].evaluate.kwargs
    clean = groups["MsPacman-clean"]
    assert clean.noise == "none" and len(clean.runs) == 8  # every run on the area dataset
    assert groups["MsPacman-nearest-clean"].runs[0].variant.name == "resize-nearest"
    # Figures of every group on the bars its runs trained on, painted as they were evaluated.
    shown = {g.name: g for g in plan.groups if g.show is not None}
    assert sorted(shown) == [
        "MsPacman-authors-both", "MsPacman-both", "MsPacman-both-before-resize",
        "MsPacman-both-colour0.255.0", "MsPacman-both-random-colour", "MsPacman-both-width3",
        "MsPacman-both-width8", "MsPacman-nearest-both",
    ]  # fmt: skip
    for group in shown.values():
        bar_kwargs = {k: v for k, v in group.evaluate.kwargs.items() if k.startswith("noise")}
        assert {k: group.show.kwargs[k] for k in bar_kwargs} == bar_kwargs
    assert " --noise both --noise-width 3 " in command(shown["MsPacman-both-width3"].show)
    random_colour = command(shown["MsPacman-both-random-colour"].show)
    assert " --noise both --noise-random-colour " in random_colour
    fake = FakeSteps()
    assert run_plan(plan, workers=1, execute=fake) == 1  # the fake evaluations "fail"
    kinds = [s.kind for s in fake.calls]
    assert kinds == ["collect"] * 3 + ["train"] * 10 + ["evaluate"] * 11 + ["show"] * 8


def _scores(on_bars: float | None, f1: float, mass: float | None = None) -> ColumnMetrics:
    per_radius = {0: f1, 2: f1}
    error_mass = None
    if mass is not None:  # the interior holds all of it: a made-up but valid breakdown
        share = {p: mass if p == "interior" else 0.0 for p in PARTS}
        parts = {p: PartShare(0.0, v, (v, v)) for p, v in share.items()}
        error_mass = BarErrorMass(2, (0, 1), mass, (mass, mass), 0.2, "object boxes", parts)
    return ColumnMetrics(
        recall=per_radius, precision=per_radius, f1=per_radius, recall_bound=1.0,
        small_recall=None, per_category={},
        distractor_share=None if on_bars is None else {0: on_bars, 2: on_bars},
        distractor_chance=None if on_bars is None else {0: 0.2, 2: 0.2},
        border_share=0.0, border_chance=0.09, motion=Motion(1.0, 1.0), keypoints=7,
        bar_error_mass=error_mass,
    )  # fmt: skip


def _write_curve_results(groups) -> None:
    """Made-up evaluations of curve groups whose scores say where they come from."""
    for group in groups:
        step = int(group.weights.split("-")[1])
        columns = []
        for run in group.runs:
            noisy = group.noise != "none"
            # Scores that say where they come from: the step, the run, noisy or clean.
            value = step / 10_000 + (0.5 if run.path.name == "permakey-paper" else 0)
            mass = 0.3 if noisy and run.variant.method == "permakey" else None
            scores = _scores(value if noisy else None, value + noisy, mass)
            columns.append(Column(run.path.name, "model", scores))
            if run.variant.method == "permakey":
                columns.append(
                    Column(
                        peaks_name(run.path.name),
                        "control",
                        _scores(0.9 if noisy else None, 0.0),
                        of=run.path.name,
                    )
                )
        result = EvaluationResult(
            frames=5, frame_size=(84, 84), radii=(0, 2), headline_radius=2, ground_truth=True,
            categories=CategorySelection(("Player",), (), (), "test"), noise=Noise(),
            control_seed=0, columns=tuple(columns),
        )  # fmt: skip
        write_result(group.evaluation, result)


def test_summary_table_gathers_each_runs_noisy_and_clean_scores(tmp_path):
    plan = plan_experiment(EXPERIMENTS["noisy-curve"], SCALES["cpu"], tmp_path)
    games = [g for g in plan.groups if g.data.game == "SpaceInvaders"]
    assert summary_table(plan, "SpaceInvaders") is None  # nothing evaluated yet
    _write_curve_results(games)
    table = summary_table(plan, "SpaceInvaders").splitlines()
    assert table[0].startswith(
        "| run | trained | keypoints on bars@2 | error mass on bars | its parts (crossing, ends,"
    )
    assert len(table) == 2 + 4 + 3 + 4  # header; cpu-track, paper, transporter points
    assert (
        table[2]
        == "| SpaceInvaders/permakey-cpu-track | 360 (1x) | 0.036 | 0.300 | 0.000 / 0.000 / 0.000 / "
        "0.000 / 0.300 | 0.200 | 0.900 | 1.036 | 0.036 |"
    )
    assert table[9] == (
        "| SpaceInvaders/transporter | 170 (1x) | 0.017 | n/a | n/a | 0.200 | n/a | 1.017 | 0.017 |"
    )
    assert "| SpaceInvaders/permakey-paper | 1440 (4x) | 0.644 |" in "\n".join(table)
    for group in plan.groups:  # the other games, so that the experiment's tables are complete
        if not group.evaluation.exists():
            write_result(
                group.evaluation,
                EvaluationResult.from_json(json.loads(games[0].evaluation.read_text())),
            )
        write_table(group)
    tables = write_tables(plan).read_text()
    assert "## SpaceInvaders: every run" in tables and "weights step-360" in tables


def test_a_curve_is_tabled_and_drawn_while_other_runs_still_train(tmp_path):
    plan = plan_experiment(EXPERIMENTS["noisy-curve"], SCALES["cpu"], tmp_path)
    assert write_curve_figure(plan) is None  # nothing evaluated: nothing drawn
    done = [
        g for g in plan.groups
        if g.data.game == "SpaceInvaders" and g.runs[0].path.name == "permakey-cpu-track"
    ]  # fmt: skip
    _write_curve_results(done)
    # `reproduce --tables-only` tables what is evaluated and trains nothing.
    assert main(["reproduce", "noisy-curve", "--out", str(tmp_path), "--tables-only"]) == 0
    assert not any(run.path.exists() for run in plan.runs)
    table = summary_table(plan, "SpaceInvaders").splitlines()
    assert len(table) == 2 + 4 and all("permakey-cpu-track" in row for row in table[2:])
    assert summary_table(plan, "MsPacman") is None
    tables = plan.tables.read_text()
    assert f"Incomplete: {len(plan.groups) - 8} of {len(plan.groups)} groups" in tables
    assert "## SpaceInvaders-both-step360-permakey-cpu-track" in tables
    assert "## SpaceInvaders-both-step360-transporter" not in tables
    figure = Image.open(plan.folder / "figures" / "curve.png")
    assert figure.size[0] > 3 * 200 and figure.size[1] > 4 * 150  # 3 games x 4 measures
    # The one evaluated run's line is drawn in its colour; the runs not evaluated are not.
    pixels = np.asarray(figure.convert("RGB"))
    colours = {k: run_style(i)[0] for i, k in enumerate(["cpu-track", "paper", "transporter"])}
    drawn = {k: bool(np.all(pixels == c, axis=-1).sum() > 50) for k, c in colours.items()}
    assert drawn == {"cpu-track": True, "paper": False, "transporter": False}
