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
