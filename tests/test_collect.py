"""Collecting from the real emulator with real OCAtari ground truth (a few hundred frames)."""

import json
from collections import Counter

import numpy as np
import pytest

from permakey.cli.main import main
from permakey.data.collect import collect
from permakey.data.frames import resize_frame
from permakey.data.games import env_id, resolve_game
from permakey.data.objects import GroundTruthWarning, clip_boxes, drawn
from permakey.data.policies import RandomPolicy, parse_policy
from permakey.data.store import SPLITS, open_split, read_meta
from permakey.errors import UserError

COUNTS = {"frames": 120, "val_frames": 40, "test_frames": 40}
PADDLE = (92, 186, 92)  # Pong's player paddle (right side), green in the raw RGB frame


@pytest.fixture(scope="module")
def pong(tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "pong"
    return collect("pong", out, seed=1, keep_raw=True, progress=False, **COUNTS)


@pytest.fixture(scope="module")
def invaders(tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "invaders"
    return collect("Space_Invaders", out, seed=0, policy="random-hold:4", progress=False, **COUNTS)


def _arrays(path):
    arrays = {}
    for name in SPLITS:
        with open_split(path, name) as split:
            arrays[name] = (
                split.frames[()],
                split.episode,
                split.step,
                split.action,
                split.reward,
                *split.object_table(),
            )
    return arrays


@pytest.mark.parametrize("name", ["pong", "invaders"])
def test_two_real_games_are_collected_with_objects(name, request):
    path = request.getfixturevalue(name)
    meta = read_meta(path)
    assert meta["has_objects"] and "Player" in meta["categories"]
    assert meta["env_id"] == {"pong": "ALE/Pong-v5", "invaders": "ALE/SpaceInvaders-v5"}[name]
    for split, key in (("train", "frames"), ("val", "val_frames"), ("test", "test_frames")):
        with open_split(path, split) as data:
            assert len(data) == COUNTS[key] == meta["splits"][split]["frames"]
            assert data.frames.shape == (COUNTS[key], 84, 84, 3) and data.frames.dtype == np.uint8
            offsets, category, boxes = data.object_table()
            assert len(category) >= len(data)  # at least one object per frame on average
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 84 + 1e-4).all()
            assert (boxes[:, 1] + boxes[:, 3] <= 84 + 1e-4).all() and (boxes[:, 2:] > 0).all()
            assert data.frames[()].std() > 5  # real pictures, not blank


@pytest.mark.parametrize("name", ["pong", "invaders"])
def test_split_is_by_episode_with_consecutive_steps(name, request):
    path = request.getfixturevalue(name)
    seen = {}
    for split in SPLITS:
        with open_split(path, split) as data:
            for episode in np.unique(data.episode):
                assert episode not in seen, f"episode {episode} in {seen.get(episode)} and {split}"
                seen[episode] = split
                rows = np.flatnonzero(data.episode == episode)
                assert (np.diff(rows) == 1).all()  # contiguous
                assert data.step[rows].tolist() == list(range(len(rows)))  # from its first frame
    # Filled in the order test, val, train: test holds the first episode.
    assert seen[0] == "test"


def test_player_box_covers_the_paddle(pong):
    with open_split(pong, "train") as data:
        raw = data.raw_frames[()]
        checked = 0
        for i in range(len(data)):
            paddle = (raw[i] == PADDLE).all(axis=-1)
            paddle[:34] = False  # the player's score (same colour) is at the top
            players = [o for o in data.objects(i) if o.category == "Player"]
            if not paddle.any():
                continue
            assert len(players) == 1
            x, y, w, h = players[0].box * [160 / 84, 210 / 84, 160 / 84, 210 / 84]  # raw pixels
            ys, xs = np.nonzero(paddle)
            # OCAtari's paddle box is often one raw row off the drawn paddle (16 rows, box 15)
            # and a row or two short at the top wall: allow 1 raw pixel (0.4 px at 84 x 84).
            t = 1.01
            inside = (xs >= x - t) & (xs < x + w + t) & (ys >= y - t) & (ys < y + h + t)
            assert inside.mean() >= 0.85, f"frame {i}: paddle pixels outside the Player box"
            box = paddle[round(y) : round(y + h), round(x) : round(x + w)]
            assert box.mean() > 0.8, f"frame {i}: Player box mostly not paddle"
            checked += 1
        assert checked > len(data) // 2


@pytest.mark.parametrize("name", ["pong", "invaders"])
def test_objects_keep_their_slot_over_an_episode(name, request):
    """Pong and SpaceInvaders keep OCAtari's slots: one player, 36 aliens in fixed slots."""
    path = request.getfixturevalue(name)
    assert read_meta(path)["object_ids"]["method"] == "slot"
    with open_split(path, "train") as data:
        offsets, category, _ = data.object_table()
        ids = data.object_ids()
        player = data.categories.index("Player")
        for f in range(len(data)):  # ids are distinct within a frame
            frame_ids = ids[offsets[f] : offsets[f + 1]]
            assert len(set(frame_ids.tolist())) == len(frame_ids)
        episode_of_object = np.repeat(data.episode, np.diff(offsets))
        for episode in np.unique(data.episode):  # the player is one object in its episode
            players = ids[(category == player) & (episode_of_object == episode)]
            assert len(set(players.tolist())) == 1


def test_a_game_whose_slots_move_is_linked(tmp_path):
    out = collect("Frostbite", tmp_path / "f", frames=20, val_frames=5, test_frames=30,
                  progress=False)  # fmt: skip
    assert read_meta(out)["object_ids"] == {"method": "linked", "gate_px": 13.0}
    with open_split(out, "test") as data:
        offsets, category, _ = data.object_table()
        ids = data.object_ids()
        floe = data.categories.index("FloatingBlock")
        first, last = ids[offsets[0] : offsets[1]], ids[offsets[-2] : offsets[-1]]
        # Floes drift by under a pixel a step: every floe of the last frame is one of the first.
        floes = category[offsets[-2] : offsets[-1]] == floe
        assert set(last[floes].tolist()) <= set(first.tolist())


def test_same_seed_same_bytes_other_seed_differs(tmp_path, pong):
    small = {"frames": 30, "val_frames": 10, "test_frames": 10, "progress": False}
    a = collect("Pong", tmp_path / "a", seed=1, **small)
    b = collect("Pong", tmp_path / "b", seed=1, **small)
    c = collect("Pong", tmp_path / "c", seed=2, **small)
    d = collect("Pong", tmp_path / "d", seed=1, objects=False, **small)
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    for split in SPLITS:
        for x, y in zip(arrays_a[split], arrays_b[split], strict=True):
            assert x.tobytes() == y.tobytes()
    assert read_meta(a) == read_meta(b)
    assert read_meta(a)["splits"] != read_meta(c)["splits"]
    assert any(
        (x != y).any() for x, y in zip(arrays_a["train"][:4], _arrays(c)["train"][:4], strict=True)
    )
    # Ground truth does not change what is collected, and the start matches the bigger run.
    for split in SPLITS:
        assert (arrays_a[split][0] == _arrays(d)[split][0]).all()
    with open_split(pong, "test") as big:
        np.testing.assert_array_equal(big.frames[:10], arrays_a["test"][0])


class _Interrupt:
    def __init__(self, after):
        self.calls = 0
        self.after = after

    def __call__(self, observation):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return 0


def test_interrupted_collection_leaves_nothing_and_keeps_the_old_dataset(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        collect(
            "pong",
            tmp_path / "new",
            frames=50,
            val_frames=10,
            test_frames=10,
            policy=_Interrupt(30),
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []  # no dataset, no temporary folder

    old = collect(
        "pong",
        tmp_path / "old",
        frames=20,
        val_frames=5,
        test_frames=5,
        objects=False,
        progress=False,
    )
    before = (old / "meta.json").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        collect(
            "pong",
            old,
            frames=50,
            val_frames=10,
            test_frames=10,
            policy=_Interrupt(30),
            overwrite=True,
            progress=False,
        )
    assert (old / "meta.json").read_bytes() == before and len(open_split(old, "train")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]

    # Without overwrite an existing complete dataset of the same settings is left alone, with
    # a message (other settings are an error: tests/test_faults_data.py).
    collect("pong", old, frames=20, val_frames=5, test_frames=5, objects=False, progress=False)
    assert (old / "meta.json").read_bytes() == before
    assert "already holds a complete dataset" in capsys.readouterr().err


def test_a_game_ocatari_fails_on_is_collected_without_objects(tmp_path):
    with pytest.warns(GroundTruthWarning, match="Enduro"):
        out = collect(
            "enduro", tmp_path / "enduro", frames=10, val_frames=5, test_frames=5, progress=False
        )
    meta = read_meta(out)
    assert not meta["has_objects"] and meta["categories"] == []
    with open_split(out, "train") as data:
        assert len(data) == 10 and data.objects(3) == [] and not data.has_objects


def test_require_objects_turns_missing_ground_truth_into_an_error(tmp_path, capsys):
    out = tmp_path / "enduro"
    sizes = ["--frames", "10", "--val-frames", "5", "--test-frames", "5", "--quiet"]
    assert main(["collect", "enduro", "--out", str(out), *sizes, "--require-objects"]) == 2
    err = capsys.readouterr().err
    assert "Enduro" in err and "--require-objects" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary folder left
    args = ["collect", "pong", "--out", str(out), "--require-objects", "--no-objects"]
    assert main(args) == 2 and "contradict" in capsys.readouterr().err


def test_game_names():
    assert resolve_game("spaceinvaders") == "SpaceInvaders"
    assert resolve_game("MONTEZUMA_REVENGE") == "MontezumaRevenge"
    assert env_id("mspacman") == "ALE/MsPacman-v5"
    for game in [
        "Frostbite",
        "SpaceInvaders",
        "Enduro",
        "BattleZone",
        "MsPacman",
        "Seaquest",
        "Pong",
        "Breakout",
    ]:
        assert resolve_game(game.lower()) == game
    with pytest.raises(UserError) as err:
        resolve_game("spaceinvader")
    assert "'spaceinvader'" in str(err.value) and "SpaceInvaders" in str(err.value)


def test_area_resize_keeps_one_pixel_objects_that_nearest_drops():
    kept = {"area": 0, "nearest": 0}
    for y in range(0, 210, 21):
        for x in range(160):
            frame = np.zeros((210, 160, 3), np.uint8)
            frame[y, x] = 255
            for method in kept:
                kept[method] += resize_frame(frame, 84, method).max() > 0
    assert kept["area"] == 10 * 160  # every position survives
    assert kept["nearest"] < 0.3 * 10 * 160


def test_hygiene_drops_boxes_outside_the_frame_or_not_drawn():
    frame = np.zeros((20, 20, 3), np.uint8)
    frame[5:8, 5:8] = (200, 10, 10)  # a drawn object
    frame[12:20, 0:20] = (0, 0, 90)  # a second background region
    boxes, inside = clip_boxes(
        np.array([[5, 5, 3, 3], [30, 2, 4, 4], [-2, 14, 4, 3], [10, 1, 3, 3]]), 20, 20
    )
    assert inside.tolist() == [True, False, True, True]
    np.testing.assert_allclose(boxes[2], [0, 14, 2, 3])  # clipped to the frame
    # Drawn, empty box on the blue region, empty box on black: only the first is drawn.
    assert drawn(frame, boxes[[0, 2, 3]]).tolist() == [True, False, False]


def _drawn_reference(frame, box):
    """The hygiene rule, one box at a time, written plainly."""
    x, y, w, h = box
    x0, y0, x1, y1 = int(np.floor(x)), int(np.floor(y)), int(np.ceil(x + w)), int(np.ceil(y + h))
    colours = [tuple(c) for c in frame.reshape(-1, 3)]
    grown = {(r, c) for r in range(y0 - 1, y1 + 1) for c in range(x0 - 1, x1 + 1)}
    ring = [
        tuple(frame[r, c])
        for r, c in grown
        if 0 <= r < frame.shape[0]
        and 0 <= c < frame.shape[1]
        and not (y0 <= r < y1 and x0 <= c < x1)
    ]
    background = Counter(ring or colours).most_common(1)[0][0]
    return any(tuple(p) != background for p in frame[y0:y1, x0:x1].reshape(-1, 3))


def test_vectorised_hygiene_matches_the_plain_rule():
    rng = np.random.default_rng(0)
    for _ in range(20):
        frame = np.zeros((30, 24, 3), np.uint8)
        for _ in range(6):  # a few rectangles of few colours: ties and uniform patches happen
            y, x = rng.integers(0, 30), rng.integers(0, 24)
            frame[y : y + rng.integers(1, 8), x : x + rng.integers(1, 8)] = rng.integers(0, 3) * 100
        raw = np.c_[
            rng.uniform(-3, 24, 15),
            rng.uniform(-3, 30, 15),
            rng.uniform(0.3, 9, 15),
            rng.uniform(0.3, 9, 15),
        ]
        boxes, inside = clip_boxes(np.r_[raw, [[0, 0, 24, 30]]], 30, 24)
        boxes = boxes[inside]
        expected = [_drawn_reference(frame, b) for b in boxes]
        assert drawn(frame, boxes).tolist() == expected


def test_hold_policy_holds_actions():
    assert parse_policy("random") == 1 and parse_policy("random-hold:8") == 8
    policy = RandomPolicy(6, np.random.default_rng(0), hold=5)
    actions = [policy(None) for _ in range(50)]
    assert all(len(set(actions[i : i + 5])) == 1 for i in range(0, 50, 5))
    assert len(set(actions)) > 1
    for bad in ("random-hold:0", "random-hold:x", "greedy"):
        with pytest.raises(UserError):
            parse_policy(bad)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["pong", "--frames", "0"], "0"),
        (["pong", "--seed", "-1"], "-1"),
        (["spaceinvader"], "SpaceInvaders"),
        (["pong", "--policy", "greedy"], "greedy"),
    ],
)
def test_cli_bad_input_is_one_line(args, named, tmp_path, capsys):
    assert main(["collect", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("permakey: error:") and "\n" not in err and named in err
    assert not (tmp_path / "x").exists()


def test_cli_unwritable_folder_and_missing_dataset(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["collect", "pong", "--frames", "5", "--out", str(tmp_path / "file" / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "file" in err
    assert main(["datasets", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing" in err


def test_cli_collect_and_summary(tmp_path, capsys):
    out = tmp_path / "ds"
    args = [
        "collect",
        "Pong",
        "--frames",
        "20",
        "--val-frames",
        "5",
        "--test-frames",
        "5",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main([*args, "--policy", "random-hold:3", "--resize", "nearest", "--info"]) == 0
    text = capsys.readouterr().out
    assert "Pong" in text and "20 frames" in text and "Player" in text and "MiB" in text
    meta = json.loads((out / "meta.json").read_text())
    assert meta["policy"] == "random-hold:3" and meta["resize"] == "nearest"
    assert main(["datasets", str(out)]) == 0
    assert capsys.readouterr().out.strip() == text.strip()
