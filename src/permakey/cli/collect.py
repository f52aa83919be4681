"""`permakey collect`: roll a policy out in an Atari game and store a dataset."""

from __future__ import annotations

import argparse
import sys
import warnings

from permakey.data.objects import GroundTruthWarning
from permakey.data.policies import POLICY_HELP, is_sb3, parse_policy
from permakey.errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="collect a dataset of Atari frames with object ground truth",
        description=(
            "Play GAME (ALE/<Game>-v5: frame skip 4, sticky actions 0.25) with a policy and "
            "write RGB frames resized to 84 x 84, episode and step indices, actions, rewards "
            "and OCAtari's objects of every frame to DIR. Splits are by episode (test, then "
            "val, then train are filled). The folder appears only once complete."
        ),
    )
    parser.add_argument(
        "game", metavar="GAME", help="Atari game name, any case (e.g. spaceinvaders, MsPacman)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset folder to create")
    for flag, default, split in (
        ("--frames", 85_000, "training"),
        ("--val-frames", 5_000, "validation"),
        ("--test-frames", 5_000, "test"),
    ):
        parser.add_argument(
            flag,
            type=int,
            default=default,
            metavar="N",
            help=f"{split} frames (default: {default})",
        )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the environment and policy; same seed, same bytes (default: 0)",
    )
    parser.add_argument(
        "--policy",
        default="random",
        metavar="SPEC",
        help=f"behaviour policy: {POLICY_HELP} (default: random)",
    )
    parser.add_argument(
        "--policy-keypoints",
        metavar="RUN",
        help="for an sb3 agent trained on keypoint observations (examples/train_agent.py): the "
        "run folder of the keypoint model it was trained on; frames go through that model as in "
        "permakey.envs.KeypointObservation before the agent acts",
    )
    parser.add_argument(
        "--resize",
        choices=("area", "nearest", "authors"),  # permakey.data.frames.RESIZE_METHODS
        default="area",
        help="210x160 -> 84x84 resampling: area keeps one-pixel objects as faint blobs, nearest "
        "drops most of them, authors is the authors' code's (a Gaussian blur, then nearest) "
        "(default: area)",
    )
    parser.add_argument("--raw", action="store_true", help="also store the raw 210 x 160 frames")
    parser.add_argument(
        "--no-objects",
        action="store_true",
        help="skip OCAtari object ground truth (no 'objects' extra needed)",
    )
    parser.add_argument(
        "--require-objects",
        action="store_true",
        help="fail, writing nothing, if OCAtari cannot give the objects (instead of warning "
        "and collecting without them)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset at DIR (only once the new one is complete)",
    )
    parser.add_argument(
        "--info",
        action="store_true",
        help="print the dataset's summary afterwards (as `permakey datasets DIR`)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"permakey: warning: {message}", file=sys.stderr if file is None else file)


def run(args: argparse.Namespace) -> int:
    from permakey.data.collect import collect
    from permakey.data.summary import format_summary, summarize

    parse_policy(args.policy)  # a bad spec fails before the emulator starts
    if args.require_objects and args.no_objects:
        raise UserError("--require-objects and --no-objects contradict each other")
    policy = args.policy
    if args.policy_keypoints:
        if not is_sb3(policy):
            raise UserError("--policy-keypoints is only for sb3:PATH policies")
        policy = _keypoint_agent(args)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        if args.require_objects:
            warnings.simplefilter("error", GroundTruthWarning)
        try:
            out = collect(
                args.game,
                args.out,
                frames=args.frames,
                val_frames=args.val_frames,
                test_frames=args.test_frames,
                seed=args.seed,
                policy=policy,
                objects=not args.no_objects,
                resize=args.resize,
                keep_raw=args.raw,
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
        except GroundTruthWarning as err:
            raise UserError(f"{err} (--require-objects: nothing written)") from None
    if args.info:
        print(format_summary(summarize(out)))
    return 0


def _keypoint_agent(args: argparse.Namespace):
    """The sb3 agent of ``--policy`` acting on ``--policy-keypoints`` observations.

    An agent on raw frames needs no keypoint model: `collect` builds it from the spec string,
    which then names it in meta.json as it is.
    """
    import ale_py
    import gymnasium as gym

    from permakey.data.games import env_id, resolve_game
    from permakey.envs.agents import keypoint_agent_policy

    gym.register_envs(ale_py)
    env = gym.make(env_id(resolve_game(args.game)), full_action_space=False)
    n_actions = int(env.action_space.n)
    env.close()
    return keypoint_agent_policy(args.policy, n_actions, args.policy_keypoints, seed=args.seed)
