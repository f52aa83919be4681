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


def test_evaluate_paints_the_bars_the_runs_were_trained_with(tmp_path):
    from permakey.cli.runs_options import bars_from_args
    from permakey.data.noise import NoiseConfig
    from permakey.errors import UserError

    area = _tiny_dataset(tmp_path / "area", resize="area")
    parser = build_parser()
    argv = ["evaluate", "RUN", "--data", str(area), "--noise", "both", "--weights", "step-360"]
    args = parser.parse_args(argv)
    assert bars_from_args(args) == NoiseConfig("both") and args.weights == "step-360"
    more = ["--noise-width", "3", "--noise-colour", "1", "2", "3", "--noise-random-colour"]
    args = parser.parse_args([*argv, *more, "--noise-before-resize"])
    assert bars_from_args(args) == NoiseConfig("both", 3, (1, 2, 3), True, "area")
    synthetic = _tiny_dataset(tmp_path / "synthetic")  # frames not resized from raw ones
    args = parser.parse_args(
        [*argv[:3], str(synthetic), "--noise", "both", "--noise-before-resize"]
    )
    with pytest.raises(UserError, match="before the resize"):
        bars_from_args(args)


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
