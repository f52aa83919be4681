"""The paper's experiments and ablations as data, and the scales they run at.

An `Experiment` is a list of `Variant`s: one trained model each (method, game, K, seed, Noisy
Atari kind, model and training overrides, the dataset's resize, and optionally the points of a
training curve), independent of the scale. A `Scale` says how much data and training every run
gets. `permakey.experiments.plan` turns the two into runs, datasets and
evaluation groups, and the steps (library calls) that execute them.

Keypoints per game (method.md, from the authors' code): MsPacman 7, Seaquest 10, BattleZone 8,
Frostbite 20, SpaceInvaders 25, Enduro 10. MontezumaRevenge has no count there; 10 is this
project's choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from permakey.models.registry import METHODS

KEYPOINTS = {
    "Frostbite": 20,
    "SpaceInvaders": 25,
    "Enduro": 10,
    "BattleZone": 8,
    "MsPacman": 7,
    "Seaquest": 10,
    "MontezumaRevenge": 10,
}
# Random actions held for 4 steps: the player travels further than under uniform random
# actions, so the frames show more of each game (the demo's policy too). The paper's
# pre-trained agents (Atari Model Zoo) are not available offline.
POLICY = "random-hold:4"
# Every dataset comes from environment seed 0; the `seeds` experiment varies training seeds
# on the same frames, which is what its seed stability compares.
DATA_SEED = 0


@dataclass(frozen=True)
class Scale:
    """How much data and training every run of an experiment gets.

    Attributes:
        name: "paper", "cpu" or "tiny" (tests).
        train_frames: training frames collected per dataset.
        eval_frames: validation and test frames collected per dataset, each.
        preset: training preset of `permakey train` (and the model preset that goes with it).
        epochs: maximum epochs (early stopping may end a run sooner).
        max_steps: optimiser steps per run for each method ("permakey", "transporter"), or
            None for no limit. A step budget, not a time budget: a run takes the same steps
            whatever the machine's load, the number of workers or the device (its numbers
            are bit-identical on the same device and number of torch threads).
        in_memory: read the splits into memory (small datasets; no DataLoader workers).
        show_frames: frames per figure of `permakey show`.
        episode_frames: frames of the GIF of `permakey show`.
        overhead_min: minutes per run besides training (start, final validation, checkpoint),
            for time estimates.
        weights: the weights evaluated and drawn: "best" (lowest validation loss, the paper's
            early-stopping protocol) or "last" (the end of a short step budget, whose
            validation loss is too young to choose by).
    """

    name: str
    train_frames: int
    eval_frames: int
    preset: str
    epochs: int
    max_steps: Mapping[str, int] | None = None
    in_memory: bool = False
    show_frames: int = 4
    episode_frames: int = 48
    overhead_min: float = 1.0
    weights: str = "best"


SCALES = {
    # The paper: 85,000 / 5,000 / 5,000 frames, up to 100 epochs with early stopping, the
    # paper's hyper-parameters. Needs a GPU (hours per run there; weeks on a 2-core CPU).
    "paper": Scale("paper", 85_000, 5_000, "paper", epochs=100),
    # This 2-core machine: 5,000 training frames (collected in about 15 s, 100 MB in memory, more
    # than the runs consume) and 500 / 500 validation / test frames (a few episodes each:
    # enough for the metrics, validated and evaluated in seconds); the cpu presets (a 5x
    # cheaper PermaKey, per-module learning rates) and a few minutes of float32 training each
    # here: 360 PermaKey steps of 32 images (about 6.5 minutes; the 10-minute curve runs of
    # RESULTS.md reached 542-551 steps) and 170 Transporter steps of 64 pairs (about 4
    # minutes; the demo's 4 Transporter minutes reached 169), about the budget at which
    # cpu-findings.md saw keypoints settle on objects.
    "cpu": Scale(
        "cpu",
        5_000,
        500,
        "cpu",
        epochs=100,
        max_steps={"permakey": 360, "transporter": 170},
        in_memory=True,
        weights="last",
    ),
    # Tests only (hidden from --help): a few hundred frames and two optimiser steps.
    "tiny": Scale(
        "tiny",
        300,
        60,
        "cpu",
        epochs=1,
        max_steps={"permakey": 2, "transporter": 2},
        in_memory=True,
        show_frames=2,
        episode_frames=4,
        overhead_min=0.1,
        weights="last",
    ),
}
PUBLIC_SCALES = ("paper", "cpu")


def step_budget(scale: Scale, method: str) -> int:
    """The optimiser steps of one unit of training of ``method`` at ``scale``: the scale's step
    budget, or the `cpu` scale's where the scale has none (paper), so that a curve's points
    are the same step counts at every public scale."""
    budgets = scale.max_steps if scale.max_steps is not None else SCALES["cpu"].max_steps
    return budgets[method]


# How the collected frames are resized unless a variant says otherwise
# (`permakey.data.frames.DEFAULT_RESIZE`; not imported: it would import torch here).
DEFAULT_RESIZE = "area"


@dataclass(frozen=True)
class Variant:
    """One trained model of an experiment, whatever the scale.

    Attributes:
        name: the run's folder under the experiment's ``runs/`` (may contain one "/"); its
            last part names the run's column in tables and figures.
        method: "permakey" or "transporter".
        game: canonical ALE game name.
        num_keypoints: K.
        seed: training seed (the data always come from `DATA_SEED`).
        noise: Noisy Atari bars for training and evaluation: none, horizontal, vertical, both.
        model: model-config overrides, (field, JSON-ready value) pairs (`new_run`'s ``model``).
        preset: training preset (with its model preset) instead of the scale's; None: the
            scale's.
        train: training-option overrides, (field, JSON-ready value) pairs, e.g.
            ("noise_width", 3); the bar options among them (width, colour, random colour,
            before the resize) also paint the evaluation's bars.
        resize: how the dataset's frames are resized from the raw ALE frames ("area",
            "nearest" or "authors"); one dataset per game and resize.
        curve: multiples of the step budget (`step_budget`) at which the run's weights are
            kept (snapshots) and evaluated; the run trains to the largest, without early
            stopping. Empty: trained to the scale's budget and evaluated at its end.
    """

    name: str
    method: str
    game: str
    num_keypoints: int
    seed: int = 0
    noise: str = "none"
    model: tuple[tuple[str, Any], ...] = ()
    preset: str | None = None
    train: tuple[tuple[str, Any], ...] = ()
    resize: str = DEFAULT_RESIZE
    curve: tuple[int, ...] = ()


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its variants and what it reproduces.

    Attributes:
        name: the name given to `permakey reproduce`.
        reproduces: the figure or claim of the paper it measures.
        variants: the trained models; runs on the same dataset, with the same bars and
            weights, are evaluated together.
        show_seeds: draw the runs as seeds of one setting (`permakey show --seeds`, Figure 3).
        clean_too: evaluate runs trained with bars on clean test frames too, and gather each
            game's runs into one summary table (distractor share, F1 on noisy and clean
            frames).
    """

    name: str
    reproduces: str
    variants: tuple[Variant, ...]
    show_seeds: bool = False
    clean_too: bool = False


def _versus(game: str, noise: str = "none", folder: str | None = None) -> tuple[Variant, ...]:
    """PermaKey and Transporter on one game, in ``folder``/{permakey,transporter}."""
    folder = folder or game
    return tuple(Variant(f"{folder}/{m}", m, game, KEYPOINTS[game], noise=noise) for m in METHODS)


ATARI_GAMES = ("Frostbite", "SpaceInvaders", "Enduro", "BattleZone", "MsPacman", "Seaquest")
NOISY_GAMES = ("MsPacman", "MontezumaRevenge")
NOISE_KINDS = ("horizontal", "vertical", "both")
SEEDS = (0, 1, 2, 3, 4)
NUM_KEYPOINTS = (15, 20, 25)
# LSP layer sets of Figure 6. Layers 2 and 3 are 21 x 21, which the paper's cell size p = 2
# does not divide; p = 3 divides every layer (84, 42, 21), so the whole ablation uses it and
# only the layers differ between its runs.
LAYERS = ((0,), (0, 1), (2, 3), (0, 1, 2, 3))
LAYERS_PATCH_SIZE = 3
# (first-layer kernel, first-layer stride) of the encoder. A second stride-2 block must
# follow a stride-2 first layer at 1 so that LSP layers 0 and 1 stay even (42 x 42) and the
# image stays divisible by the decoder's upsampling (84 / 4): strides (2, 1, 2, 1). The
# PointNet keeps the paper's stack, so only the feature embedding changes.
KERNELS = ((4, 1), (6, 1), (8, 1), (4, 2), (8, 2))
PAPER_KERNELS = (4, 3, 3, 3)
PAPER_STRIDES = (1, 2, 2, 1)


# The Noisy Atari curve (issue 17): the best CPU preset, the paper's (as far as a CPU allows)
# and Transporter, bars "both", evaluated after 1, 2, 4 and 8 times the `cpu` scale's step
# budget. The learning-rate schedules are staircases counted from step 0 (decays every 10,000
# PermaKey or 30,000 Transporter steps, none within 8 budgets), so one run with snapshots
# gives the weights that separate runs of each budget would end with. The paper preset trains
# about 6x slower than cpu-track on the 2-core machine: its curve stops at 4 budgets.
CURVE_GAMES = ("MsPacman", "MontezumaRevenge", "SpaceInvaders")
CURVE = (1, 2, 4, 8)
PAPER_CURVE = (1, 2, 4)


def _curve_variants(game: str) -> tuple[Variant, ...]:
    k = KEYPOINTS[game]
    return (
        Variant(f"{game}/permakey-cpu-track", "permakey", game, k, noise="both",
                preset="cpu-track", curve=CURVE),
        Variant(f"{game}/permakey-paper", "permakey", game, k, noise="both", preset="paper",
                curve=PAPER_CURVE),
        Variant(f"{game}/transporter", "transporter", game, k, noise="both", curve=CURVE),
    )  # fmt: skip


# The Noisy Atari mechanism (issue 17): PermaKey (cpu-track) on MsPacman with bars "both" at
# the scale's budget, changing one detail at a time against "base" (area resize, bars after
# it, 5 px, the paper's purple, every frame noisy); "base-seed1" shows the spread of seeds.
MECHANISM_GAME = "MsPacman"
SECOND_COLOUR = (0, 255, 0)  # green: far from the paper's purple and from MsPacman's palette


def _mechanism(name: str, resize: str = DEFAULT_RESIZE, seed: int = 0, **train: Any) -> Variant:
    game = MECHANISM_GAME
    return Variant(name, "permakey", game, KEYPOINTS[game], seed=seed, noise="both",
                   preset="cpu-track", train=tuple(train.items()), resize=resize)  # fmt: skip


MECHANISM = (
    _mechanism("base"),
    _mechanism("base-seed1", seed=1),
    _mechanism("resize-nearest", resize="nearest"),
    _mechanism("resize-authors", resize="authors"),
    _mechanism("before-resize", noise_before_resize=True),
    _mechanism("width3", noise_width=3),
    _mechanism("width8", noise_width=8),
    _mechanism("colour-green", noise_colour=list(SECOND_COLOUR)),
    _mechanism("random-colour", noise_random_colour=True),
    _mechanism("share0.5", noise_share=0.5),
)


def _kernel_variant(kernel: int, stride: int) -> Variant:
    strides = PAPER_STRIDES if stride == 1 else (2, 1, 2, 1)
    model = (
        ("encoder_kernels", [kernel, *PAPER_KERNELS[1:]]),
        ("encoder_strides", list(strides)),
        ("pointnet_kernels", list(PAPER_KERNELS)),
        ("pointnet_strides", list(PAPER_STRIDES)),
    )
    return Variant(f"k{kernel}s{stride}", "permakey", "SpaceInvaders", 25, model=model)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "atari",
            "Figure 2 and the claim that PermaKey keypoints land on objects: PermaKey vs "
            "Transporter on six games",
            tuple(v for game in ATARI_GAMES for v in _versus(game)),
        ),
        Experiment(
            "noisy",
            "Noisy Atari: PermaKey ignores the predictable bars, Transporter tracks them",
            tuple(
                v
                for game in NOISY_GAMES
                for noise in NOISE_KINDS
                for v in _versus(game, noise, f"{game}-{noise}")
            ),
        ),
        Experiment(
            "seeds",
            "Figure 3: PermaKey on Enduro with 5 seeds, and their stability",
            tuple(
                Variant(f"seed{s}", "permakey", "Enduro", KEYPOINTS["Enduro"], seed=s)
                for s in SEEDS
            ),
            show_seeds=True,
        ),
        Experiment(
            "num-keypoints",
            "Figure 5: Frostbite with K = 15, 20, 25 (extra keypoints drift to the borders)",
            tuple(Variant(f"K{k}", "permakey", "Frostbite", k) for k in NUM_KEYPOINTS),
        ),
        Experiment(
            "layers",
            "Figure 6: SpaceInvaders, K = 25, LSP layers (0), (0, 1), (2, 3), (0, 1, 2, 3)",
            tuple(
                Variant(
                    "layers" + "".join(map(str, layers)),
                    "permakey",
                    "SpaceInvaders",
                    25,
                    model=(("lsp_layers", list(layers)), ("patch_size", LAYERS_PATCH_SIZE)),
                )
                for layers in LAYERS
            ),
        ),
        Experiment(
            "kernel-size",
            "Encoder first-layer kernel 4 vs larger kernels and stride 2 (SpaceInvaders, K = 25)",
            tuple(_kernel_variant(k, s) for k, s in KERNELS),
        ),
        Experiment(
            "noisy-curve",
            "Noisy Atari against training steps: distractor share and F1 on noisy and clean "
            "frames of PermaKey (cpu-track, paper) and Transporter after 1, 2, 4, 8 step "
            "budgets (paper: 1, 2, 4), bars both, MsPacman, MontezumaRevenge, SpaceInvaders",
            tuple(v for game in CURVE_GAMES for v in _curve_variants(game)),
            clean_too=True,
        ),
        Experiment(
            "noisy-mechanism",
            "Noisy Atari details one at a time (PermaKey cpu-track, MsPacman, bars both): "
            "resize area / nearest / the authors', bars before the resize, width 3 / 5 / 8, "
            "another colour, a random colour per frame, half the frames noisy",
            MECHANISM,
            clean_too=True,
        ),
    )
}
