"""Typed evaluation results: the JSON round trip, files of earlier versions, unreadable files."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from permakey.errors import UserError
from permakey.evaluation.categories import CategorySelection
from permakey.evaluation.evaluate import format_table, read_result, write_result
from permakey.evaluation.results import (
    FORMAT_VERSION,
    NO_GROUND_TRUTH,
    BarErrorMass,
    CategoryScores,
    Column,
    ColumnMetrics,
    EvaluationResult,
    Motion,
    Noise,
    PartShare,
)

# Written by `permakey evaluate` before the results were typed (format version 1): with object
# ground truth and a seed group; and without objects, on noisy frames, by `evaluate_models`
# (no format, code or dataset entries).
DATA = Path(__file__).parent / "data"
WITH_OBJECTS = DATA / "evaluation_v1_objects.json"
NO_OBJECTS_NOISY = DATA / "evaluation_v1_no_objects_noisy.json"


def _format_entries() -> dict:
    return {"format": "permakey-evaluation", "format_version": FORMAT_VERSION}


def metrics(f1: float | None, ground_truth: bool = True) -> ColumnMetrics:
    """Every kind of value: None inside per-radius dicts, None small recall with objects."""
    per_radius = {0: f1, 2: f1} if ground_truth else None
    player = CategoryScores("headline", 3, {0: 0.5, 2: 1.0}, 1.0)
    return ColumnMetrics(
        recall=per_radius,
        precision=per_radius,
        f1=per_radius,
        recall_bound=0.75 if ground_truth else None,
        small_recall=None,
        per_category={"Player": player} if ground_truth else None,
        distractor_share={0: 0.25, 2: None},
        distractor_chance={0: 0.1, 2: 0.2},
        border_share=None,
        border_chance=0.09,
        motion=Motion(1.5, None),
        keypoints=2,
    )


# A model's bar error mass, with a layer whose maps never had mass.
BAR_MASS = BarErrorMass(
    margin=2,
    layers=(0, 1),
    summed=0.3,
    per_layer=(0.4, None),
    chance=0.2,
    sprites="object boxes",
    parts={
        "edges": PartShare(0.15, 0.25, (0.3, None)),
        "interior": PartShare(0.05, 0.05, (0.1, None)),
    },
)


def result(ground_truth: bool = True) -> EvaluationResult:
    selection = CategorySelection(("Player",), (), ("Score",), "default for Pong")
    return EvaluationResult(
        frames=3,
        frame_size=(84, 84),
        radii=(0, 2),
        headline_radius=2,
        ground_truth=ground_truth,
        categories=selection if ground_truth else None,
        noise=Noise("both", 5, (128, 0, 255), 4),
        control_seed=1,
        columns=(
            Column(
                "m",
                "model",
                replace(metrics(0.5, ground_truth), bar_error_mass=BAR_MASS),
                identity={"run": "r"},
            ),
            Column("template: m", "control", metrics(None, ground_truth), of="m"),
        ),
    )


@pytest.mark.parametrize("ground_truth", [True, False])
def test_round_trip_through_json_text(ground_truth):
    original = result(ground_truth)
    data = json.loads(json.dumps(original.to_json()))
    assert data["format_version"] == FORMAT_VERSION
    assert data["columns"][0]["metrics"]["distractor_share"] == {"0": 0.25, "2": None}
    assert "identity" not in data["columns"][1]  # controls have none in the file
    assert data["columns"][0]["metrics"]["bar_error_mass"]["per_layer"] == [0.4, None]
    assert "bar_error_mass" not in data["columns"][1]["metrics"]  # absent where None
    assert EvaluationResult.from_json(data) == original


def test_a_file_of_format_version_1_reads_typed_and_writes_back_the_same():
    data = json.loads(WITH_OBJECTS.read_text())
    loaded = read_result(WITH_OBJECTS)
    tracker = loaded.column("tracker").metrics
    assert tracker.f1 == {0: 1.0, 2: 1.0, 4: 1.0}  # int radius keys
    assert tracker.per_category["Alien"].recall[2] == 1.0
    assert loaded.template_of("tracker").metrics.per_category["Player"].recall[0] == 2 / 6
    assert loaded.seed_stability[0].runs == ("tracker", "tracker-seed1")
    assert loaded.dataset.meta == {"game": "SpaceInvaders"} and loaded.dataset.split == "test"
    assert loaded.categories.small == ("Bullet",)
    assert loaded.to_json() == data


def test_a_file_without_objects_has_no_object_metrics():
    loaded = read_result(NO_OBJECTS_NOISY)
    m = loaded.column("corners").metrics
    assert not loaded.ground_truth and not m.ground_truth
    assert m.f1 is None and m.per_category is None and m.recall_bound is None
    assert m.distractor_share[4] == pytest.approx(1 / 12)
    assert m.bar_error_mass is None  # written before the bar error mass was measured
    assert "bar error mass" not in format_table(loaded)
    assert loaded.noise == Noise("both", 5, (128, 0, 255), 3)
    assert loaded.dataset is None and loaded.code is None
    table = format_table(loaded)
    assert f"| F1@2                              | {NO_GROUND_TRUTH}" in table
    assert table.endswith(
        "6 frames, noise both (5 px, colour 128 0 255, painted after the resize; seed 3)"
    )
    written = loaded.to_json()
    assert written["columns"][0]["metrics"]["per_category"] == NO_GROUND_TRUTH
    assert written == {**json.loads(NO_OBJECTS_NOISY.read_text()), **_format_entries()}


def test_bars_of_a_random_colour_and_before_the_resize_are_recorded_and_shown():
    from permakey.data.noise import NoiseConfig

    config = NoiseConfig("vertical", 3, (1, 2, 3), random_colour=True, before_resize="area")
    noise = Noise.from_config(config, 7)
    assert noise == Noise("vertical", 3, None, 7, random_colour=True, before_resize="area")
    written = replace(result(), noise=noise).to_json()
    assert written["noise"] == {
        "kind": "vertical", "width": 3, "colour": None, "seed": 7,
        "random_colour": True, "before_resize": "area",
    }  # fmt: skip
    loaded = EvaluationResult.from_json(json.loads(json.dumps(written)))
    assert loaded.noise == noise
    assert (
        "\n3 frames, noise vertical (3 px, a random colour per frame, painted before the area "
        "resize; seed 7); categories: default for Pong"
    ) in format_table(loaded)
    # The paper's bars write what files from before these fields hold.
    paper = Noise.from_config(NoiseConfig("both"), 4)
    assert paper.to_json() == {"kind": "both", "width": 5, "colour": [128, 0, 255], "seed": 4}


def test_write_then_read(tmp_path):
    path = tmp_path / "sub" / "eval.json"
    write_result(path, result())
    assert read_result(path) == result()
    assert [p.name for p in path.parent.iterdir()] == ["eval.json"]  # no temporary left


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such evaluation result"),
        ("{not json", "not a readable evaluation result"),
        ('{"format": "permakey-run"}', "not a permakey-evaluation file"),
        (json.dumps({**_format_entries(), "format_version": 99}), "format version 99 is newer"),
        (json.dumps({**_format_entries(), "frames": 3}), "missing entry '"),
        ("[1, 2]", "not a permakey-evaluation file"),
    ],
)
def test_an_unreadable_file_is_a_one_line_user_error_naming_it(tmp_path, content, says):
    path = tmp_path / "eval.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=says) as error:
        read_result(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
