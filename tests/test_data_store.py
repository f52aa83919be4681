"""The dataset format: round trip of every array, and one-line errors for bad files."""

import pickle

import h5py
import numpy as np
import pytest

from permakey.data.store import open_split, read_meta, write_dataset
from permakey.errors import UserError


def _split(n, first_episode, rng):
    frames = rng.integers(0, 256, size=(n, 84, 84, 3), dtype=np.uint8)
    episode = np.repeat(np.arange(first_episode, first_episode + 3), -(-n // 3))[:n]
    objects = [
        [("Player", (i % 80, 2.5, 3.0, 4.0))] + [("Ball", (1, 2, 1, 1))] * (i % 3) for i in range(n)
    ]
    return {"frames": frames, "episode": episode, "reward": np.arange(n) * 0.5, "objects": objects}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(0)
    splits = {"train": _split(20, 0, rng), "val": _split(7, 3, rng), "test": _split(9, 6, rng)}
    path = write_dataset(
        tmp_path_factory.mktemp("store") / "ds", splits, ["Player", "Ball"], game="Pong"
    )
    return path, splits


def test_round_trip_of_frames_columns_and_objects(dataset):
    path, splits = dataset
    with open_split(path, "train") as split:
        data = splits["train"]
        assert len(split) == 20 and split.frames.shape == (20, 84, 84, 3)
        np.testing.assert_array_equal(split.frames[()], data["frames"])
        np.testing.assert_array_equal(split.read_frames([7, 2, 7]), data["frames"][[7, 2, 7]])
        np.testing.assert_array_equal(split.episode, data["episode"])
        assert split.step.tolist()[:8] == [0, 1, 2, 3, 4, 5, 6, 0]
        np.testing.assert_allclose(split.reward, data["reward"])
        assert split.categories == ["Player", "Ball"] and split.has_objects
        offsets, category, boxes = split.object_table()
        assert offsets.shape == (21,) and offsets[-1] == len(category) == len(boxes)
        objects = split.objects(5)
        assert [o.category for o in objects] == ["Player", "Ball", "Ball"]
        np.testing.assert_allclose(objects[0].box, [5, 2.5, 3, 4])
        assert objects[0].box.dtype == np.float32
        identity = split.identity()
        assert (
            identity["game"] == "Pong"
            and identity["split"] == "train"
            and len(identity["sha256"]) == 64
        )
    assert read_meta(path)["splits"]["val"]["frames"] == 7


def test_split_pickles_without_an_open_file_and_reads_after(dataset):
    path, splits = dataset
    split = open_split(path, "test")
    assert split.frames.shape[0] == 9  # opens the file in this process
    clone = pickle.loads(pickle.dumps(split))
    np.testing.assert_array_equal(clone.read_frames([3]), splits["test"]["frames"][[3]])


def _one_line(err):
    message = str(err.value)
    assert "\n" not in message
    return message


def test_unknown_split_and_missing_folder(dataset, tmp_path):
    path, _ = dataset
    with pytest.raises(UserError) as err:
        open_split(path, "training")
    assert "'training'" in _one_line(err)
    with pytest.raises(UserError) as err:
        open_split(tmp_path / "nowhere", "train")
    assert "nowhere" in _one_line(err)


def _copy(path, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    return copy


def test_missing_truncated_and_foreign_files(dataset, tmp_path):
    copy = _copy(dataset[0], tmp_path)
    (copy / "val.h5").unlink()
    with pytest.raises(UserError) as err:
        open_split(copy, "val")
    assert "val.h5" in _one_line(err)

    data = (copy / "train.h5").read_bytes()
    (copy / "train.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        open_split(copy, "train")
    assert "train.h5" in _one_line(err)

    with h5py.File(copy / "test.h5", "w") as f:
        f["frames"] = np.zeros((9, 84, 84, 3), np.uint8)
    with pytest.raises(UserError) as err:
        open_split(copy, "test")
    assert "test.h5" in _one_line(err) and "foreign" in str(err.value)


def test_a_split_file_from_another_dataset_is_refused(dataset, tmp_path):
    path, splits = dataset
    other = write_dataset(
        tmp_path / "other",
        {**splits, "val": _split(7, 3, np.random.default_rng(9))},
        ["Player", "Ball"],
    )
    (other / "val.h5").replace(_copy(path, tmp_path) / "val.h5")
    with pytest.raises(UserError) as err:
        open_split(tmp_path / "copy", "val")
    assert "val.h5" in _one_line(err)


def test_foreign_or_broken_meta(tmp_path):
    (tmp_path / "meta.json").write_text('{"format": "something-else"}')
    with pytest.raises(UserError) as err:
        read_meta(tmp_path)
    assert "meta.json" in _one_line(err)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(UserError) as err:
        read_meta(tmp_path)
    assert "meta.json" in _one_line(err)
