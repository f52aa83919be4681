"""A subprocess worker of the experiment runner: ``python -m permakey.experiments.worker STEP``.

STEP is a `permakey.experiments.steps.Step` as JSON (`Step.to_json`); the worker makes its
library call with `run_step` and exits with its status (0, 2 on a `UserError`, 130 when
interrupted).

``--in-job`` runs it inside a cluster job (`permakey.experiments.slurm`): the job's
preemption signal (submitit's, SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL names another), which
Slurm sends to every process of the job, is left to the job, which answers it by stopping
this worker with SIGTERM (a training run then saves a checkpoint and stops); and the worker
stops the same way when the job's process dies under it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from permakey import devices
from permakey.experiments.steps import Step, run_step

USAGE = "usage: python -m permakey.experiments.worker [--in-job] STEP_JSON"


def _stop_with_parent(poll_s: float = 1.0) -> None:
    """SIGTERM to this process once its parent has gone (it is then re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Runs the step given as JSON in ``argv`` (default: the process's arguments)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    in_job = argv[:1] == ["--in-job"]
    if in_job:
        argv = argv[1:]
    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    if in_job:
        name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
        signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_IGN)
        _stop_with_parent()
    devices.reuse_freed_memory()
    return run_step(Step.from_json(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
