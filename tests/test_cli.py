"""The `permakey` command's front door: every subcommand explains itself."""

import numpy as np
import pytest

from permakey.cli.main import SUBCOMMANDS, build_parser, main


def _subcommand_names():
    return [*SUBCOMMANDS, "train permakey", "train transporter"]


@pytest.mark.parametrize("name", _subcommand_names())
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*name.split(), "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: permakey ") and len(text.splitlines()) > 3


def test_every_option_has_help_text():
    stack, missing = [build_parser()], []
    while stack:
        current = stack.pop()
        for action in current._actions:
            if isinstance(action.choices, dict):  # subcommands
                stack.extend(action.choices.values())
            elif not action.help:
                missing.append(f"{current.prog} {action.option_strings or action.dest}")
    assert not missing


def _tiny_dataset(path, **meta):
    from permakey.data.store import write_dataset

    frames = np.zeros((4, 84, 84, 3), np.uint8)
    split = {"frames": frames, "episode": np.zeros(4, np.int64)}
    return write_dataset(path, {s: split for s in ("train", "val", "test")}, None, **meta)


@pytest.mark.parametrize("command", ["evaluate", "show"])
def test_evaluate_and_show_paint_the_bars_the_runs_were_trained_with(tmp_path, command):
    from conftest import TINY_PERMAKEY, make_run

    from permakey.cli.runs_options import bars_from_args
    from permakey.data.noise import NoiseConfig
    from permakey.errors import UserError

    area = _tiny_dataset(tmp_path / "area", resize="area")
    green = make_run(
        tmp_path / "green", "permakey", TINY_PERMAKEY, 0, noise="both", noise_width=3,
        noise_colour=(0, 255, 0), noise_before_resize=True,
    )  # fmt: skip
    clean = make_run(tmp_path / "clean", "permakey", TINY_PERMAKEY, 1, noise_width=8)
    paper = make_run(tmp_path / "paper", "permakey", TINY_PERMAKEY, 2, noise="horizontal")
    parser = build_parser()
    out = ["--out", "figures"] if command == "show" else []

    def bars(*argv, runs=(green, clean), data=area):
        args = parser.parse_args([command, *map(str, runs), "--data", str(data), *out, *argv])
        return bars_from_args(args)

    # The bars of the run trained with bars; a run trained clean has no say.
    assert bars("--noise", "both") == NoiseConfig("both", 3, (0, 255, 0), False, "area")
    assert bars("--noise", "vertical", "--noise-width", "4", "--no-noise-before-resize") == (
        NoiseConfig("vertical", 4, (0, 255, 0))
    )
    assert bars("--noise", "both", runs=[clean]) == NoiseConfig("both")  # the paper's
    assert bars("--noise", "both", "--noise-random-colour", runs=[clean]) == NoiseConfig(
        "both", random_colour=True
    )
    assert bars("--noise", "none", runs=[green, tmp_path / "none"]) == NoiseConfig()  # unread
    with pytest.raises(UserError, match=r"different noise_width \(3 and 5\): give --noise-width"):
        bars("--noise", "both", "--noise-colour", "1", "2", "3", runs=[green, paper])
    assert bars(
        "--noise", "both", "--noise-width", "5", "--noise-colour", "1", "2", "3",
        "--no-noise-before-resize", runs=[green, paper],
    ) == NoiseConfig("both", 5, (1, 2, 3))  # fmt: skip
    synthetic = _tiny_dataset(tmp_path / "synthetic")  # frames not resized from raw ones
    assert bars("--noise", "both", runs=[clean], data=synthetic) == NoiseConfig("both")
    with pytest.raises(UserError, match="before the resize"):
        bars("--noise", "both", runs=[green], data=synthetic)


@pytest.mark.parametrize("weights", ["step-0", "step-", "step-3x", "first"])
def test_weights_other_than_best_last_or_a_step_are_refused(weights, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "RUN", "--data", "D", "--weights", weights])
    assert "choose best, last or step-N" in capsys.readouterr().err


def test_train_takes_snapshot_steps_and_the_noise_options():
    from permakey.cli.train import _given
    from permakey.training.config import PermaKeyTrainConfig

    argv = ["train", "permakey", "--out", "R", "--data", "D", "--snapshot-steps", "360", "720"]
    argv += ["--noise-share", "0.5", "--noise-random-colour", "--noise-before-resize"]
    given = _given(build_parser().parse_args(argv), PermaKeyTrainConfig)
    cfg = PermaKeyTrainConfig(**given)
    assert cfg.snapshot_steps == (360, 720) and cfg.noise_share == 0.5
    assert cfg.noise_random_colour and cfg.noise_before_resize
    assert PermaKeyTrainConfig.from_dict(cfg.to_dict()) == cfg
