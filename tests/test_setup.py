"""`scripts/setup.sh --dry-run`: which torch build it picks, and the pip commands it would run.

The script runs for real in dry-run mode; what it sees is controlled from outside: a fake
`nvidia-smi` on PATH (or none), and pip isolated from this machine's configuration
(PIP_CONFIG_FILE=/dev/null, no index) with find-links to a folder holding one tiny wheel named
like the pinned torch, as a CPU build ("+cpu") or not. pip reads that wheel's metadata to
answer; nothing is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIN = next(
    line.split("==")[1].strip()
    for line in (ROOT / "constraints-cpu.txt").read_text().splitlines()
    if line.startswith("torch==")
)
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def wheel(folder: Path, version: str) -> None:
    """A minimal wheel of a package named torch at ``version``: metadata, no code."""
    name = f"torch-{version}"
    info = f"{name}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-py3-none-any.whl", "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")


def setup(tmp_path: Path, gpu: str | None, build: str, **env: str) -> tuple[int, str]:
    """Runs setup.sh --dry-run; (exit status, output). ``build``: "cpu", "default" or "none"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if gpu is not None:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\nprintf '%s\\n' '{gpu}'\n")
        smi.chmod(0o755)
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    if build != "none":
        wheel(wheels, PIN + ("+cpu" if build == "cpu" else ""))
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PERMAKEY_"))}
    full = {
        **keep,
        "PATH": os.pathsep.join(
            [str(bin_dir), str(Path(sys.executable).parent), "/usr/bin", "/bin"]
        ),
        "PYTHON": sys.executable,
        "PERMAKEY_VENV": str(tmp_path / "venv"),  # none yet: a dry run creates nothing
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        **env,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh"), "--dry-run"],
        cwd=ROOT, env=full, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def commands(said: str) -> list[str]:
    return [line.split("would run: ", 1)[1] for line in said.splitlines() if "would run: " in line]


def test_without_a_gpu_the_cpu_build_plain_pip_finds_is_pinned(tmp_path):
    status, said = setup(tmp_path, gpu=None, build="cpu")
    assert status == 0, said
    assert f"the CPU build of {PIN} (no NVIDIA GPU: nvidia-smi not found)" in said
    assert "plain pip finds the CPU build" in said
    *_, install = commands(said)
    assert install.endswith("-c constraints-cpu.txt -e .[all]")
    assert CPU_INDEX not in said
    assert not (tmp_path / "venv").exists()


def test_without_a_gpu_or_a_cpu_build_on_the_index_it_uses_pytorchs_cpu_index(tmp_path):
    for build in ("default", "none"):  # PyPI's build of the pin (CUDA on Linux), or nothing
        status, said = setup(tmp_path / build, gpu=None, build=build)
        assert status == 0, said
        torch, install = commands(said)[-2:]
        assert torch.endswith(f"torch=={PIN} {CPU_INDEX}")
        assert install.endswith("-c constraints-cpu.txt -e .[all]")


def test_with_a_gpu_the_default_build_and_the_override(tmp_path):
    gpu = "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-0)"
    status, said = setup(tmp_path, gpu=gpu, build="cpu")
    assert status == 0, said
    assert f"PyPI's default build, CUDA on Linux (nvidia-smi lists {gpu})" in said
    *_, install = commands(said)
    assert install.endswith("install --quiet --disable-pip-version-check -e .[all]")
    assert "constraints-cpu.txt" not in install and CPU_INDEX not in said

    status, said = setup(tmp_path / "forced", gpu=gpu, build="default", PERMAKEY_TORCH="cpu")
    assert status == 0 and "(PERMAKEY_TORCH=cpu)" in said
    assert commands(said)[-2].endswith(f"torch=={PIN} {CPU_INDEX}")

    status, said = setup(tmp_path / "none", gpu="No devices were found", build="cpu")
    assert "no NVIDIA GPU: nvidia-smi lists none" in said

    status, said = setup(tmp_path / "any", gpu=None, build="cpu", PERMAKEY_TORCH="any")
    assert status == 0 and "whatever pip picks" in said
    assert "constraints-cpu.txt" not in commands(said)[-1]


@pytest.mark.parametrize("value", ["gpu", "CPU"])
def test_an_unknown_choice_is_refused(tmp_path, value):
    status, said = setup(tmp_path, gpu=None, build="cpu", PERMAKEY_TORCH=value)
    assert status == 2 and f"PERMAKEY_TORCH={value}: choose cpu, cuda or any" in said
