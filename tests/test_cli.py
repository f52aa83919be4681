"""The `permakey` command's front door: every subcommand explains itself."""

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


@pytest.mark.parametrize(
    ("f1", "motion", "says"),
    [
        (0.60, 3.0, "they do not yet follow them"),  # no better than its template
        (0.70, 0.3, "hardly move"),  # better than its template but static
        (0.70, 3.0, "they follow moving objects"),
    ],
)
def test_demo_report_says_plainly_whether_keypoints_track(f1, motion, says):
    from permakey.cli.demo import _tracking_note

    metrics = lambda f, m: {"f1": {"2": f}, "motion": {"per_step_px": m}}  # noqa: E731
    result = {
        "ground_truth": True,
        "columns": [
            {"name": "pk", "metrics": metrics(f1, motion)},
            {"name": "template: pk", "metrics": metrics(0.60, 0.0)},
        ],
    }
    assert says in _tracking_note("pk", result)
    assert "no object ground truth" in _tracking_note("pk", {**result, "ground_truth": False})
