"""What an evaluation found, as typed objects, and the JSON file that holds it.

`permakey.evaluation.evaluate.evaluate_models` returns an `EvaluationResult`: one `Column`
per model and per control, each with its `ColumnMetrics`. Per-radius values are dicts keyed
by the int radius r in pixels (``metrics.f1[2]``). The JSON file keys them by ``str(r)``, as
JSON requires; `to_json` and `from_json` convert at that boundary, and nothing else sees the
string keys.

A dataset without object ground truth has no object metrics: their fields are None,
``EvaluationResult.ground_truth`` is False, and the file (as since format version 1) holds the
string `NO_GROUND_TRUTH` in their place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from permakey.evaluation.categories import CategorySelection

FORMAT = "permakey-evaluation"
FORMAT_VERSION = 1
# What the file says, and the table prints, in place of an object metric without objects.
NO_GROUND_TRUTH = "no ground truth"

PerRadius = dict[int, float | None]  # radius r in pixels -> value (None: nothing to count)


def template_name(model: str) -> str:
    """Name of the column of ``model``'s static template (its mean keypoint positions)."""
    return f"template: {model}"


def peaks_name(model: str) -> str:
    """Name of the column of ``model``'s error-map peaks (models with error maps only)."""
    return f"peaks: {model}"


def random_name(num_keypoints: int) -> str:
    """Name of the column of K random points, shared by the models with K keypoints."""
    return f"random K={num_keypoints}"


def tracker_name(num_keypoints: int) -> str:
    """Name of the column of the perfect object tracker with at most K keypoints."""
    return f"perfect tracker K={num_keypoints}"


def _radii_to_json(values: PerRadius | None) -> dict[str, float | None] | None:
    return None if values is None else {str(r): v for r, v in values.items()}


def _radii_from_json(values: dict[str, Any] | None) -> PerRadius | None:
    return None if values is None else {int(r): v for r, v in values.items()}


def _object_metric(value: Any) -> Any:
    """A file's object metric, None where the file says `NO_GROUND_TRUTH`."""
    return None if value == NO_GROUND_TRUTH else value


@dataclass(frozen=True)
class CategoryScores:
    """Recall of one object category.

    Attributes:
        group: "headline" or "small" (`permakey.evaluation.categories`).
        objects: how many objects of the category the evaluated frames hold.
        recall: per radius, the share of those objects with a keypoint in their box, in [0, 1].
        recall_bound: the best recall K keypoints per frame can reach, in [0, 1].
    """

    group: str
    objects: int
    recall: PerRadius
    recall_bound: float | None

    def to_json(self) -> dict:
        return {
            "group": self.group,
            "objects": self.objects,
            "recall": _radii_to_json(self.recall),
            "recall_bound": self.recall_bound,
        }

    @classmethod
    def from_json(cls, data: dict) -> CategoryScores:
        return cls(
            data["group"], data["objects"], _radii_from_json(data["recall"]), data["recall_bound"]
        )


@dataclass(frozen=True)
class Motion:
    """How much keypoints move (`permakey.evaluation.metrics.motion`).

    Attributes:
        from_mean_px: mean distance of a keypoint from its own mean position, in pixels.
        per_step_px: mean distance a keypoint moves between consecutive frames of an
            episode, in pixels; None without consecutive frames.
    """

    from_mean_px: float
    per_step_px: float | None

    def to_json(self) -> dict:
        return {"from_mean_px": self.from_mean_px, "per_step_px": self.per_step_px}

    @classmethod
    def from_json(cls, data: dict) -> Motion:
        return cls(data["from_mean_px"], data["per_step_px"])


@dataclass(frozen=True)
class TrackCounts:
    """How many object tracks a column keeps, of how many.

    Attributes:
        tracks: object tracks (an object over the frames of its episode where it is seen).
        kept: those on which one keypoint sits in at least `IdentityScores.kept_share` of
            the track's frames.
    """

    tracks: int
    kept: int

    @property
    def share(self) -> float | None:
        """``kept / tracks`` in [0, 1]; None without tracks."""
        return self.kept / self.tracks if self.tracks else None

    def to_json(self) -> dict:
        return {"tracks": self.tracks, "kept": self.kept}

    @classmethod
    def from_json(cls, data: dict) -> TrackCounts:
        return cls(data["tracks"], data["kept"])


@dataclass(frozen=True)
class IdentityScores:
    """Does keypoint k keep its object? Measured on the headline objects' tracks.

    Attributes:
        radius: r in pixels: a keypoint sits on an object inside its box grown by r.
        kept_share: the least share of a track's frames that one keypoint must sit on it
            for the track to be kept.
        purity: per keypoint, the share of its on-object frames spent on its most frequent
            track (in each frame, the nearest object holding it), in (0, 1]; None for a
            keypoint never on an object.
        mean_purity: the mean of ``purity`` over the keypoints ever on an object; None if
            none is.
        kept: all tracks.
        moving: the tracks of moving categories (`CategorySelection.moving`).
        static: the tracks of the other categories.
        per_category: the tracks of each headline category present, by name.
    """

    radius: int
    kept_share: float
    purity: tuple[float | None, ...]
    mean_purity: float | None
    kept: TrackCounts
    moving: TrackCounts
    static: TrackCounts
    per_category: dict[str, TrackCounts]

    def to_json(self) -> dict:
        return {
            "radius": self.radius,
            "kept_share": self.kept_share,
            "purity": list(self.purity),
            "mean_purity": self.mean_purity,
            "kept": self.kept.to_json(),
            "moving": self.moving.to_json(),
            "static": self.static.to_json(),
            "per_category": {n: c.to_json() for n, c in self.per_category.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> IdentityScores:
        return cls(
            radius=data["radius"],
            kept_share=data["kept_share"],
            purity=tuple(data["purity"]),
            mean_purity=data["mean_purity"],
            kept=TrackCounts.from_json(data["kept"]),
            moving=TrackCounts.from_json(data["moving"]),
            static=TrackCounts.from_json(data["static"]),
            per_category={n: TrackCounts.from_json(c) for n, c in data["per_category"].items()},
        )


@dataclass(frozen=True)
class PartShare:
    """One part of the grown Noisy Atari bars (`permakey.evaluation.error_mass.PARTS`).

    Attributes:
        area: the part's share of the frame's area, mean over frames, in [0, 1]: what an
            error map blind to the bars puts there.
        summed: the share of the summed error map's mass in the part, mean over frames of
            per-frame shares, in [0, 1]; None where no frame's map has mass.
        per_layer: the same for each LSP layer's map, in `BarErrorMass.layers` order.
    """

    area: float
    summed: float | None
    per_layer: tuple[float | None, ...]

    def to_json(self) -> dict:
        return {"area": self.area, "summed": self.summed, "per_layer": list(self.per_layer)}

    @classmethod
    def from_json(cls, data: dict) -> PartShare:
        return cls(data["area"], data["summed"], tuple(data["per_layer"]))


@dataclass(frozen=True)
class BarErrorMass:
    """How much of a model's error-map mass lies on the Noisy Atari bars
    (`permakey.evaluation.error_mass`: which map, which parts, how frames are averaged).

    Attributes:
        margin: pixels the bars are grown by (2).
        layers: the encoder layer of each LSP layer, in the error stack's channel order.
        summed: the share of the summed normalised error map's mass on the grown bars, mean
            over frames of per-frame shares, in [0, 1]; None where no frame's map has mass.
        per_layer: the same for each LSP layer's map, in ``layers`` order.
        chance: the grown bars' share of the frame's area, mean over frames: what a map
            blind to the bars scores (the distractor chance at r = ``margin``).
        sprites: how the ``sprites`` part's pixels were found: "object boxes" or "differs
            from the background mode".
        parts: the shares of each part of the grown bars, by name; the parts' ``summed``
            (``per_layer``, ``area``) add up to ``summed`` (``per_layer``, ``chance``).
    """

    margin: int
    layers: tuple[int, ...]
    summed: float | None
    per_layer: tuple[float | None, ...]
    chance: float
    sprites: str
    parts: dict[str, PartShare]

    def to_json(self) -> dict:
        return {
            "margin": self.margin,
            "layers": list(self.layers),
            "summed": self.summed,
            "per_layer": list(self.per_layer),
            "chance": self.chance,
            "sprites": self.sprites,
            "parts": {name: part.to_json() for name, part in self.parts.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> BarErrorMass:
        return cls(
            margin=data["margin"],
            layers=tuple(data["layers"]),
            summed=data["summed"],
            per_layer=tuple(data["per_layer"]),
            chance=data["chance"],
            sprites=data["sprites"],
            parts={name: PartShare.from_json(p) for name, p in data["parts"].items()},
        )


@dataclass(frozen=True)
class ColumnMetrics:
    """Every metric of one column (a model or a control); shares and rates are in [0, 1].

    Object metrics (``recall`` to ``per_category``) are None without ground truth; a value
    inside them is None where there is nothing to count (e.g. no headline object).

    Attributes:
        recall: per radius, the share of headline objects with a keypoint in their box.
        precision: per radius, the share of keypoints inside a headline or small box.
        f1: per radius, the harmonic mean of precision and recall.
        recall_bound: the best headline recall K keypoints per frame can reach.
        small_recall: per radius, recall of the small objects; None also with ground truth
            when the frames hold no small object.
        per_category: recall of every headline and small category present, by name.
        distractor_share: per radius, the share of keypoints on a Noisy Atari bar; None on
            clean frames.
        distractor_chance: per radius, the share of the frame the bars cover, i.e. the
            distractor share of uniformly random points; None on clean frames.
        border_share: the share of keypoints within `metrics.BORDER_PX` of the frame's edge.
        border_chance: the share of the frame that band covers.
        motion: how much the keypoints move.
        keypoints: K, keypoints per frame.
        identity: whether each keypoint keeps its object; None without ground truth, and in
            files written before identities were measured.
        bar_error_mass: the share of the error maps' mass on the bars and its parts, for a
            model with error maps on noisy frames; None for other models, for controls, on
            clean frames, and in files written before it was measured.
    """

    recall: PerRadius | None
    precision: PerRadius | None
    f1: PerRadius | None
    recall_bound: float | None
    small_recall: PerRadius | None
    per_category: dict[str, CategoryScores] | None
    distractor_share: PerRadius | None
    distractor_chance: PerRadius | None
    border_share: float | None
    border_chance: float
    motion: Motion
    keypoints: int
    identity: IdentityScores | None = None
    bar_error_mass: BarErrorMass | None = None

    @property
    def ground_truth(self) -> bool:
        """Whether the object metrics were measured (the dataset has objects)."""
        return self.recall is not None

    def to_json(self) -> dict:
        """The metrics as the file holds them: str radius keys, `NO_GROUND_TRUTH` strings."""
        if self.ground_truth:
            objects = {
                "recall": _radii_to_json(self.recall),
                "precision": _radii_to_json(self.precision),
                "f1": _radii_to_json(self.f1),
                "recall_bound": self.recall_bound,
                "small_recall": _radii_to_json(self.small_recall),
                "per_category": {n: s.to_json() for n, s in self.per_category.items()},
            }
        else:
            objects = dict.fromkeys(
                ["recall", "precision", "f1", "recall_bound", "small_recall", "per_category"],
                NO_GROUND_TRUTH,
            )
        if self.identity is not None:  # absent, as in files from before it, when not measured
            objects["identity"] = self.identity.to_json()
        out = {
            **objects,
            "distractor_share": _radii_to_json(self.distractor_share),
            "distractor_chance": _radii_to_json(self.distractor_chance),
        }
        if self.bar_error_mass is not None:  # absent, as in files from before it, when None
            out["bar_error_mass"] = self.bar_error_mass.to_json()
        return {
            **out,
            "border_share": self.border_share,
            "border_chance": self.border_chance,
            "motion": self.motion.to_json(),
            "keypoints": self.keypoints,
        }

    @classmethod
    def from_json(cls, data: dict) -> ColumnMetrics:
        per_category = _object_metric(data["per_category"])
        identity = data.get("identity")
        bar_error_mass = data.get("bar_error_mass")
        return cls(
            recall=_radii_from_json(_object_metric(data["recall"])),
            precision=_radii_from_json(_object_metric(data["precision"])),
            f1=_radii_from_json(_object_metric(data["f1"])),
            recall_bound=_object_metric(data["recall_bound"]),
            small_recall=_radii_from_json(_object_metric(data["small_recall"])),
            per_category=None
            if per_category is None
            else {n: CategoryScores.from_json(s) for n, s in per_category.items()},
            distractor_share=_radii_from_json(data["distractor_share"]),
            distractor_chance=_radii_from_json(data["distractor_chance"]),
            border_share=data["border_share"],
            border_chance=data["border_chance"],
            motion=Motion.from_json(data["motion"]),
            keypoints=data["keypoints"],
            identity=None if identity is None else IdentityScores.from_json(identity),
            bar_error_mass=None
            if bar_error_mass is None
            else BarErrorMass.from_json(bar_error_mass),
        )


@dataclass(frozen=True)
class Column:
    """One column of the table: a model, or a control.

    Attributes:
        name: the column's name (controls: `template_name`, `peaks_name`, `random_name`).
        kind: "model" or "control".
        metrics: its scores.
        of: the model a control belongs to; None for models and the random controls.
        identity: what identifies a model (run folder, weights, run.json...); None for
            controls.
    """

    name: str
    kind: Literal["model", "control"]
    metrics: ColumnMetrics
    of: str | None = None
    identity: dict | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "of": self.of}
        if self.kind == "model":  # the file has held an identity for models only
            out["identity"] = self.identity
        return {**out, "metrics": self.metrics.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> Column:
        return cls(
            name=data["name"],
            kind=data["kind"],
            metrics=ColumnMetrics.from_json(data["metrics"]),
            of=data.get("of"),
            identity=data.get("identity"),
        )


@dataclass(frozen=True)
class Noise:
    """The Noisy Atari bars painted over the evaluated frames; kind "none" for clean frames.

    Attributes:
        kind: "none", "horizontal", "vertical" or "both".
        width: bar thickness in pixels; None for clean frames.
        colour: RGB, each 0-255; None for clean frames and for a random colour per frame.
        seed: seed of the bar positions; None for clean frames.
        random_colour: each frame's bars in a colour of their own (not in the paper).
        before_resize: the resize method the bars were painted before, as if on the raw
            frame (not in the paper); None: painted on the stored frame, the paper's.

    In the file, ``random_colour`` and ``before_resize`` are written only where they are not
    the paper's: files from before them, which lack them, read as the paper's bars.
    """

    kind: str = "none"
    width: int | None = None
    colour: tuple[int, int, int] | None = None
    seed: int | None = None
    random_colour: bool = False
    before_resize: str | None = None

    @classmethod
    def from_config(cls, config, seed: int) -> Noise:
        """The bars of a `permakey.data.noise.NoiseConfig`: the one place that reads None and
        kind "none" alike as clean frames."""
        if config is None or config.kind == "none":
            return cls()
        colour = None if config.random_colour else tuple(config.colour)
        return cls(
            config.kind, config.width, colour, seed, config.random_colour, config.before_resize
        )

    @property
    def noisy(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        """The bars in words, e.g. "both (5 px, colour 128 0 255, painted after the resize;
        seed 0)"; "none" for clean frames."""
        if not self.noisy:
            return self.kind
        colour = (
            "a random colour per frame"
            if self.random_colour
            else "colour " + " ".join(map(str, self.colour or ()))
        )
        stage = (
            "painted after the resize"
            if self.before_resize is None
            else f"painted before the {self.before_resize} resize"
        )
        return f"{self.kind} ({self.width} px, {colour}, {stage}; seed {self.seed})"

    def to_json(self) -> dict:
        colour = None if self.colour is None else list(self.colour)
        out = {"kind": self.kind, "width": self.width, "colour": colour, "seed": self.seed}
        if self.random_colour:
            out["random_colour"] = True
        if self.before_resize is not None:
            out["before_resize"] = self.before_resize
        return out

    @classmethod
    def from_json(cls, data: dict) -> Noise:
        colour = None if data["colour"] is None else tuple(data["colour"])
        return cls(
            data["kind"],
            data["width"],
            colour,
            data["seed"],
            data.get("random_colour", False),
            data.get("before_resize"),
        )


@dataclass(frozen=True)
class SeedStability:
    """How far apart the keypoints of runs that differ only in their seed lie.

    Attributes:
        runs: the model columns of the group.
        mean_matched_distance_px: mean distance between optimally matched keypoints of
            every pair of runs, in pixels.
    """

    runs: tuple[str, ...]
    mean_matched_distance_px: float | None

    def to_json(self) -> dict:
        return {"runs": list(self.runs), "mean_matched_distance_px": self.mean_matched_distance_px}

    @classmethod
    def from_json(cls, data: dict) -> SeedStability:
        return cls(tuple(data["runs"]), data["mean_matched_distance_px"])


@dataclass(frozen=True)
class DatasetInfo:
    """Which data was evaluated.

    Attributes:
        path: the dataset folder, as given.
        split: "train", "val" or "test".
        identity: the split's identity (`permakey.data.store.Split.identity`).
        meta: the dataset's meta.json.
    """

    path: str
    split: str
    identity: dict
    meta: dict

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "split": self.split,
            "identity": self.identity,
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: dict) -> DatasetInfo:
        return cls(data["path"], data["split"], data["identity"], data["meta"])


@dataclass(frozen=True)
class EvaluationResult:
    """Every model and control scored on the same frames.

    Attributes:
        frames: N, frames evaluated.
        frame_size: (H, W) of the frames.
        radii: the margins r in pixels of the per-radius metrics.
        headline_radius: the r of the headline numbers.
        ground_truth: whether the dataset has objects (else no object metric is measured).
        categories: which categories count; None when none was given (no objects).
        noise: the bars painted over the frames.
        control_seed: seed of the random controls.
        columns: models and controls in table order: each model, then its template, then
            its error-map peaks (if any); then the random controls, one per K, and with
            ground truth the perfect object trackers, one per K.
        seed_stability: one entry per group of runs that differ only in their seed.
        dataset: the data evaluated; None when not known (`evaluate_models` on a split).
        code: the package version and git commit that evaluated; None when not known.
        identities: how the objects' tracks were made (`permakey.data.identity`): "slot" or
            "linked" as the dataset stored them, "linked at evaluation" for a dataset
            collected without them; None without ground truth, and in files written before
            identities were measured.
    """

    frames: int
    frame_size: tuple[int, int]
    radii: tuple[int, ...]
    headline_radius: int
    ground_truth: bool
    categories: CategorySelection | None
    noise: Noise
    control_seed: int
    columns: tuple[Column, ...]
    seed_stability: tuple[SeedStability, ...] = ()
    dataset: DatasetInfo | None = None
    code: dict | None = None
    identities: str | None = None

    @property
    def models(self) -> tuple[Column, ...]:
        """The model columns, in table order."""
        return tuple(c for c in self.columns if c.kind == "model")

    @property
    def controls(self) -> tuple[Column, ...]:
        """The control columns, in table order."""
        return tuple(c for c in self.columns if c.kind == "control")

    def column(self, name: str) -> Column:
        """The column named ``name``.

        Raises:
            KeyError: no such column (the message lists them).
        """
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(
            f"no column {name!r}; the columns are {', '.join(c.name for c in self.columns)}"
        )

    def template_of(self, model: str) -> Column:
        """The static template control of the model column ``model``."""
        return self.column(template_name(model))

    def peaks_of(self, model: str) -> Column | None:
        """The error-map peaks control of ``model``; None for a model without error maps."""
        name = peaks_name(model)
        return next((c for c in self.columns if c.name == name), None)

    def random_for(self, model: str) -> Column:
        """The random control with as many keypoints as the model column ``model``."""
        return self.column(random_name(self.column(model).metrics.keypoints))

    def tracker_for(self, model: str) -> Column | None:
        """The perfect object tracker with as many keypoints as ``model`` at most; None
        without ground truth, or in files written before it was a column."""
        name = tracker_name(self.column(model).metrics.keypoints)
        return next((c for c in self.columns if c.name == name), None)

    def to_json(self) -> dict:
        """The JSON file's contents (str radius keys; see `from_json`)."""
        out: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        if self.code is not None:
            out["code"] = self.code
        out |= {
            "frames": self.frames,
            "frame_size": list(self.frame_size),
            "radii": list(self.radii),
            "headline_radius": self.headline_radius,
            "ground_truth": self.ground_truth,
            "categories": None if self.categories is None else self.categories.to_json(),
            "noise": self.noise.to_json(),
            "control_seed": self.control_seed,
            "columns": [c.to_json() for c in self.columns],
            "seed_stability": [s.to_json() for s in self.seed_stability],
        }
        if self.identities is not None:  # absent in files from before identities
            out["identities"] = self.identities
        if self.dataset is not None:
            out["dataset"] = self.dataset.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict) -> EvaluationResult:
        """The result of a file that `to_json` wrote, in this or an earlier format version.

        Raises:
            ValueError: not an evaluation result, or one of a newer format version.
            KeyError, TypeError: an entry is missing or of the wrong type.
        """
        if not isinstance(data, dict) or data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        version = data.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(
                f"format version {version} is newer than this permakey reads ({FORMAT_VERSION})"
            )
        categories = data["categories"]
        dataset = data.get("dataset")
        return cls(
            frames=data["frames"],
            frame_size=tuple(data["frame_size"]),
            radii=tuple(data["radii"]),
            headline_radius=data["headline_radius"],
            ground_truth=data["ground_truth"],
            categories=None if categories is None else CategorySelection.from_json(categories),
            noise=Noise.from_json(data["noise"]),
            control_seed=data["control_seed"],
            columns=tuple(Column.from_json(c) for c in data["columns"]),
            seed_stability=tuple(SeedStability.from_json(s) for s in data["seed_stability"]),
            dataset=None if dataset is None else DatasetInfo.from_json(dataset),
            code=data.get("code"),
            identities=data.get("identities"),
        )
