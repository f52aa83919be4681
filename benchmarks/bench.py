"""Speed and memory of training and keypoint inference, on the machine it runs on.

    python benchmarks/bench.py --out FILE.json [--device cpu|cuda|mps|auto] [--quick]

Measures, through the same code paths as `permakey train` and `permakey.load` (the loop's
`training_step`, `TrainedModel.keypoints`), on random uint8 frames of 84 x 84:

- PermaKey training images/s, batch 32, K = 7, layers (0, 1), p = 2: the ``paper`` preset in
  float32 and bf16 autocast, and the same for ``authors-code``; the ``cpu`` and ``cpu-track``
  presets in bf16 where the device multiplies it natively, else float32;
- PermaKey keypoint inference frames/s (256 frames per call, split into forward passes as
  `TrainedModel.keypoints` does by default);
- peak resident memory of a `permakey train permakey` process reading a 95,000-frame dataset
  (a synthetic sprite dataset in the store format, generated in a temporary folder, since
  collecting 95,000 Atari frames takes long; frames are read from the HDF5 file, no workers);
- Transporter training frame pairs/s (batch 64) and inference frames/s (256 frames per call);
- both methods' keypoint frames/s with ``precision="mixed"`` (bf16 in the layers that keep
  keypoints within 0.5 px), where the device multiplies bf16 natively;
- environment steps/s of ALE/Pong-v5 with and without the keypoint observation wrapper, for 1
  and 8 environments (`env_step_rates`);
- the FLOPs per image of a PermaKey training step (`paper` and `authors-code`), per pair of a
  Transporter training step, and per frame of both methods' keypoint extraction (PyTorch's
  FLOP counter: the convolutions, fused or not, and matrix products);
- the device's dense matrix-product rate (GFLOP/s of a 2048 x 2048 product) in float32 and,
  where bf16 is timed, bf16: the ceiling that the training rates can be set against.

Like the `permakey` command, the benchmark first makes glibc keep the memory the process frees
(`permakey.devices.reuse_freed_memory`); ``PERMAKEY_SYSTEM_MALLOC=1`` times the process with
glibc's defaults instead (the JSON's ``reuse_freed_memory`` says which), the memory row's
training process included.

``--only PREFIX ...`` measures only the results whose key starts with one of the prefixes, so
that each row can run in a fresh process of its own.

Prints a table and writes the JSON atomically. ``--quick`` is a smoke run: few steps and a
2,000-frame dataset; its numbers are not the benchmark's.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from permakey.devices import cpu_has_fast_bf16, resolve_device, reuse_freed_memory
from permakey.fileio import write_json_atomic
from permakey.runs import TrainedModel
from permakey.testing import make_sprites_dataset
from permakey.training import get_method
from permakey.training.loop import training_step
from permakey.training.optim import build_optimizer

FULL_DATASET_FRAMES = 95_000


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def seconds_per_call(
    fn: Callable[[], object], device: torch.device, warmup: int, calls: int
) -> float:
    """Mean wall-clock seconds of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def random_batch(kind: str, batch: int, size: int) -> dict[str, torch.Tensor]:
    """A collated uint8 batch like the method's dataset gives."""
    frames = lambda: torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)  # noqa: E731
    return {"frame": frames()} if kind == "permakey" else {"source": frames(), "target": frames()}


def training_step_fn(kind: str, preset: str, precision: str, batch: int, device) -> Callable:
    """One training step of a method's preset on a fixed random batch, as a callable."""
    method = get_method(kind)
    model_config = method.model_config(preset)
    cfg = method.presets[preset]
    cfg = type(cfg).from_dict({**cfg.to_dict(), "precision": precision, "batch_size": batch})
    torch.manual_seed(0)
    model = method.build_model(model_config).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(
        method.param_groups(model, cfg), cfg.adam_eps, getattr(cfg, "shared_adam_counter", False)
    )
    data = random_batch(kind, batch, model_config.image_size)
    return lambda: training_step(method, model, optimizer, data, device, cfg)


def train_rate(kind: str, preset: str, precision: str, batch: int, device, steps: int) -> float:
    """Training items (images or pairs) per second of a method's training preset."""
    step = training_step_fn(kind, preset, precision, batch, device)
    return batch / seconds_per_call(step, device, warmup=min(steps, 2), calls=steps)


def _count_fused_convolutions() -> None:
    """Teaches PyTorch's FLOP counter the fused conv + ReLU op that the inference forms run on
    a CPU (``mkldnn._convolution_pointwise``), which it does not count by itself."""
    from torch.utils.flop_counter import conv_flop_count, flop_registry, register_flop_formula

    try:
        fused = torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return
    if fused in flop_registry or fused.default in flop_registry:
        return

    @register_flop_formula(fused)
    def _flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return conv_flop_count(x_shape, w_shape, out_shape)


def gflop_per_item(fn: Callable[[], object], items: int) -> float:
    """GFLOP per item of one call of ``fn``, as PyTorch's FLOP counter sees it (the fused conv
    + ReLU of the inference forms included)."""
    from torch.utils.flop_counter import FlopCounterMode

    _count_fused_convolutions()
    fn()  # a first call creates lazy state (the optimiser's moments)
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / items / 1e9


def matmul_gflops(device: torch.device, precision: str, calls: int) -> float:
    """GFLOP/s of a 2048 x 2048 x 2048 matrix product on ``device`` in ``precision``."""
    n = 2048
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    torch.manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / seconds_per_call(lambda: a @ b, device, warmup=2, calls=calls) / 1e9


def keypoints_fn(kind: str, device, batch: int, precision: str = "fp32") -> Callable:
    """Keypoint extraction of a method's paper model on ``batch`` random uint8 frames per call,
    as a callable."""
    method = get_method(kind)
    model_config = method.model_config("paper")
    torch.manual_seed(0)
    loaded = TrainedModel(method.build_model(model_config).to(device), precision=precision)
    size = model_config.image_size
    frames = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    return lambda: loaded.keypoints(frames, windows=False)  # its default frames per pass


def infer_rate(kind: str, device, batch: int, calls: int, precision: str = "fp32") -> float:
    """Keypoint extraction frames/s of a method's paper model through `TrainedModel.keypoints`."""
    run = keypoints_fn(kind, device, batch, precision)
    return batch / seconds_per_call(run, device, warmup=1, calls=calls)


def env_step_rates(device: torch.device, quick: bool) -> dict[str, object]:
    """Environment steps/s of ALE/Pong-v5, raw and through the keypoint wrappers, 1 and 8 envs.

    The wrappers run a freshly initialised paper PermaKey (untrained: the time per step does
    not depend on the weights), coordinates only; 8 environments step one after another in
    one process (``SyncVectorEnv``) and the vector wrapper runs the model once per step of all 8.
    Random actions; episodes reset automatically.
    """
    import ale_py
    import gymnasium as gym
    import numpy as np

    from permakey.envs import KeypointObservation, VectorKeypointObservation

    gym.register_envs(ale_py)
    method = get_method("permakey")
    model_config = method.model_config("paper")
    torch.manual_seed(0)
    model = TrainedModel(method.build_model(model_config).to(device))
    steps = 10 if quick else 200
    rng = np.random.default_rng(0)

    def rate(env, num_envs: int) -> float:
        env.reset(seed=0)
        space = env.action_space
        step = lambda: env.step(  # noqa: E731
            rng.integers(space.n) if num_envs == 1 else rng.integers(space.nvec)
        )
        try:
            return num_envs / seconds_per_call(step, device, warmup=2, calls=steps)
        finally:
            env.close()

    make = lambda: gym.make("ALE/Pong-v5")  # noqa: E731
    vector = lambda: gym.vector.SyncVectorEnv([make for _ in range(8)])  # noqa: E731
    return {
        "env_steps_s_raw_1": rate(make(), 1),
        "env_steps_s_wrapped_1": rate(KeypointObservation(make(), model), 1),
        "env_steps_s_raw_8": rate(vector(), 8),
        "env_steps_s_wrapped_8": rate(VectorKeypointObservation(vector(), model), 8),
        "env_steps_note": (
            "ALE/Pong-v5 env steps/s (frame skip 4), random actions; wrapped: "
            "KeypointObservation with a freshly initialised (untrained) paper PermaKey, "
            "coordinates only, fp32; 8 envs: SyncVectorEnv in one process, one model call per "
            "vector step"
        ),
    }


def peak_rss_gb(frames: int, device: str, steps: int, workdir: Path) -> float:
    """Peak RSS (GB) of a `permakey train permakey` process reading a ``frames``-frame dataset."""
    data = make_sprites_dataset(
        workdir / "data", {"train": frames, "val": 500, "test": 32}, episode_length=1000
    )
    command = [
        sys.executable, "-m", "permakey", "train", "permakey", "--data", str(data),
        "--out", str(workdir / "run"), "--max-steps", str(steps), "--val-limit", "64",
        "--workers", "0", "--no-progress", "--device", device,
    ]  # fmt: skip
    # A child's peak RSS starts from the RSS of the process that forked it (Linux carries the
    # parent's high-water mark across fork and exec), and this benchmark holds models by now:
    # a small Python process starts the training and reports that child's own peak.
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_OF_CHILD, *command],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    # ru_maxrss: kilobytes on Linux, bytes on macOS.
    maxrss = int(done.stdout.split()[-1])
    return maxrss * (1 if sys.platform == "darwin" else 1024) / 1e9


_PEAK_RSS_OF_CHILD = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
if os.waitstatus_to_exitcode(status):
    sys.exit(f"training failed: {sys.argv[1:]}")
print(usage.ru_maxrss)
"""


def machine(device: torch.device) -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, small dataset")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--force-bf16", action="store_true", help="time bf16 even where the CPU emulates it"
    )
    parser.add_argument(
        "--steps", type=int, help="timed training steps per setting (default: 20, quick: 1)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="PREFIX",
        help="measure only the results whose key starts with one of these (e.g. "
        "permakey_authors_train transporter_infer env_steps train_peak_rss); default: all",
    )
    args = parser.parse_args(argv)
    kept = reuse_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    steps = args.steps or (1 if args.quick else 20)
    infer_calls = 1 if args.quick else 5

    # Emulated bf16 (CPUs without AVX512-BF16 / AMX) is ~80x slower than float32: not timed.
    bf16 = device.type != "cpu" or cpu_has_fast_bf16() or args.force_bf16
    results: dict[str, object] = {"reuse_freed_memory": kept}

    def selected(key: str) -> bool:
        return args.only is None or any(key.startswith(prefix) for prefix in args.only)

    def measure(key: str, fn: Callable[[], float], precision: str = "fp32") -> None:
        if not selected(key):
            return
        results[key] = fn() if precision == "fp32" or bf16 else None
        print(f"{key}: {results[key]}", file=sys.stderr, flush=True)

    for precision in ("fp32", "bf16"):
        measure(
            f"matmul_gflops_{precision}",
            lambda q=precision: matmul_gflops(device, q, 3 if args.quick else 20),
            precision,
        )
    for preset, prefix in (("paper", "permakey"), ("authors-code", "permakey_authors")):
        measure(
            f"{prefix}_train_gflop_per_img",
            lambda p=preset: gflop_per_item(
                training_step_fn("permakey", p, "fp32", 32, device), 32
            ),
        )
    measure(
        "transporter_train_gflop_per_pair",
        lambda: gflop_per_item(training_step_fn("transporter", "paper", "fp32", 64, device), 64),
    )
    for kind in ("permakey", "transporter"):
        measure(
            f"{kind}_infer_gflop_per_frame",
            lambda k=kind: gflop_per_item(keypoints_fn(k, device, 32), 32),
        )
    for preset, prefix in (("paper", "permakey"), ("authors-code", "permakey_authors")):
        for precision in ("fp32", "bf16"):
            measure(
                f"{prefix}_train_img_s_{precision}",
                lambda p=preset, q=precision: train_rate("permakey", p, q, 32, device, steps),
                precision,
            )
    cpu_precision = "bf16" if bf16 else "fp32"
    for preset in ("cpu", "cpu-track"):
        measure(
            f"permakey_{preset.replace('-', '_')}_preset_train_img_s_{cpu_precision}",
            lambda p=preset: train_rate("permakey", p, cpu_precision, 32, device, steps),
        )
    measure("permakey_infer_fps", lambda: infer_rate("permakey", device, 256, infer_calls))
    measure(
        "permakey_infer_fps_bf16",
        lambda: infer_rate("permakey", device, 256, infer_calls, "bf16"),
        "bf16",
    )
    for precision in ("fp32", "bf16"):
        suffix = "" if precision == "fp32" else "_bf16"
        measure(
            f"transporter_train_pairs_s{suffix}",
            lambda q=precision: train_rate("transporter", "paper", q, 64, device, steps),
            precision,
        )
    measure("transporter_infer_fps", lambda: infer_rate("transporter", device, 256, infer_calls))
    for kind in ("permakey", "transporter"):
        measure(
            f"{kind}_infer_fps_mixed",
            lambda k=kind: infer_rate(k, device, 256, infer_calls, "mixed"),
            "bf16",
        )
    if selected("env_steps"):
        results.update(env_step_rates(device, args.quick))
    if not bf16:
        results["bf16_note"] = "not timed: this CPU has no native bf16 (AVX512-BF16 or AMX)"
    if selected("train_peak_rss"):
        frames = 2_000 if args.quick else FULL_DATASET_FRAMES
        with tempfile.TemporaryDirectory() as tmp:
            results["train_peak_rss_gb"] = peak_rss_gb(
                frames, args.device, 5 if args.quick else 30, Path(tmp)
            )
        results["train_peak_rss_dataset"] = (
            f"synthetic sprites in the store format, {frames} training frames read from HDF5, "
            "workers 0, batch 32, paper preset"
        )
    results["quick"] = args.quick
    results["machine"] = machine(device)

    width = max(map(len, results))
    for key, value in results.items():
        if value is None:
            value = "-"
        elif isinstance(value, float):
            value = f"{value:.3f}" if key.endswith("_gb") else f"{value:.1f}"
        print(f"{key:<{width}}  {value}")
    write_json_atomic(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
