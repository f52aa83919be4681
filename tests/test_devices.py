"""`permakey.devices.reuse_freed_memory`: freed memory is reused instead of faulted in again."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from permakey import devices
from permakey.cli import main as cli_main

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)

# Twelve rounds of what a training step does with memory: large tensors of several sizes
# allocated and filled, then all freed. Prints the minor page faults of each round.
SIZES_MIB = (48, 120, 256, 64, 200)
PROBE = f"""
import json, resource, torch
from permakey import devices
applied = devices.reuse_freed_memory()
def one_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [torch.empty(mib * 2**18).fill_(1.0) for mib in {SIZES_MIB}]  # float32
    del tensors
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({{"applied": applied, "faults": [one_round() for _ in range(12)]}}))
"""
PAGES = sum(SIZES_MIB) * 2**20 // 4096  # 4 KiB pages touched per round


def _probe(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != devices.SYSTEM_MALLOC_ENV}
    if env_value is not None:
        env[devices.SYSTEM_MALLOC_ENV] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


@glibc_only
def test_freed_memory_is_reused_without_page_faults():
    kept = _probe(None)
    assert kept["applied"] is True
    assert kept["faults"][0] > PAGES // 2, kept  # the first round maps its memory
    # Later rounds reuse it (where glibc places a block varies, so a round may still fault in
    # part of one block while the heap settles; the median round faults none).
    assert statistics.median(kept["faults"][4:]) < PAGES // 10, kept
    system = _probe("1")
    assert system["applied"] is False
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[always]" in thp.read_text():
        pytest.skip("transparent huge pages for every mapping: few faults either way")
    assert min(system["faults"][4:]) > PAGES * 9 // 10, system  # every round maps afresh


def test_the_command_keeps_freed_memory(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(devices, "reuse_freed_memory", lambda: calls.append(1) or True)
    cli_main.main(["datasets", str(tmp_path)])
    assert calls == [1]
