"""The Noisy Atari bars runs were trained on: what evaluation and figures paint unless told.

A run trained on 3 px green bars is measured and drawn on 3 px green bars. `noise_for_runs`
makes the `permakey.data.noise.NoiseConfig` to paint over a dataset's frames for some runs:
the kind is the caller's, and each option of the bars' look (`PAPER_LOOK`: width, colour, a
random colour per frame, painted before the resize) that the caller leaves None is the one the
runs trained with (`trained_look`: a run folder's run.json, a pretrained model's record), or the
paper's where no run trained with bars. Runs that trained on bars that look different get no
silent choice: the option must be given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from permakey.data.datasets import dataset_noise
from permakey.data.noise import NoiseConfig
from permakey.errors import UserError
from permakey.runs.folder import read_run_json
from permakey.runs.pretrained import is_pretrained, model_folder, read_record

_PAPER = NoiseConfig()
# The training options that say how the bars look (`permakey train`'s, and the command-line
# options of `permakey evaluate` and `permakey show` of the same names), each with its value
# for the paper's bars, which run.json files from before the option read as.
PAPER_LOOK: dict[str, Any] = {
    "noise_width": _PAPER.width,
    "noise_colour": _PAPER.colour,
    "noise_random_colour": _PAPER.random_colour,
    "noise_before_resize": _PAPER.before_resize is not None,
}


def trained_look(info: dict[str, Any]) -> dict[str, Any] | None:
    """How the bars a run trained on looked.

    Args:
        info: the run's run.json (or a pretrained model's record): its ``train`` entry holds
            the training options.

    Returns:
        `PAPER_LOOK` option -> value (width: int pixels; colour: (R, G, B) tuple, each 0-255; the
        other two: bool), the paper's for options the file predates; None for a run trained
        without bars.
    """
    train = info.get("train") or {}
    if train.get("noise", "none") == "none":
        return None
    look = {name: train.get(name, value) for name, value in PAPER_LOOK.items()}
    look["noise_colour"] = tuple(look["noise_colour"])  # JSON gives a list
    return look


def _info(run: str | os.PathLike) -> dict[str, Any]:
    """A run's run.json, or a ``pretrained:GAME`` model's record, without loading weights."""
    if is_pretrained(run):
        return read_record(model_folder(str(run)))
    return read_run_json(run)


def noise_for_runs(
    runs: Sequence[str | os.PathLike],
    data: str | os.PathLike,
    noise: str,
    noise_width: int | None = None,
    noise_colour: Sequence[int] | None = None,
    noise_random_colour: bool | None = None,
    noise_before_resize: bool | None = None,
) -> NoiseConfig:
    """The bars to paint over a dataset's frames for runs: as given, or as the runs trained.

    The arguments are named as the training options (and `permakey evaluate`'s and
    `permakey show`'s command-line options) that say the same.

    Args:
        runs: run folders, or ``pretrained:GAME`` names; read only for options left None,
            and only when ``noise`` paints bars.
        data: the dataset folder (`permakey.data.datasets.dataset_noise`).
        noise: the kind, "none", "horizontal", "vertical" or "both".
        noise_width: bar thickness in stored pixels (>= 1); None: as the runs trained.
        noise_colour: RGB, each 0-255; None: as the runs trained. A colour given asks for
            that colour: ``noise_random_colour`` left None is then False.
        noise_random_colour: a fresh colour per frame; None: as the runs trained.
        noise_before_resize: painted as if before the dataset's resize; None: as the runs
            trained.

    Returns:
        The bars, each option left None taken from the runs that trained with bars (a run
        trained without bars has no say), the paper's where none did.

    Raises:
        UserError: an option left None on which the runs that trained with bars differ (the
            message names two of them and the option to give), a missing or damaged run, or
            the bad values of `permakey.data.datasets.dataset_noise`.
    """
    if noise == "none":
        return dataset_noise(data, noise)
    if noise_colour is not None and noise_random_colour is None:
        noise_random_colour = False
    given = {
        "noise_width": noise_width,
        "noise_colour": None if noise_colour is None else tuple(noise_colour),
        "noise_random_colour": noise_random_colour,
        "noise_before_resize": noise_before_resize,
    }
    missing = [name for name, value in given.items() if value is None]
    looks = {}
    if missing:
        for run in runs:
            look = trained_look(_info(run))
            if look is not None:
                looks[str(run)] = look
    for name in missing:
        first_run: dict[Any, str] = {}  # each value the runs trained with -> its first run
        for run, look in looks.items():
            first_run.setdefault(look[name], run)
        if len(first_run) > 1:
            (a, run_a), (b, run_b) = list(first_run.items())[:2]
            raise UserError(
                f"runs {run_a} and {run_b} trained on bars with different {name} ({a!r} and "
                f"{b!r}): give --{name.replace('_', '-')} to choose the bars to paint"
            )
        given[name] = next(iter(first_run), PAPER_LOOK[name])
    return dataset_noise(
        data,
        noise,
        given["noise_width"],
        given["noise_colour"],
        given["noise_random_colour"],
        given["noise_before_resize"],
    )
