"""Pretrained keypoint models that ship inside the package: ``permakey.load("pretrained:Pong")``.

Each model is a folder ``permakey/pretrained_models/<Game>/`` with

- ``model.safetensors``: float16 weights of only what inference uses (the model's
  ``inference_prefixes``: for PermaKey the encoder blocks that feed the LSP networks, the LSP
  networks and the PointNet; no VAE decoder), loaded back as float32;
- ``record.json``: what the model is and how it was made: kind, model config, frames, the
  training config, steps, the dataset recipe, code version, the commands that built it, and its
  quality on held-out test episodes (`permakey pretrained` prints it; MODELS.md is the table).

`permakey.experiments.pretrained` builds and exports them. Nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from permakey.errors import UserError
from permakey.fileio import atomic_dir, write_bytes_atomic, write_json_atomic
from permakey.models.registry import model_kind
from permakey.runs.folder import FrameSpec

PREFIX = "pretrained:"
FOLDER = Path(__file__).resolve().parents[1] / "pretrained_models"
WEIGHTS = "model.safetensors"
RECORD = "record.json"
FORMAT = "permakey-pretrained"
FORMAT_VERSION = 1


def is_pretrained(name: Any) -> bool:
    """Whether ``name`` is a ``pretrained:GAME`` name (a str, not a path)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def available(folder: Path = FOLDER) -> list[str]:
    """The games with a shipped model, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / RECORD).is_file())


def model_folder(name: str, folder: Path = FOLDER) -> Path:
    """The folder of ``pretrained:GAME`` (or of GAME); the game's spelling is forgiving.

    Raises:
        UserError: no shipped model of that game (the message lists the games).
    """
    game = name[len(PREFIX) :] if is_pretrained(name) else name
    games = available(folder)
    by_key = {g.lower().replace("_", "").replace("-", ""): g for g in games}
    found = by_key.get(game.lower().replace("_", "").replace("-", ""))
    if found is None:
        listed = ", ".join(games) if games else "none are installed"
        raise UserError(f"no pretrained model {name!r}; pretrained models: {listed}")
    return folder / found


def read_record(path: Path) -> dict[str, Any]:
    """A model's record.json.

    Raises:
        UserError: missing, unreadable or not a pretrained model's record.
    """
    import json

    file = path / RECORD
    try:
        record = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{file} is unreadable ({err}); reinstall permakey") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UserError(f"{file} is not a permakey pretrained model's record")
    return record


def inference_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and buffers that inference uses, as contiguous float16 CPU tensors
    (integer buffers such as BatchNorm's counters keep their dtype)."""
    prefixes = model.inference_prefixes
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith(prefixes):
            value = value.detach().to("cpu")
            state[key] = (value.half() if value.is_floating_point() else value).contiguous()
    return state


def export(
    model: torch.nn.Module,
    kind: str,
    frames: FrameSpec,
    out: Path,
    record: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Writes a trained model as a pretrained model folder ``out`` (atomically).

    Args:
        model: the trained model (a `permakey.keypoints.KeypointModel`).
        kind: its kind (`permakey.models.registry`).
        frames: the frames it takes.
        out: the folder to write, ``.../pretrained_models/<Game>``.
        record: what `read_record` will return, besides format, kind, model config, frames
            and the weights' sha256, which are added here.
        overwrite: replace an existing folder.

    Returns:
        ``out``.
    """
    state = inference_state(model)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        # Written by our atomic writer, not safetensors' own, for an ordinary file mode.
        write_bytes_atomic(tmp / WEIGHTS, save(state, metadata={"format": FORMAT}))
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **record,
            "kind": kind,
            "model": model.config.to_dict(),
            "frames": frames.to_json(),
            "weights_sha256": hashlib.sha256((tmp / WEIGHTS).read_bytes()).hexdigest(),
        }
        write_json_atomic(tmp / RECORD, full)
    return out


def read_pretrained(
    name: str, folder: Path = FOLDER
) -> tuple[torch.nn.Module, FrameSpec, dict[str, Any], Path, str]:
    """A shipped model, ``pretrained:GAME``, read from the package (no network).

    Returns:
        (the model, float32 on the CPU, for inference only: its VAE decoder, or Transporter's
        RefineNet, is not shipped; its frames; run.json-like info (kind, model, train); the
        weights file; the name ``pretrained:<Game>``). `permakey.runs.load` wraps them in a
        `TrainedModel`.

    Raises:
        UserError: an unknown game, or a damaged model file (named).
    """
    path = model_folder(name, folder)
    record = read_record(path)
    try:
        kind = model_kind(record["kind"])
        config = kind.config_from_dict(record["model"])
        frames = FrameSpec.from_json(record["frames"])
    except (KeyError, ValueError, TypeError) as err:
        raise UserError(f"{path / RECORD} is corrupted ({err}); reinstall permakey") from None
    model = kind.build(config)
    weights = path / WEIGHTS
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise UserError(f"{weights} is corrupted ({err}); reinstall permakey") from None
    expected = inference_state(model)
    if set(tensors) != set(expected) or any(
        tensors[k].shape != expected[k].shape for k in expected
    ):
        raise UserError(f"{weights} does not fit the model of {path / RECORD}")
    full = model.state_dict()
    model.load_state_dict({**full, **{k: v.to(full[k].dtype) for k, v in tensors.items()}})
    info = {"kind": record["kind"], "model": record["model"], "train": record.get("train", {})}
    return model, frames, info, weights, f"{PREFIX}{path.name}"


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _kept(counts: dict[str, int] | None) -> str:
    return "—" if not counts else f"{counts['kept']} of {counts['tracks']}"


def catalogue(records: list[dict[str, Any]]) -> str:
    """The shipped models as a markdown table (what `permakey pretrained` prints and MODELS.md
    holds): what each is, how it was made, and its F1@2 on held-out test episodes next to its
    static template, its error-map peaks and random points, the object categories it finds
    clearly more often than its template (`permakey.evaluation.judgement`), and whether its
    keypoints keep their objects (mean purity, and object tracks kept, at 2 px)."""
    header = [
        "model", "method (preset)", "K", "steps", "frames seen", "dataset", "code",
        "F1@2", "template", "peaks", "random", "follows", "purity", "objects kept",
    ]  # fmt: skip
    rows = [header, ["---"] * len(header)]
    for r in records:
        q = r.get("quality", {})
        data = r.get("dataset", {})
        code = r.get("code") or {}
        rows.append([
            f"pretrained:{r['game']}", f"{r['method']} ({r.get('preset')})",
            str(r.get("num_keypoints")), str(r.get("steps")), str(r.get("frames_seen")),
            f"seed {data.get('seed')}, {data.get('policy')}, {data.get('frames')} frames",
            f"{code.get('version')} {str(code.get('git_commit') or '')[:8]}".strip(),
            _number(q.get("f1@2")), _number(q.get("template_f1@2")),
            _number(q.get("peaks_f1@2")), _number(q.get("random_f1@2")),
            ", ".join(q.get("follows", [])) or "none clearly",
            _number(q.get("mean_purity@2")), _kept(q.get("objects_kept@2")),
        ])  # fmt: skip
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
