"""The runner's steps as cluster jobs through submitit: one job per step, requeued on preemption.

The only module that imports ``submitit`` (the ``cluster`` extra), lazily. `JobLauncher` is an
`runner.Execute`: `runner.run_plan` hands it each step it would run (the same stages and skip
and resume rules as in one process), and it submits the step as a `StepJob` and waits for it.

A `StepJob` runs its step in a worker subprocess (`permakey.experiments.worker --in-job`),
its output appended to the runner's log of the step. When it starts (or starts again, after a
requeue) it recomputes a training step from the run folder (`runner.current_step`): a run with
a checkpoint resumes, a complete one is kept. On the job's preemption or time-limit signal,
submitit calls `StepJob.checkpoint`: the worker is stopped with SIGTERM (a training run saves a
checkpoint at the end of its current step) and the job is requeued, to resume there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from permakey.errors import UserError
from permakey.experiments.runner import Describe, current_step
from permakey.experiments.steps import INTERRUPTED, Step

# "slurm": sbatch on a Slurm cluster; "local": submitit's LocalExecutor, the same jobs (their
# pickles, signals and requeues) as processes of this machine.
CLUSTERS = ("slurm", "local")
# Seconds a stopped worker gets to finish its step and save its checkpoint before it is
# killed: within the 90 s by which Slurm signals a job before its time limit (submitit's
# default `slurm_signal_delay_s`).
STOP_TIMEOUT_S = 80.0


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError(
            "this launcher needs submitit: pip install 'permakey[cluster]' (or pip install submitit)"
        ) from None
    return submitit


@dataclass(frozen=True)
class Resources:
    """What each job asks of the cluster.

    Attributes:
        cpus: CPU cores per job; also the worker's torch threads (OMP_NUM_THREADS).
        gpus: GPUs per job, 0 or 1 (each job is one process; DDP across GPUs and nodes goes
            through torchrun, README "Slurm").
        mem_gb: memory per job in GB.
        time_min: time limit per job in minutes (a training job past it is requeued and
            resumes, up to `max_timeouts` times).
        partition: Slurm partition, or None for the cluster's default.
        account: Slurm account, or None for the user's default.
        max_timeouts: requeues after reaching the time limit (preemptions are not counted).
    """

    cpus: int = 4
    gpus: int = 0
    mem_gb: float = 16.0
    time_min: int = 240
    partition: str | None = None
    account: str | None = None
    max_timeouts: int = 3

    def __post_init__(self) -> None:
        for name, minimum in (("cpus", 1), ("mem_gb", 0), ("time_min", 1), ("max_timeouts", 0)):
            if getattr(self, name) < minimum:
                raise UserError(
                    f"--{name.split('_')[0]} must be >= {minimum}, got {getattr(self, name)}"
                )
        if self.gpus not in (0, 1):
            raise UserError(
                f"--gpus {self.gpus}: each job trains in one process on at most one GPU; "
                "train on several GPUs or nodes with torchrun (README, 'Slurm')"
            )


def make_executor(cluster: str, folder: str | os.PathLike, resources: Resources) -> Any:
    """A submitit executor for ``cluster`` ("slurm" or "local") writing its files in ``folder``.

    Raises:
        UserError: submitit is not installed, or "slurm" on a machine without ``sbatch``.
    """
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; choose from {list(CLUSTERS)}")
    submitit = _submitit()
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError(
            "--launcher slurm needs Slurm's sbatch on PATH, and this machine has none; "
            "--launcher submitit-local runs the same jobs here"
        )
    executor = submitit.AutoExecutor(
        folder=str(folder),  # its files are named by job id
        cluster=cluster,
        slurm_max_num_timeout=resources.max_timeouts,
    )
    slurm = {
        "slurm_partition": resources.partition,
        "slurm_account": resources.account,
    }
    executor.update_parameters(
        name="permakey",
        timeout_min=resources.time_min,
        cpus_per_task=resources.cpus,
        gpus_per_node=resources.gpus,
        mem_gb=resources.mem_gb,
        tasks_per_node=1,
        nodes=1,
        **{k: v for k, v in slurm.items() if v is not None},
    )
    return executor


class StepJob:
    """A step as a submitit job: its worker subprocess, and how it stops and comes back.

    submitit pickles the object, calls it in the job (``job.result()`` is its exit status) and,
    on the job's preemption or time-limit signal, calls `checkpoint` for the job to requeue.

    Args:
        step: the step (`steps.Step`).
        log: the file the worker's output is appended to.
        threads: the worker's torch threads.
        describe: how the log names the step (a module-level function, pickled by name).
    """

    def __init__(self, step: Step, log: str | Path, threads: int, describe: Describe = str):
        self.step = step
        self.log = Path(log)
        self.threads = threads
        self.describe = describe
        self._worker: subprocess.Popen | None = None
        self._status: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("_worker", "_status")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state, _worker=None, _status=None)

    def __call__(self) -> int:
        """Runs the step as it stands now (`runner.current_step`); its exit status."""
        step = current_step(self.step)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as f:
            if step is None:
                f.write(f"{self.describe(self.step)}: its run is complete, kept\n")
                return 0
            f.write(f"$ {self.describe(step)}  (job {_submitit().JobEnvironment().job_id})\n")
            f.flush()
            env = {
                **os.environ,
                "OMP_NUM_THREADS": str(self.threads),
                "MKL_NUM_THREADS": str(self.threads),
            }
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "permakey.experiments.worker", "--in-job", step.to_json()],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env,
            )
            # A helper thread waits for the worker; the main thread only polls its status.
            # submitit's signal handler (`checkpoint`) interrupts the main thread wherever it
            # is and waits for the worker too: a `Popen.wait` it interrupted would hold the
            # lock that the handler's own wait needs.
            self._status = None
            threading.Thread(target=self._reap, name="worker-wait", daemon=True).start()
            try:
                status = self._ended()
            except KeyboardInterrupt:  # the job cancelled (submitit's local executor: SIGINT)
                self._stop_worker()
                raise
        # A worker killed by a signal (-N) has no exit status of its own: report it as failed.
        return status if status >= 0 else 1

    def _reap(self) -> None:
        self._status = self._worker.wait()

    def _ended(self, timeout_s: float | None = None) -> int | None:
        """The worker's exit status once it has ended, or None after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._status is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
        return self._status

    def _stop_worker(self) -> None:
        if self._worker is None or self._status is not None:
            return
        self._worker.send_signal(signal.SIGTERM)
        if self._ended(STOP_TIMEOUT_S) is None:
            self._worker.kill()
            self._ended()

    def checkpoint(self) -> Any:
        """submitit's hook on preemption or time limit: stops the worker; the job to requeue.

        The requeued job is this step again; when it starts, `runner.current_step` turns a
        training step whose run now has a checkpoint into its "resume" step.
        """
        self._stop_worker()
        return _submitit().helpers.DelayedSubmission(
            StepJob(self.step, self.log, self.threads, self.describe)
        )


class JobLauncher:
    """An `runner.Execute` that runs each step as a `StepJob` and waits for it.

    Args:
        executor: a submitit executor (`make_executor`).
        threads: each worker's torch threads (the job's CPUs).
        describe: how progress lines and logs name a step.
    """

    # Its jobs take their run folders' locks themselves (see `runner._training_job`).
    remote = True

    def __init__(self, executor: Any, threads: int, describe: Describe = str) -> None:
        self.executor = executor
        self.threads = threads
        self.describe = describe
        self.jobs: list[Any] = []
        self.cancelled = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, step: Step, log: Path) -> int:
        line = self.describe(step)
        with self._lock:
            if self.cancelled.is_set():
                return INTERRUPTED
            job = self.executor.submit(StepJob(step, log, self.threads, self.describe))
            self.jobs.append(job)
        print(f"submitted job {job.job_id}: {line}  (log {log})", flush=True)
        try:
            status = int(job.result())  # waits for the job, through its requeues
        except Exception as err:  # submitit's errors for a job that failed or left no result
            if self.cancelled.is_set():
                return INTERRUPTED
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"job {job.job_id} failed: {reason} (submitit logs: {job.paths.folder})")
            status = 1
        print(f"done ({status}): job {job.job_id}, {log.stem}", flush=True)
        return status

    def cancel(self) -> None:
        """Cancels every submitted job that has not ended (a training run saves and stops)."""
        with self._lock:
            self.cancelled.set()
            for job in self.jobs:
                if not job.done():
                    job.cancel(check=False)

    @contextmanager
    def cancelling_on_interrupt(self) -> Iterator[JobLauncher]:
        """Ctrl-C (SIGINT) inside the block cancels the jobs instead of leaving them running.

        The steps waiting on them then end as interrupted, and the runner starts no more.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(signal.SIGINT)

        def handle(signum: int, frame: Any) -> None:
            print("\ninterrupted: cancelling the submitted jobs", file=sys.stderr, flush=True)
            self.cancel()

        signal.signal(signal.SIGINT, handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
