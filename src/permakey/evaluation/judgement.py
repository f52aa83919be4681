"""What a model's keypoints do, judged from an evaluation: follow objects, or mark places;
whether keypoint k keeps its object (`identity_note`); and on Noisy Atari, how much the
keypoints and the error maps go to the bars (`distractor_note`).

A model's static template (each keypoint fixed at its mean position) marks where objects
appear as well as a fixed point can. Keypoints follow objects when they find some object
category clearly more often than their template: a fixed point cannot keep up with a moving
object, nor with one that a keypoint visits only in some frames. The mean motion is reported,
not judged: most keypoints sit on static objects (scores, shields), so it is low even when
some track.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from permakey.evaluation.results import (
    EvaluationResult,
    TrackCounts,
    peaks_name,
    random_name,
    template_name,
    tracker_name,
)

# Keypoints follow objects when they find some object category at least this much more often
# (recall at the headline radius) than their own static template does.
TRACKING_RECALL_MARGIN = 0.10
# Otherwise, F1 at least this far above the template means they sit on objects a little
# better than fixed points; below it, they only mark where objects appear.
TRACKING_MARGIN = 0.05
# At most this many followed categories are named, the clearest first.
NAMED_CATEGORIES = 3

Outcome = Literal["follows", "closer than fixed points", "marks places", "no ground truth"]


@dataclass(frozen=True)
class Followed:
    """An object category that keypoints find clearly more often than fixed points do.

    Attributes:
        category: the category's name.
        recall: the model's recall of it at the headline radius, in [0, 1].
        template_recall: its static template's recall, in [0, 1].
    """

    category: str
    recall: float
    template_recall: float


@dataclass(frozen=True)
class TrackingVerdict:
    """What one model's keypoints do.

    Attributes:
        model: the model column.
        outcome: "follows" (some category is in ``followed``), "closer than fixed points"
            (F1 at least `TRACKING_MARGIN` above the template, nothing followed), "marks
            places" (F1 within `TRACKING_MARGIN` of the template) or "no ground truth"
            (nothing is judged; the numbers below are None).
        radius: the headline radius r in pixels of the numbers.
        f1: the model's F1 at r.
        template_f1: its static template's F1 at r.
        per_step_px: how far its keypoints move between consecutive frames, in pixels.
        followed: the followed categories, clearest first, at most `NAMED_CATEGORIES`.
    """

    model: str
    outcome: Outcome
    radius: int
    f1: float | None = None
    template_f1: float | None = None
    per_step_px: float | None = None
    followed: tuple[Followed, ...] = ()

    def sentence(self) -> str:
        """One honest sentence on the verdict, for a report."""
        if self.outcome == "no ground truth":
            return f"{self.model}: this dataset has no object ground truth, so no claim is made."
        if self.outcome == "follows":
            found = ", ".join(
                f"{f.category} in {f.recall:.0%} of its appearances "
                f"(fixed points: {f.template_recall:.0%})"
                for f in self.followed
            )
            verdict = (
                f"they go where objects are in each frame, as fixed points cannot: the {found}"
            )
        elif self.outcome == "marks places":
            verdict = (
                "they mark where objects appear; they do not yet follow them (a fixed point per "
                "keypoint scores about as well)"
            )
        else:
            verdict = (
                "they sit on objects a little better than their fixed mean positions, but find "
                "no kind of object clearly more often: they mark where objects appear more than "
                "they follow them"
            )
        return (
            f"{self.model}: F1@{self.radius} {self.f1:.2f} against {self.template_f1:.2f} for "
            f"its static template, keypoints move {self.per_step_px:.1f} px between "
            f"consecutive frames: {verdict}."
        )


def judge_tracking(result: EvaluationResult, model: str) -> TrackingVerdict:
    """Whether the keypoints of the model column ``model`` follow objects or mark places.

    Raises:
        KeyError: ``result`` has no column ``model`` or no template of it.
    """
    r = result.headline_radius
    if not result.ground_truth:
        return TrackingVerdict(model, "no ground truth", r)
    mine, fixed = result.column(model).metrics, result.template_of(model).metrics
    f1, template = mine.f1[r], fixed.f1[r]
    candidates = [
        Followed(category, scores.recall[r], fixed.per_category[category].recall[r])
        for category, scores in mine.per_category.items()
    ]
    candidates.sort(key=lambda f: f.template_recall - f.recall)
    followed = tuple(
        f for f in candidates if f.recall >= f.template_recall + TRACKING_RECALL_MARGIN
    )[:NAMED_CATEGORIES]
    if followed:
        outcome = "follows"
    elif f1 < template + TRACKING_MARGIN:
        outcome = "marks places"
    else:
        outcome = "closer than fixed points"
    return TrackingVerdict(model, outcome, r, f1, template, mine.motion.per_step_px, followed)


def tracking_note(result: EvaluationResult, model: str) -> str:
    """`judge_tracking`'s verdict on the model column ``model`` as one sentence."""
    return judge_tracking(result, model).sentence()


def _kept(counts: TrackCounts) -> str:
    return f"{counts.kept} of {counts.tracks}"


def identity_note(result: EvaluationResult, model: str) -> str:
    """Whether the keypoints of the model column ``model`` keep their objects, in words: how
    many object tracks it keeps and which (moving categories by name, static ones), its mean
    purity, and how many tracks each of its controls keeps.

    Raises:
        KeyError: ``result`` has no column ``model``.
    """
    identity = result.column(model).metrics.identity
    if not result.ground_truth:
        return f"{model}: this dataset has no object ground truth, so no identity is measured."
    if identity is None:
        return f"{model}: this evaluation predates the identity metrics; evaluate again."
    moving = [
        f"{name} {_kept(identity.per_category[name])}"
        for name in result.categories.moving or ()
        if name in identity.per_category
    ]
    purity = (
        "no keypoint lands on an object"
        if identity.mean_purity is None
        else f"on average a keypoint spends {identity.mean_purity:.0%} of its frames on "
        "objects on its most frequent object (mean purity)"
    )
    k = result.column(model).metrics.keypoints
    names = [
        ("its static template", template_name(model)),
        ("its error-map peaks", peaks_name(model)),
        ("random points", random_name(k)),
        ("a perfect tracker", tracker_name(k)),
    ]
    columns = {c.name: c for c in result.columns if c.metrics.identity is not None}
    controls = [(label, columns[name]) for label, name in names if name in columns]
    keep = ", ".join(f"{label} {c.metrics.identity.kept.kept}" for label, c in controls)
    r, share = identity.radius, identity.kept_share
    return (
        f"{model} keeps {_kept(identity.kept)} object tracks (one keypoint within {r} px of "
        f"the object in at least {share:.0%} of its frames): moving objects "
        f"{_kept(identity.moving)}" + (f" ({', '.join(moving)})" if moving else "") + ", "
        f"static {_kept(identity.static)}; {purity}. Tracks kept by the controls: {keep}."
    )


def distractor_note(result: EvaluationResult, model: str) -> str:
    """How often the keypoints of the model column ``model`` lie on the Noisy Atari bars (at
    the headline radius) and, for a model with error maps, how much of their mass the maps
    put there, each next to its chance level, in one sentence.

    Raises:
        ValueError: ``result`` is of clean frames.
        KeyError: ``result`` has no column ``model``.
    """
    if not result.noise.noisy:
        raise ValueError("a distractor note needs an evaluation on Noisy Atari frames")
    metrics = result.column(model).metrics
    r = result.headline_radius
    share, chance = metrics.distractor_share[r], metrics.distractor_chance[r]
    note = (
        f"{model} on Noisy Atari ({result.noise.kind} bars): {share:.2f} of its keypoints lie "
        f"on a bar (within {r} px), where random points would give {chance:.2f}."
    )
    mass = metrics.bar_error_mass
    if mass is not None and mass.summed is not None:
        note += (
            f" Its error maps put {mass.summed:.2f} of their mass on the bars (grown by "
            f"{mass.margin} px), where maps blind to the bars would put {mass.chance:.2f}."
        )
    return note
