"""A subprocess worker of the experiment runner: ``python -m permakey.experiments.worker STEP``.

STEP is a `permakey.experiments.steps.Step` as JSON (`Step.to_json`); the worker makes its
library call with `run_step` and exits with its status (0, 2 on a `UserError`, 130 when
interrupted).
"""

from __future__ import annotations

import sys

from permakey.experiments.steps import Step, run_step


def main(argv: list[str] | None = None) -> int:
    """Runs the step given as JSON in ``argv`` (default: the process's arguments)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m permakey.experiments.worker STEP_JSON", file=sys.stderr)
        return 2
    return run_step(Step.from_json(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
