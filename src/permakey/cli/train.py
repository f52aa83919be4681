"""`permakey train METHOD`: train PermaKey or Transporter on a dataset into a run folder.

Every field of the method's training config (`permakey.training.config`) is an option whose
help is the field's docstring; ``--preset`` picks the values of the options not given. Torch
is imported only when a command runs, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import typing
from dataclasses import fields
from typing import Any

from permakey.errors import UserError
from permakey.training import METHOD_NAMES
from permakey.training.config import (
    DECAYS,
    DEVICES,
    NOISE_KINDS,
    PRECISIONS,
    PRESETS,
    TRACKERS,
    TrainConfig,
    field_docs,
)

CHOICES = {
    "noise": NOISE_KINDS, "lr_decay": DECAYS, "precision": PRECISIONS, "device": DEVICES,
    "track": TRACKERS,
}  # fmt: skip
METAVARS = {
    "data": "DIR", "time_budget": "MIN", "checkpoint_minutes": "MIN",
    "noise_colour": ("R", "G", "B"), "noise_share": "P", "snapshot_steps": "STEP",
}  # fmt: skip
DESCRIPTIONS = {
    "permakey": "Train PermaKey (VAE, local spatial prediction networks, PointNet) on the frames "
    "of a dataset.",
    "transporter": "Train the Transporter baseline on frame pairs of a dataset's episodes.",
}
EPILOG = (
    "Start a run with --data DIR --out RUN (or from another run's configuration: --config "
    "RUN --out NEW, options on top); continue a stopped or interrupted one with --resume "
    "RUN (only --epochs, --time-budget, --max-steps, --device, --workers, --in-memory, "
    "--progress, --checkpoint-every, --checkpoint-minutes, --track and --snapshot-steps may "
    "change). --overwrite "
    "replaces only a run folder, never other files; one process at a time writes a run folder. "
    "Multi-GPU / multi-node: torchrun --nproc_per_node N -m permakey "
    "train ... (the batch size is the total over all processes)."
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a keypoint model (PermaKey or Transporter) on a dataset",
        description="Train a keypoint model into a run folder (weights, config, metrics, "
        "TensorBoard events, resumable state).",
    )
    methods = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for kind in METHOD_NAMES:
        presets = PRESETS[kind]
        sub = methods.add_parser(
            kind, help=DESCRIPTIONS[kind], description=DESCRIPTIONS[kind], epilog=EPILOG
        )
        run_group = sub.add_argument_group("run folder")
        run_group.add_argument("--out", metavar="RUN", help="run folder to create")
        run_group.add_argument(
            "--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint"
        )
        run_group.add_argument(
            "--overwrite",
            action="store_true",
            help="replace an existing run folder at --out (only a run folder or an empty "
            "folder: never other files, nor the dataset)",
        )
        run_group.add_argument(
            "--config",
            metavar="FILE|RUN",
            help="start from a saved configuration instead of a preset: a JSON file with "
            '"train" and "model" objects, or a run folder (its run.json); every option given '
            "here goes on top (the dataset too: --data defaults to the configuration's); "
            "--preset and --model-preset do not go with it. The new run's run.json records "
            'it as "config_source"',
        )
        model_group = sub.add_argument_group("model")
        model_group.add_argument(
            "--preset",
            choices=list(presets),
            help="training preset, and the model preset that goes with it (default: paper)",
        )
        model_group.add_argument(
            "--model-preset",
            metavar="NAME",
            help="model architecture preset, if not the one of --preset (see the models' PRESETS)",
        )
        model_group.add_argument(
            "--num-keypoints", type=int, metavar="K", help="number of keypoints K"
        )
        model_group.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="set a field of the model config, VALUE in JSON (e.g. --model "
            "'lsp_hidden=[128, 64]'); repeatable",
        )
        add_config_arguments(sub.add_argument_group("training"), kind)
        sub.set_defaults(func=run, kind=kind)


def _field_type(annotation: Any) -> tuple[Any, int | str | None]:
    """(element type, nargs) of a config field's annotation: Optional and tuples unwrapped."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return args[0], "+" if args[-1] is Ellipsis else len(args)
    if args:  # X | None
        return args[0], None
    return annotation, None


def add_config_arguments(parser, kind: str) -> None:
    """Adds one option per field of method ``kind``'s training config.

    Options default to "not given" so that presets fill them and a resumed run can tell
    which ones the user changed.
    """
    presets = PRESETS[kind]
    cls = type(presets["paper"])
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in fields(cls):
        kind_type, nargs = _field_type(hints[f.name])
        values = {name: getattr(cfg, f.name) for name, cfg in presets.items()}
        shown = {name: "unset" if v is None else v for name, v in values.items()}
        if f.name == "data":
            default = " (required)"
        elif len(set(map(str, shown.values()))) == 1:
            default = f" (default: {shown['paper']})"
        else:
            default = " (" + ", ".join(f"{k}: {v}" for k, v in shown.items()) + ")"
        option = "--" + f.name.replace("_", "-")
        common = {"default": argparse.SUPPRESS, "help": docs.get(f.name, "") + default}
        if kind_type is bool:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, **common)
        else:
            parser.add_argument(
                option,
                type=kind_type,
                nargs=nargs,
                choices=CHOICES.get(f.name),
                metavar=METAVARS.get(f.name, None if f.name in CHOICES else f.name.upper()),
                **common,
            )


def _model_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--model {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text  # a bare string, e.g. --model lsp_hidden=...
    return out


def _given(args: argparse.Namespace, cls: type[TrainConfig]) -> dict[str, Any]:
    """The config fields given on the command line."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    if "noise_colour" in given:
        given["noise_colour"] = tuple(given["noise_colour"])
    return given


def run(args: argparse.Namespace) -> int:
    from permakey.training import get_method
    from permakey.training.start import fixed_options, new_run, result_line, resume_run

    given = _given(args, get_method(args.kind).config_class)
    if args.resume:
        model_options = [
            name
            for name, value in (
                ("--preset", args.preset),
                ("--model-preset", args.model_preset),
                ("--num-keypoints", args.num_keypoints),
                ("--model", args.model),
                ("--config", args.config),
                ("--out", args.out),
                ("--overwrite", args.overwrite or None),
            )
            if value
        ]
        fixed = [f"--{name.replace('_', '-')}" for name in fixed_options(given)] + model_options
        if fixed:
            raise UserError(
                f"{', '.join(fixed)} cannot be given with --resume: a run keeps its settings "
                "(start a new run with --out instead)"
            )
        result = resume_run(args.kind, args.resume, **given)
    else:
        if not args.out:
            raise UserError("--out RUN is required (or --resume RUN to continue a run)")
        if args.config and (args.preset or args.model_preset):
            raise UserError(
                "--preset and --model-preset cannot be given with --config: the configuration "
                "replaces the presets (change single fields with options on top)"
            )
        if "data" not in given and not args.config:
            raise UserError("--data DIR is required")
        result = new_run(
            args.kind,
            given.pop("data", None),
            args.out,
            preset=args.preset or "paper",
            model_preset=args.model_preset or None,
            num_keypoints=args.num_keypoints,
            model=_model_overrides(args.model),
            overwrite=args.overwrite,
            config=args.config,
            **given,
        )
    if int(os.environ.get("RANK", "0")) == 0:
        print(result_line(args.kind, result))
    return 130 if result.status == "interrupted" else 0
