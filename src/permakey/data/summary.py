"""A dataset at a glance: game, frames and episodes per split, objects per frame, size."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from permakey.data.store import SPLITS, open_split, read_meta
from permakey.errors import UserError


def summarize(path: str | os.PathLike) -> dict[str, Any]:
    """Summarises a dataset folder.

    Args:
        path: the dataset folder.

    Returns:
        A dict with game, env_id, seed, policy, resize, has_objects, ``object_ids`` (how the
        objects' identities were made, `permakey.data.identity`; None for a dataset
        collected without them), ``splits`` (split ->
        frames and episodes), ``objects_per_frame`` (category -> mean count per frame over
        all splits, largest first) and ``size_bytes`` (all files of the folder).

    Raises:
        UserError: not a readable dataset (names the file).
    """
    path = Path(path)
    meta = read_meta(path)
    splits = {}
    counts = np.zeros(len(meta["categories"]), dtype=np.int64)
    total = 0
    for name in SPLITS:
        with open_split(path, name) as split:
            splits[name] = {"frames": len(split), "episodes": int(len(np.unique(split.episode)))}
            _, category, _ = split.object_table()
            counts += np.bincount(category, minlength=len(counts))
            total += len(split)
    per_frame = {
        c: float(n) / max(total, 1) for c, n in zip(meta["categories"], counts, strict=True)
    }
    return {
        "path": str(path),
        "game": meta["game"],
        "env_id": meta["env_id"],
        "seed": meta["seed"],
        "policy": meta["policy"],
        "resize": meta["resize"],
        "has_objects": meta["has_objects"],
        "object_ids": (meta.get("object_ids") or {}).get("method"),
        "splits": splits,
        "objects_per_frame": dict(sorted(per_frame.items(), key=lambda kv: -kv[1])),
        "size_bytes": sum(f.stat().st_size for f in path.iterdir() if f.is_file()),
    }


def verify(path: str | os.PathLike) -> list[str]:
    """Reads every split of a dataset back and checks it against meta.json's sha256.

    Args:
        path: the dataset folder.

    Returns:
        One line per damaged, missing or foreign file (naming it and what to do); empty if
        the dataset is intact.
    """
    try:
        read_meta(path)
    except UserError as err:
        return [str(err)]
    problems = []
    for name in SPLITS:
        try:
            with open_split(path, name) as split:
                problem = split.verify()
        except UserError as err:
            problem = str(err)
        if problem is not None:
            problems.append(problem)
    return problems


_IDENTITIES = {
    "slot": "stored, OCAtari's object slots",
    "linked": "stored, boxes linked between consecutive frames",
    None: "not stored (collected before identities were; evaluation links boxes itself)",
}


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    lines = [
        f"{summary['path']}: {summary['game']} ({summary['env_id']}), seed {summary['seed']}, "
        f"policy {summary['policy']}, resize {summary['resize']}",
    ]
    for name, s in summary["splits"].items():
        lines.append(f"  {name:<5} {s['frames']:>7} frames  {s['episodes']:>4} episodes")
    if summary["has_objects"]:
        parts = [f"{c} {n:.2f}" for c, n in summary["objects_per_frame"].items()]
        lines.append("  objects per frame: " + (", ".join(parts) or "none seen"))
        lines.append("  object identities: " + _IDENTITIES.get(summary["object_ids"], "?"))
    else:
        lines.append("  objects per frame: no ground truth")
    lines.append(f"  size on disk: {summary['size_bytes'] / 2**20:.1f} MiB")
    return "\n".join(lines)
