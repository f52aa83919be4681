"""One step of an experiment as data: a library call by name, with JSON-able arguments.

A `Step` names what it does (`STEP_KINDS`) and holds the keyword arguments of the library
function that does it:

- "collect": `permakey.data.collect.collect`
- "train": `permakey.training.start.new_run`; "resume": `permakey.training.start.resume_run`
- "evaluate": `evaluate`, here (`evaluation.evaluate.evaluate_runs`, then `write_result`)
- "show": `permakey.visualisation.show.show_runs`
- "agent": `permakey.experiments.agents.run_cell` (one cell of the agent benchmark)

`run_step` calls it in this process and turns its outcome into an exit status; the runner's
subprocess workers run the same `Step`, sent as JSON, through `permakey.experiments.worker`.
The arguments hold only what the step sets (the functions' defaults fill the rest), in the
order a reader expects them, so that the command line can render a step as its `permakey`
command (`permakey.cli.reproduce.command_line`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from permakey.errors import UserError
from permakey.evaluation.results import EvaluationResult

STEP_KINDS = ("collect", "train", "resume", "evaluate", "show", "agent")
# Exit statuses, as the command line's: a step that failed with a `UserError` (its message
# printed), and one interrupted by Ctrl-C / SIGTERM (a training run saved and resumable).
USER_ERROR = 2
INTERRUPTED = 130


@dataclass(frozen=True)
class Step:
    """A library call to make: which one (``kind``) and its keyword arguments.

    Attributes:
        kind: one of `STEP_KINDS`.
        kwargs: keyword arguments of the step's function, JSON values only (paths as str,
            tuples as lists); not to be changed in place (`with_kwargs` makes a new step).
    """

    kind: str
    kwargs: dict[str, Any]

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise ValueError(f"unknown step kind {self.kind!r}; choose from {list(STEP_KINDS)}")

    def with_kwargs(self, **kwargs: Any) -> Step:
        """The same step with ``kwargs`` added (or replaced), after the existing ones."""
        return Step(self.kind, {**self.kwargs, **kwargs})

    def to_json(self) -> str:
        """The step as one line of JSON, {"kind": ..., "kwargs": {...}}."""
        return json.dumps({"kind": self.kind, "kwargs": self.kwargs})

    @classmethod
    def from_json(cls, text: str) -> Step:
        """The step that `to_json` wrote.

        Raises:
            ValueError: not a step's JSON.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("kwargs"), dict):
            raise ValueError(f"not a step: {text[:200]!r}")
        return cls(data.get("kind"), data["kwargs"])

    def __str__(self) -> str:
        """The call in Python's words, e.g. ``collect(game='Frostbite', out='...')``."""
        return f"{self.kind}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"


def evaluate(
    runs: Sequence[str | os.PathLike],
    data: str | os.PathLike,
    out: str | os.PathLike,
    noise: str = "none",
    weights: str = "best",
    device: str = "auto",
    noise_width: int | None = None,
    noise_colour: Sequence[int] | None = None,
    noise_random_colour: bool | None = None,
    noise_before_resize: bool | None = None,
) -> EvaluationResult:
    """Evaluates runs together on a dataset's test split and writes the result as JSON.

    Args:
        runs: run folders, one column each.
        data: the dataset folder.
        out: the JSON file to write (atomically).
        noise: Noisy Atari kind painted over the frames, or "none".
        weights: "best", "last" or "step-N" weights of every run.
        device: "cpu", "cuda", "mps" or "auto" (the best available).
        noise_width: bar thickness in stored pixels; None: as the runs trained.
        noise_colour: bar RGB colour, each 0-255; None: as the runs trained.
        noise_random_colour: a fresh bar colour per frame; None: as the runs trained.
        noise_before_resize: bars as if painted before the dataset's resize; None: as the
            runs trained (`permakey.runs.bars.noise_for_runs`, as `permakey evaluate`).

    Returns:
        The result of `permakey.evaluation.evaluate.evaluate_runs`; its table is printed.
    """
    from permakey.evaluation.evaluate import evaluate_runs, format_table, write_result
    from permakey.runs.bars import noise_for_runs

    bars = noise_for_runs(
        runs, data, noise, noise_width, noise_colour, noise_random_colour, noise_before_resize
    )
    result = evaluate_runs(runs, data, noise=bars, weights=weights, device=device)
    write_result(out, result)
    print(format_table(result))
    print(f"\nwrote {out}")
    return result


def call_step(step: Step) -> Any:
    """Makes the library call of ``step`` in this process and returns its result.

    Progress goes to stdout as the commands print it: a training run's end, an evaluation's
    table, the figures written.
    """
    kwargs = dict(step.kwargs)
    if step.kind == "collect":
        from permakey.data.collect import collect

        return collect(**kwargs)
    if step.kind in ("train", "resume"):
        from permakey.training.start import new_run, result_line, resume_run

        result = (new_run if step.kind == "train" else resume_run)(**kwargs)
        print(result_line(kwargs["kind"], result))
        return result
    if step.kind == "evaluate":
        return evaluate(**kwargs)
    if step.kind == "agent":
        from permakey.experiments.agents import run_cell

        return run_cell(**kwargs)
    from permakey.visualisation.show import show_runs

    written = show_runs(**kwargs)
    for path in written:
        print(f"wrote {path}")
    return written


def run_step(step: Step) -> int:
    """Runs ``step`` in this process; its exit status, as the command line's.

    Returns:
        0 when it completed; `USER_ERROR` (2) when it raised a `UserError`, whose message goes
        to stderr; `INTERRUPTED` (130) on Ctrl-C, or when a training run stopped on one.
        Other exceptions propagate: they are bugs, and their traceback says where.
    """
    try:
        result = call_step(step)
    except UserError as err:
        print(f"permakey: error: {err}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("permakey: interrupted", file=sys.stderr)
        return INTERRUPTED
    if step.kind in ("train", "resume") and result.status == "interrupted":
        return INTERRUPTED
    return 0
