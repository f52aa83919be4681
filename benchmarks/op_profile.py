"""Where the time of keypoint extraction or of a training step goes, by operator.

    python benchmarks/op_profile.py keypoints KIND [--frames 256] [--rows 15] [--precision P]
    python benchmarks/op_profile.py train KIND [--preset paper] [--batch 32] [--rows 15]
        [--precision fp32|bf16] [--threads 1]

Runs the same calls as `benchmarks/bench.py` (the method's ``paper`` model or the given
training preset, random weights and frames, float32 unless ``--precision`` says otherwise,
one torch thread unless ``--threads``, freed memory kept as
the `permakey` command keeps it unless ``PERMAKEY_SYSTEM_MALLOC=1``), twice untimed, then
``--calls`` times timed, printing the wall-clock, user and system CPU seconds and the minor
page faults per call, then once under `torch.profiler`, and prints the operators sorted by
their own CPU time, grouped by input shapes, then the shares of each kind of operator
(`KINDS`: convolutions forward and backward, matrix products, BatchNorm, copies and fills,
the optimiser, the rest). The BENCHMARKS.md profiles (issue 21) come from it. The profiler's
per-operator times of memory-bound operators can run several times their unprofiled times;
the per-call line above the table is not profiled.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from bench import keypoints_fn, training_step_fn  # noqa: E402

from permakey.devices import reuse_freed_memory  # noqa: E402

# Kinds of operator for the summary, by the first test an operator's name passes.
KINDS = (
    ("convolution backward", lambda name: "convolution_backward" in name),
    ("convolution forward", lambda name: "convolution" in name or "conv2d" in name),
    ("matrix products", lambda name: name.split("::")[-1] in ("mm", "addmm", "bmm", "linear")),
    ("BatchNorm", lambda name: "batch_norm" in name),
    (
        "copies, fills, allocation",
        lambda name: (
            name.split("::")[-1]
            in ("copy_", "fill_", "zero_", "constant_pad_nd", "empty", "empty_strided", "clone")
        ),
    ),
    ("optimiser", lambda name: "Optimizer" in name or "_foreach" in name),
    ("the rest", lambda name: True),
)


def kind_of(name: str) -> str:
    """The `KINDS` label of a profiled operator's name."""
    return next(label for label, test in KINDS if test(name))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("keypoints", "train"))
    parser.add_argument("kind", choices=("permakey", "transporter"))
    parser.add_argument("--frames", type=int, default=256, help="frames per keypoints call")
    parser.add_argument("--preset", default="paper", help="training preset")
    parser.add_argument("--batch", type=int, default=32, help="training batch")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--calls", type=int, default=3, help="timed calls before the profile")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 (or mixed: keypoints)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    kept = reuse_freed_memory()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    if args.what == "keypoints":
        call = keypoints_fn(args.kind, device, args.frames, args.precision)
    else:
        call = training_step_fn(args.kind, args.preset, args.precision, args.batch, device)
    call()
    call()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.calls):
        call()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"per call (freed memory kept: {kept}): {wall / args.calls:.3f} s wall, "
        f"{(after.ru_utime - before.ru_utime) / args.calls:.3f} s user, "
        f"{(after.ru_stime - before.ru_stime) / args.calls:.3f} s system, "
        f"{(after.ru_minflt - before.ru_minflt) / args.calls:,.0f} minor page faults"
    )
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        call()
    averages = prof.key_averages(group_by_input_shape=True)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    by_kind: dict[str, float] = {label: 0.0 for label, _ in KINDS}
    for event in prof.key_averages():
        by_kind[kind_of(event.key)] += event.self_cpu_time_total
    total = sum(by_kind.values())
    print("| kind of operator | share of the profiled CPU time | ms per call |")
    print("|---|---|---|")
    for label, micros in by_kind.items():
        print(f"| {label} | {micros / total:.1%} | {micros / 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
