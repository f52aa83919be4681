"""Object identities: slots and links on hand-made frames, and their place in the dataset."""

import numpy as np
import pytest

from permakey.data import identity
from permakey.data.identity import GATE_PX, LINKED, SLOT, IdentityTracker, link_objects
from permakey.data.store import open_split, write_dataset
from permakey.data.summary import format_summary, summarize
from permakey.testing import make_sprites_dataset


def box(x, y, size=4.0):
    return [x, y, size, size]


def test_linking_follows_objects_of_one_category_that_move_side_by_side():
    tracker = IdentityTracker(LINKED)
    first = tracker.assign([0, 0], [box(10, 10), box(30, 10)])
    # Both move 5 px right; the Hungarian matching keeps each with its own.
    second = tracker.assign([0, 0], [box(35, 10), box(15, 10)])
    assert second.tolist() == first[::-1].tolist()


def test_linking_never_crosses_categories_nor_the_gate():
    tracker = IdentityTracker(LINKED)
    first = tracker.assign([0, 1], [box(10, 10), box(50, 50)])
    second = tracker.assign([1, 0], [box(10, 10), box(10 + GATE_PX + 1, 10)])
    assert set(second.tolist()).isdisjoint(first.tolist())  # new ids for both
    third = tracker.assign([1], [box(10 + GATE_PX - 1, 10)])
    assert third.tolist() == [second[0]]  # within the gate of category 1's box


def test_a_linked_object_missing_for_a_frame_comes_back_with_a_new_id():
    tracker = IdentityTracker(LINKED)
    (a,) = tracker.assign([0], [box(10, 10)])
    tracker.assign([], np.zeros((0, 4)))
    (b,) = tracker.assign([0], [box(10, 10)])
    assert a != b


def test_a_slot_keeps_its_id_in_consecutive_frames_however_far_it_moves():
    tracker = IdentityTracker(SLOT)
    (a,) = tracker.assign([0], [box(0, 40)], slots=[5])
    (b,) = tracker.assign([0], [box(70, 40)], slots=[5])  # through the tunnel
    assert a == b


def test_a_slot_back_far_away_or_as_another_category_is_a_new_object():
    tracker = IdentityTracker(SLOT)
    first = tracker.assign([0, 0, 0], [box(10, 10), box(40, 40), box(60, 60)], slots=[1, 2, 3])
    tracker.assign([0], [box(10, 10)], slots=[1])  # slots 2 and 3 empty for a frame
    back = tracker.assign(
        [0, 0, 1], [box(10, 11), box(40 + GATE_PX + 1, 40), box(60, 60)], slots=[1, 2, 3]
    )
    assert back[0] == first[0]  # never left
    assert back[1] not in first and back[2] not in first  # a new bullet; a new category
    (near,) = tracker.assign([0], [box(41 + GATE_PX, 41)], slots=[2])
    assert near == back[1]


def test_slot_ids_need_slots_and_methods_are_checked():
    with pytest.raises(ValueError, match="slots"):
        IdentityTracker(SLOT).assign([0], [box(1, 1)])
    with pytest.raises(ValueError, match="identity method"):
        IdentityTracker("guess")


def test_ids_start_again_each_episode_and_never_link_across_a_gap():
    offsets = np.array([0, 1, 2, 3, 4])
    category = np.zeros(4, int)
    boxes = np.array([box(10, 10)] * 4)
    episode = np.array([0, 0, 0, 1])
    step = np.array([0, 1, 5, 0])  # frame 2 does not follow frame 1
    ids = link_objects(offsets, category, boxes, episode, step)
    assert ids.tolist() == [0, 0, 1, 0]  # unique within episode 0; episode 1 counts anew


def test_the_paper_games_that_keep_slots():
    assert identity.identity_method("SpaceInvaders") == SLOT
    assert identity.identity_method("Frostbite") == LINKED  # floes renumbered
    assert identity.identity_method("BattleZone") == LINKED
    assert identity.identity_method("Qbert") == LINKED  # not checked: linked


def test_a_dataset_with_identities_reads_them_back(tmp_path):
    path = make_sprites_dataset(tmp_path / "s", frames={"train": 8, "val": 8, "test": 20},
                                episode_length=10, sprites=3)  # fmt: skip
    with open_split(path, "test") as split:
        offsets, _, _ = split.object_table()
        ids = split.object_ids()
        assert split.identity_method == SLOT and ids.dtype == np.int32
        assert len(ids) == offsets[-1] == 60
        assert ids.tolist() == [0, 1, 2] * 20  # the sprite's index, in both episodes
    assert "object identities: stored, OCAtari's object slots" in format_summary(summarize(path))


def _splits(objects):
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    return {s: {"frames": frames, "episode": [0, 0], "objects": objects} for s in ("train", "val", "test")}  # fmt: skip


def test_a_dataset_from_before_identities_stays_readable(tmp_path):
    objects = [[("Player", (1, 1, 2, 2))], [("Player", (2, 1, 2, 2))]]
    path = write_dataset(tmp_path / "old", _splits(objects), categories=["Player"])
    with open_split(path, "test") as split:
        assert split.identity_method is None and split.object_ids() is None
        assert split.objects(1)[0].category == "Player"
    summary = summarize(path)
    assert summary["object_ids"] is None
    assert "identities: not stored" in format_summary(summary)


def test_identities_leave_the_split_hash_as_it_was(tmp_path):
    from permakey.data.store import SplitWriter

    digests = []
    for ids in (None, [0], [1]):
        writer = SplitWriter(tmp_path / f"{ids}.h5", 1, (8, 8, 3))
        writer.append({"frames": np.zeros((8, 8, 3), np.uint8)}, 0, 0, 0, 0.0, [0], [box(1, 1)],
                      object_ids=ids)  # fmt: skip
        digests.append(writer.close(1))
    assert len(set(digests)) == 1  # the hash of the frames, columns and object table
