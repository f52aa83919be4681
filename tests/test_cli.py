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
    ("f1", "player", "says"),
    [
        (0.60, 0.40, "they do not yet follow them"),  # no better than its template
        (0.70, 0.40, "find no kind of object clearly more often"),  # better F1, nothing followed
        (0.60, 0.96, "the Player in 96% of its appearances (fixed points: 35%)"),
    ],
)
def test_demo_report_says_plainly_whether_keypoints_track(f1, player, says):
    from permakey.cli.demo import _tracking_note

    def metrics(f1: float, player: float) -> dict:
        categories = {"Player": player, "Shield": 0.9}
        return {
            "f1": {"2": f1},
            "motion": {"per_step_px": 0.4},
            "per_category": {c: {"recall": {"2": r}} for c, r in categories.items()},
        }

    result = {
        "ground_truth": True,
        "columns": [
            {"name": "pk", "metrics": metrics(f1, player)},
            {"name": "template: pk", "metrics": metrics(0.60, 0.35)},
        ],
    }
    assert says in _tracking_note("pk", result)
    assert "no object ground truth" in _tracking_note("pk", {**result, "ground_truth": False})
