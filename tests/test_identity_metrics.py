"""Identity metrics (does keypoint k keep its object?) on hand-made sequences with known answers."""

import numpy as np
import pytest

from permakey.evaluation import controls, metrics
from permakey.evaluation.categories import CategorySelection
from permakey.evaluation.evaluate import GroundTruth, score_keypoints

R = metrics.HEADLINE_RADIUS
N = 10
# Two objects, one track each, in every frame: A moves right along row 20, B sits at row 60.
A_BOXES = [[10.0 + 3 * f, 18.0, 4.0, 4.0] for f in range(N)]
B_BOX = [50.0, 58.0, 4.0, 4.0]


def centre(box):
    x, y, w, h = box
    return [y + h / 2 - 0.5, x + w / 2 - 0.5]  # (row, col) pixel centre


def two_objects():
    """offsets (N + 1,), category (M,), boxes (M, 4), track (M,): A is track 0, B track 1."""
    boxes = [box for f in range(N) for box in (A_BOXES[f], B_BOX)]
    return (
        np.arange(0, 2 * N + 1, 2),
        np.tile([0, 1], N),
        np.array(boxes),
        np.tile([0, 1], N),
    )


def test_a_keypoint_that_follows_one_object_has_purity_1():
    offsets, _, boxes, track = two_objects()
    keypoints = np.array([[centre(A_BOXES[f]), centre(B_BOX)] for f in range(N)])  # (N, 2, 2)
    owner = metrics.keypoint_tracks(keypoints, offsets, boxes, track, R)
    assert owner.tolist() == [[0, 1]] * N
    assert metrics.purity(owner, 2).tolist() == [1.0, 1.0]


def test_a_keypoint_that_alternates_between_two_objects_every_frame_has_purity_half():
    offsets, _, boxes, track = two_objects()
    keypoints = np.array([[centre(A_BOXES[f] if f % 2 else B_BOX)] for f in range(N)])
    owner = metrics.keypoint_tracks(keypoints, offsets, boxes, track, R)
    assert owner[:, 0].tolist() == [1, 0] * (N // 2)
    assert metrics.purity(owner, 2).tolist() == [0.5]
    # Neither track has one keypoint on it in 80% of its frames.
    kept = metrics.kept_tracks(keypoints, offsets, boxes, track, 2, R, metrics.KEPT_SHARE)
    assert kept.tolist() == [False, False]


def test_purity_counts_only_frames_on_an_object():
    offsets, _, boxes, track = two_objects()
    off = [80.0, 80.0]  # on no object
    keypoints = np.array([[centre(A_BOXES[f]) if f < 3 else off, off] for f in range(N)])
    owner = metrics.keypoint_tracks(keypoints, offsets, boxes, track, R)
    purity = metrics.purity(owner, 2)
    assert purity[0] == 1.0  # 3 frames on A, 7 on nothing
    assert np.isnan(purity[1])  # never on an object
    kept = metrics.kept_tracks(keypoints, offsets, boxes, track, 2, R, metrics.KEPT_SHARE)
    assert kept.tolist() == [False, False]  # A is held in 3 of its 10 frames


def test_where_two_grown_boxes_hold_a_keypoint_it_is_on_the_nearest():
    offsets = np.array([0, 2])
    boxes = np.array([[10.0, 10.0, 4.0, 4.0], [15.0, 10.0, 4.0, 4.0]])  # 1 px apart
    on_the_second = np.array([[[11.5, 15.5]]])  # inside both grown boxes, nearer the second
    owner = metrics.keypoint_tracks(on_the_second, offsets, boxes, np.array([0, 1]), R)
    assert owner.tolist() == [[1]]


@pytest.mark.parametrize(("frames_on", "kept"), [(8, True), (7, False)])
def test_a_track_is_kept_from_80_percent_of_its_frames(frames_on, kept):
    offsets, _, boxes, track = two_objects()
    keypoints = np.array(
        [[centre(A_BOXES[f]) if f < frames_on else [80.0, 80.0]] for f in range(N)]
    )
    found = metrics.kept_tracks(keypoints, offsets, boxes, track, 2, R, metrics.KEPT_SHARE)
    assert found.tolist() == [kept, False]


def test_keeping_needs_one_keypoint_not_a_relay():
    """Keypoint 0 on A for half of its frames and keypoint 1 for the rest: not kept."""
    offsets, _, boxes, track = two_objects()
    off = [80.0, 80.0]
    keypoints = np.array(
        [[centre(A_BOXES[f]), off] if f < N // 2 else [off, centre(A_BOXES[f])] for f in range(N)]
    )
    found = metrics.kept_tracks(keypoints, offsets, boxes, track, 2, R, metrics.KEPT_SHARE)
    assert found.tolist() == [False, False]
    assert metrics.purity(
        metrics.keypoint_tracks(keypoints, offsets, boxes, track, R), 2
    ).tolist() == [1.0, 1.0]


def test_track_index_is_per_episode_and_id():
    track, count = metrics.track_index(np.array([0, 0, 1, 1, 0]), np.array([3, 5, 3, 3, 5]))
    assert count == 3
    assert track[0] != track[2]  # id 3 of episode 0 is not id 3 of episode 1
    assert track[1] == track[4] and track[2] == track[3]


def test_category_motion_is_the_mean_step_of_each_category():
    offsets, category, boxes, track = two_objects()
    motion = metrics.category_motion(offsets, category, boxes, track, 3)
    assert motion[0] == pytest.approx(3.0) and motion[1] == 0.0 and np.isnan(motion[2])


def truth(selection_moving=("A",)):
    offsets, category, boxes, track = two_objects()
    selection = CategorySelection(("A", "B"), (), (), "test", moving=selection_moving)
    return GroundTruth(["A", "B"], selection, offsets, category, boxes, track, "slot")


def score(keypoints, ground_truth):
    episode, step = np.zeros(N, int), np.arange(N)
    return score_keypoints(keypoints, ground_truth, None, 0, episode, step, 84, 84).identity


def test_the_perfect_tracker_keeps_every_track():
    ground = truth()
    tracker = controls.object_tracker(
        ground.offsets, ground.category, ground.boxes, 5, ground.track
    )
    identity = score(tracker, ground)
    assert identity.kept.tracks == 2 and identity.kept.kept == 2
    assert identity.mean_purity == 1.0 and identity.purity == (1.0, 1.0)
    assert (identity.moving.kept, identity.moving.tracks) == (1, 1)
    assert (identity.static.kept, identity.static.tracks) == (1, 1)
    assert identity.per_category["A"].share == 1.0


def test_a_static_template_keeps_only_the_static_object():
    ground = truth()
    tracker = controls.object_tracker(
        ground.offsets, ground.category, ground.boxes, 5, ground.track
    )
    identity = score(controls.static_template(tracker), ground)
    assert identity.moving.kept == 0 and identity.static.kept == 1
    assert identity.purity[1] == 1.0  # on B in every frame


def test_random_points_keep_nothing():
    ground = truth()
    identity = score(controls.random_keypoints(N, 2, 84, 84, seed=0), ground)
    assert identity.kept.kept == 0


def test_a_game_not_in_the_table_has_its_moving_categories_measured():
    from permakey.evaluation.evaluate import measured_moving

    selection = measured_moving(truth(selection_moving=None))
    assert selection.moving == ("A",)  # A moves 3 px a step, B not at all
    assert selection.moving_source.startswith("measured")


def crossing():
    """Two ghosts (one category) that cross: G0 goes down column 20, G1 up; then, after G0
    has left, a third ghost G2 appears. offsets, category, boxes, track."""
    boxes, track, offsets = [], [], [0]
    for f in range(N):
        boxes += [[20.0, 10.0 + 6 * f, 4.0, 4.0], [40.0, 64.0 - 6 * f, 4.0, 4.0]]
        track += [0, 1]
        offsets.append(len(boxes))
    for _ in range(N):
        boxes += [[60.0, 30.0, 4.0, 4.0], [40.0, 10.0, 4.0, 4.0]]
        track += [2, 1]
        offsets.append(len(boxes))
    return np.array(offsets), np.zeros(len(boxes), int), np.array(boxes), np.array(track)


def test_the_tracker_follows_each_object_through_a_crossing_where_ranks_swap():
    offsets, category, boxes, track = crossing()
    by_rank = controls.object_tracker(offsets, category, boxes, 5)
    by_lane = controls.object_tracker(offsets, category, boxes, 5, track)
    assert by_lane.shape[1] == by_rank.shape[1] == 2  # two ghosts at a time: two keypoints
    owner = {
        name: metrics.keypoint_tracks(points, offsets, boxes, track, R)
        for name, points in (("rank", by_rank), ("lane", by_lane))
    }
    # The topmost ghost is G0, then G1 once they have crossed: rank 0 changes object.
    assert metrics.purity(owner["rank"], 3).min() < 1
    # Lanes: G0's lane passes to G2 when G0 is gone; G1 keeps its own throughout.
    assert sorted(metrics.purity(owner["lane"], 3).tolist()) == [0.5, 1.0]
    kept = metrics.kept_tracks(by_lane, offsets, boxes, track, 3, R, metrics.KEPT_SHARE)
    assert kept.tolist() == [True, True, True]
    rank_kept = metrics.kept_tracks(by_rank, offsets, boxes, track, 3, R, metrics.KEPT_SHARE)
    assert rank_kept.sum() < 3
