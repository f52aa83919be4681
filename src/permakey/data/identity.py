"""Object identity over an episode: which object of one frame is the same object in the next.

Every stored object gets an id (int32, unique within its episode; a track is the pair
(episode, id)), made in one of two ways, recorded in meta.json as ``object_ids``:

- ``"slot"``: OCAtari's object slot, the object's position in its RAM object list, for the
  games where `scripts/identity_check.py` finds the slots stable (`SLOT_GAMES`). A slot keeps
  its id while its object stays visible, from frame to frame, however far it moves (a ghost
  through the tunnel, Pong's paddle at 10 px a step). A slot gets a new id when its
  object changes category, or comes back after frames without it more than `GATE_PX` from
  where it was last seen: OCAtari reuses a slot for the next bullet, shark or diver.
- ``"linked"``: boxes linked between consecutive frames of an episode, for every other game,
  and at evaluation time for datasets collected before ids were stored. In each category
  the objects of two consecutive frames are matched one to one by the Hungarian algorithm
  (`scipy.optimize.linear_sum_assignment`) on the distance between box centres; a pair more
  than `GATE_PX` apart is not linked. An unmatched object starts a new id; an object missing
  for one frame (a flickering sprite) comes back with a new id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

SLOT = "slot"
LINKED = "linked"
METHODS = (SLOT, LINKED)
# Largest centre distance, in pixels of the 84 x 84 stored frame, between two boxes that can be
# one object: above the fastest steady motion in one step (4 emulator frames) measured on the
# paper's games (scripts/identity_check.py prints it per category), Breakout's paddle at
# 12.6 px and Pong's at 9.6 px. Longer jumps are a new object in an old slot (Seaquest's
# missile fired again) or a reset (MsPacman's ghosts sent home).
GATE_PX = 13.0
# Games whose OCAtari slots hold one object each, as `permakey.data.games` names them: of the
# paper's games, scripts/identity_check.py (3,000 frames each) finds them stable on all but
# Frostbite (floes renumbered when they split) and BattleZone (tank slots trade objects and
# categories); Enduro has no objects (OCAtari 2.2.1 raises on it). Games not checked link.
SLOT_GAMES = frozenset(
    {"Breakout", "MontezumaRevenge", "MsPacman", "Pong", "Seaquest", "SpaceInvaders"}
)


def identity_method(game: str) -> str:
    """How the ids of ``game``'s objects are made: `SLOT` or `LINKED`.

    Args:
        game: canonical game name (`permakey.data.games.resolve_game`).
    """
    return SLOT if game in SLOT_GAMES else LINKED


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) (x, y, w, h) boxes -> (n, 2) float64 (x, y) centres."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes[:, :2] + boxes[:, 2:] / 2


@dataclass
class _Slot:
    id: int
    category: int
    centre: np.ndarray
    frame: int


@dataclass
class IdentityTracker:
    """Gives the objects of an episode their ids, one frame after another.

    Call `reset` at the start of every episode and `assign` on every frame, in order.

    Args:
        method: `SLOT` (``assign`` needs the objects' slots) or `LINKED`.
        gate: `GATE_PX`: the farthest, in pixels, that one object's centre may move
            between two frames it is seen in.
    """

    method: str = LINKED
    gate: float = GATE_PX
    # The episode so far: the next free id, the frame count, each slot's last object
    # (`SLOT`), the previous frame's categories, centres and ids (`LINKED`).
    _next: int = field(default=0, init=False)
    _frame: int = field(default=0, init=False)
    _slots: dict[int, _Slot] = field(default_factory=dict, init=False)
    _previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, init=False)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown identity method {self.method!r}; choose from {METHODS}")

    def reset(self) -> None:
        """Starts a new episode: ids count from 0 again."""
        self._next = 0
        self.forget()

    def forget(self) -> None:
        """The next frame does not follow the last one: no object links to an earlier one."""
        self._frame, self._slots, self._previous = 0, {}, None

    def _new_ids(self, count: int) -> np.ndarray:
        ids = np.arange(self._next, self._next + count, dtype=np.int32)
        self._next += count
        return ids

    def assign(
        self, categories: np.ndarray, boxes: np.ndarray, slots: np.ndarray | None = None
    ) -> np.ndarray:
        """The ids of one frame's objects.

        Args:
            categories: (n,) int category index of each object.
            boxes: (n, 4) float (x, y, w, h) in pixels (the gate's unit).
            slots: (n,) int OCAtari slot of each object, distinct; needed by `SLOT`.

        Returns:
            (n,) int32 ids, distinct, unique within the episode for distinct objects.
        """
        categories = np.asarray(categories, dtype=np.int64).reshape(-1)
        centres = box_centres(boxes)
        if self.method == SLOT:
            if slots is None:
                raise ValueError("slot identities need the objects' slots")
            ids = self._by_slot(categories, centres, np.asarray(slots, dtype=np.int64))
        else:
            ids = self._by_link(categories, centres)
        self._frame += 1
        return ids

    def _by_slot(self, categories, centres, slots) -> np.ndarray:
        ids = np.empty(len(slots), dtype=np.int32)
        for i, (slot, category) in enumerate(zip(slots.tolist(), categories.tolist(), strict=True)):
            known = self._slots.get(slot)
            same = (
                known is not None
                and known.category == category
                and (
                    known.frame == self._frame - 1
                    or np.linalg.norm(centres[i] - known.centre) <= self.gate
                )
            )
            ids[i] = known.id if same else self._new_ids(1)[0]
            self._slots[slot] = _Slot(int(ids[i]), category, centres[i], self._frame)
        return ids

    def _by_link(self, categories, centres) -> np.ndarray:
        ids = np.full(len(categories), -1, dtype=np.int32)
        if self._previous is not None:
            before_category, before_centre, before_id = self._previous
            for category in np.intersect1d(categories, before_category):
                now = np.flatnonzero(categories == category)
                then = np.flatnonzero(before_category == category)
                distance = np.linalg.norm(
                    centres[now, None] - before_centre[None, then], axis=-1
                )  # (n_now, n_then)
                # Pairs beyond the gate cost more than any gated matching, so they are
                # chosen only where nothing else is left, and are then dropped.
                cost = np.where(distance <= self.gate, distance, 1e6)
                rows, cols = linear_sum_assignment(cost)
                linked = distance[rows, cols] <= self.gate
                ids[now[rows[linked]]] = before_id[then[cols[linked]]]
        unmatched = ids < 0
        ids[unmatched] = self._new_ids(int(unmatched.sum()))
        self._previous = (categories, centres, ids)
        return ids


def link_objects(
    offsets: np.ndarray,
    category: np.ndarray,
    boxes: np.ndarray,
    episode: np.ndarray,
    step: np.ndarray,
    gate: float = GATE_PX,
) -> np.ndarray:
    """`LINKED` ids for a stored object table (datasets collected without ids).

    Args:
        offsets: (N + 1,) int, objects of frame n are ``offsets[n]:offsets[n + 1]``.
        category: (M,) int category index of each object.
        boxes: (M, 4) float (x, y, w, h) in stored-frame pixels.
        episode: (N,) int episode of each frame.
        step: (N,) int step of each frame within its episode; no object links across frames
            that do not follow each other.
        gate: see `IdentityTracker`.

    Returns:
        (M,) int32 ids, unique within each episode.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    category = np.asarray(category)
    boxes = np.asarray(boxes)
    tracker = IdentityTracker(LINKED, gate)
    ids = np.empty(offsets[-1], dtype=np.int32)
    episode, step = np.asarray(episode), np.asarray(step)
    for n in range(len(offsets) - 1):
        if n == 0 or episode[n] != episode[n - 1]:
            tracker.reset()
        elif step[n] != step[n - 1] + 1:
            tracker.forget()
        rows = slice(offsets[n], offsets[n + 1])
        ids[rows] = tracker.assign(category[rows], boxes[rows])
    return ids
