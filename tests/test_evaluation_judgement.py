"""The judgement of what keypoints do: follow objects, or mark where objects appear."""

import dataclasses

import pytest

from permakey.evaluation.judgement import judge_tracking, tracking_note
from permakey.evaluation.results import (
    CategoryScores,
    Column,
    ColumnMetrics,
    EvaluationResult,
    Motion,
    Noise,
)


def metrics(f1: float, player: float) -> ColumnMetrics:
    categories = {"Player": player, "Shield": 0.9}
    return ColumnMetrics(
        recall={2: f1},
        precision={2: f1},
        f1={2: f1},
        recall_bound=1.0,
        small_recall=None,
        per_category={
            c: CategoryScores("headline", 10, {2: r}, 1.0) for c, r in categories.items()
        },
        distractor_share=None,
        distractor_chance=None,
        border_share=0.0,
        border_chance=0.09,
        motion=Motion(3.0, 0.4),
        keypoints=5,
    )


def result(f1: float, player: float) -> EvaluationResult:
    return EvaluationResult(
        frames=10,
        frame_size=(84, 84),
        radii=(2,),
        headline_radius=2,
        ground_truth=True,
        categories=None,
        noise=Noise(),
        control_seed=0,
        columns=(
            Column("pk", "model", metrics(f1, player)),
            Column("template: pk", "control", metrics(0.60, 0.35), of="pk"),
        ),
    )


@pytest.mark.parametrize(
    ("f1", "player", "outcome", "says"),
    [
        (0.60, 0.40, "marks places", "they do not yet follow them"),  # no better than template
        # A better F1, but no category found clearly more often than by fixed points.
        (0.70, 0.40, "closer than fixed points", "find no kind of object clearly more often"),
        (0.60, 0.96, "follows", "the Player in 96% of its appearances (fixed points: 35%)"),
    ],
)
def test_the_verdict_says_plainly_whether_keypoints_track(f1, player, outcome, says):
    evaluated = result(f1, player)
    verdict = judge_tracking(evaluated, "pk")
    assert verdict.outcome == outcome
    assert [f.category for f in verdict.followed] == (["Player"] if outcome == "follows" else [])
    note = tracking_note(evaluated, "pk")
    assert says in note
    assert note.startswith(f"pk: F1@2 {f1:.2f} against 0.60 for its static template")
    assert "keypoints move 0.4 px between consecutive frames" in note


def test_no_claim_without_ground_truth():
    evaluated = dataclasses.replace(result(0.6, 0.96), ground_truth=False)
    assert judge_tracking(evaluated, "pk").outcome == "no ground truth"
    assert "no object ground truth" in tracking_note(evaluated, "pk")


def with_identity(metrics_: ColumnMetrics, player_kept: int, aliens_kept: int, purity):
    from permakey.evaluation.results import IdentityScores, TrackCounts

    per_category = {"Player": TrackCounts(2, player_kept), "Alien": TrackCounts(10, aliens_kept)}
    per_category["Shield"] = TrackCounts(3, 3)
    moving = TrackCounts(12, player_kept + aliens_kept)
    identity = IdentityScores(
        2, 0.8, (purity,), purity, TrackCounts(15, moving.kept + 3), moving, TrackCounts(3, 3),
        per_category,
    )  # fmt: skip
    return dataclasses.replace(metrics_, identity=identity)


def test_the_identity_note_says_how_many_objects_are_kept_and_which():
    from permakey.evaluation.categories import CategorySelection
    from permakey.evaluation.judgement import identity_note

    evaluated = result(0.7, 0.96)
    model, template = evaluated.columns
    evaluated = dataclasses.replace(
        evaluated,
        categories=CategorySelection(
            ("Player", "Alien", "Shield"), (), (), "test", moving=("Player", "Alien")
        ),
        columns=(
            dataclasses.replace(model, metrics=with_identity(model.metrics, 2, 4, 0.9)),
            dataclasses.replace(template, metrics=with_identity(template.metrics, 0, 1, 1.0)),
        ),
    )
    note = identity_note(evaluated, "pk")
    assert note.startswith("pk keeps 9 of 15 object tracks")
    assert "moving objects 6 of 12 (Player 2 of 2, Alien 4 of 10), static 3 of 3" in note
    assert "90% of its frames on objects on its most frequent object" in note
    assert note.endswith("Tracks kept by the controls: its static template 4.")


def test_an_evaluation_from_before_identities_says_so():
    from permakey.evaluation.judgement import identity_note

    assert "predates the identity metrics" in identity_note(result(0.6, 0.4), "pk")


def test_the_distractor_note_gives_both_shares_next_to_chance():
    from permakey.evaluation.judgement import distractor_note
    from permakey.evaluation.results import BarErrorMass

    evaluated = result(0.6, 0.4)
    model = dataclasses.replace(
        evaluated.columns[0].metrics, distractor_share={2: 0.31}, distractor_chance={2: 0.2}
    )
    evaluated = dataclasses.replace(
        evaluated,
        noise=Noise("both", 5, (128, 0, 255), 0),
        columns=(dataclasses.replace(evaluated.columns[0], metrics=model),),
    )
    keypoints_only = distractor_note(evaluated, "pk")
    assert keypoints_only == (
        "pk on Noisy Atari (both bars): 0.31 of its keypoints lie on a bar (within 2 px), "
        "where random points would give 0.20."
    )
    mass = BarErrorMass(2, (0, 1), 0.45, (0.5, 0.4), 0.21, "object boxes", {})
    evaluated = dataclasses.replace(
        evaluated,
        columns=(
            dataclasses.replace(
                evaluated.columns[0], metrics=dataclasses.replace(model, bar_error_mass=mass)
            ),
        ),
    )
    assert distractor_note(evaluated, "pk") == keypoints_only + (
        " Its error maps put 0.45 of their mass on the bars (grown by 2 px), where maps blind "
        "to the bars would put 0.21."
    )
    with pytest.raises(ValueError, match="Noisy Atari"):
        distractor_note(result(0.6, 0.4), "pk")
