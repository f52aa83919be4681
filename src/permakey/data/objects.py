"""The OCAtari adapter: object ground truth read from the emulator's RAM.

This is the only module that imports ``ocatari`` (lazily: it pins numpy<2 and imports pygame
and cv2 at import time). Its quirks stay here:

- We step our own ``ALE/<Game>-v5`` environment and ask OCAtari only to read the objects from
  the RAM after each step, which is what ``OCAtari.step`` does internally. So its
  ``step()`` (which returns ``truncated`` before ``terminated``) is never called, frames are
  byte-identical with and without ground truth, and a failing detection cannot lose a step.
- Its object list holds ``NoObject`` placeholders (falsy) for empty slots: they are dropped.
- A game it does not cover, or raises on (Enduro in 2.2.1), yields no objects and one
  `GroundTruthWarning`; collection goes on.

Ground-truth hygiene (evaluation.md): a box is kept only if it overlaps the frame (it is
clipped to it) and the object is drawn in that frame. "Drawn" is tested cheaply on the raw
RGB frame: some pixel inside the box differs from the most common colour of the one-pixel
ring just outside the box (the local background). A flickering HUD item that is not drawn
leaves its box the colour of its surroundings and is dropped; a drawn object, even a
one-pixel bullet, differs from its ring. The ring, not the frame's most common colour, is the
reference because several games have regions of different background colour (Frostbite's
sky and water).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from permakey.errors import UserError

INSTALL_HINT = "pip install 'permakey[objects]'"


class GroundTruthWarning(UserWarning):
    """A game is collected without object ground truth (OCAtari cannot annotate it)."""


def _import_ocatari():
    """Imports OCAtari's RAM extraction; fails with the extra to install."""
    # OCAtari imports pygame, which prints a banner on import unless told not to.
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        from ocatari.core import AVAILABLE_GAMES
        from ocatari.ram import extract_ram_info
    except ImportError as err:
        raise UserError(
            f"object ground truth needs OCAtari ({err}): {INSTALL_HINT}, "
            "or collect without objects (--no-objects)"
        ) from err
    return AVAILABLE_GAMES, extract_ram_info


def _pack_rgb(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int32 with one value per colour."""
    f = frame.astype(np.int32)
    return (f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Clips boxes to the frame and says which keep a positive area.

    Args:
        boxes: (n, 4) float, (x, y, w, h) in pixels of a height x width frame.
        height: frame height in pixels.
        width: frame width in pixels.

    Returns:
        The clipped boxes (n, 4) float32 and a (n,) bool mask of those inside the frame
        (finite, with positive width and height after clipping).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    clipped = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    inside = np.isfinite(clipped).all(axis=1) & (clipped[:, 2] > 0) & (clipped[:, 3] > 0)
    return np.nan_to_num(clipped).astype(np.float32), inside


def _rectangle_pixels(y0, x0, y1, x1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pixel of the rectangles [y0, y1) x [x0, x1): (owner rectangle, row, column)."""
    height, width = y1 - y0, x1 - x0
    area = height * width
    owner = np.repeat(np.arange(len(area)), area)
    offset = np.arange(area.sum()) - np.repeat(np.cumsum(area) - area, area)
    return owner, y0[owner] + offset // width[owner], x0[owner] + offset % width[owner]


def drawn(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Says which boxes hold an object drawn in the frame (see the module docstring).

    Args:
        frame: (H, W, 3) uint8 RGB frame.
        boxes: (n, 4) float (x, y, w, h) in pixels of this frame, inside it (`clip_boxes`).

    Returns:
        (n,) bool: True where some pixel inside the box (rounded outwards to whole pixels)
        differs from the most common colour of the one-pixel ring around the box, or of the
        whole frame where the box fills the frame.
    """
    height, width = frame.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=bool)
    packed = _pack_rgb(frame)
    x0 = np.floor(boxes[:, 0]).astype(np.intp)
    y0 = np.floor(boxes[:, 1]).astype(np.intp)
    x1 = np.minimum(np.ceil(boxes[:, 0] + boxes[:, 2]).astype(np.intp), width)
    y1 = np.minimum(np.ceil(boxes[:, 1] + boxes[:, 3]).astype(np.intp), height)
    x1, y1 = np.maximum(x1, x0), np.maximum(y1, y0)
    # Vectorised over all boxes (MsPacman has 140 pills a frame): gather the pixels inside
    # each box and in its ring, label their colours, count colours per box.
    in_owner, in_rows, in_cols = _rectangle_pixels(y0, x0, y1, x1)
    ring_owner, ring_rows, ring_cols = _rectangle_pixels(
        np.maximum(y0 - 1, 0),
        np.maximum(x0 - 1, 0),
        np.minimum(y1 + 1, height),
        np.minimum(x1 + 1, width),
    )
    o = ring_owner
    ring = ~(
        (ring_rows >= y0[o]) & (ring_rows < y1[o]) & (ring_cols >= x0[o]) & (ring_cols < x1[o])
    )
    ring_owner = ring_owner[ring]
    keys = np.concatenate([packed[in_rows, in_cols], packed[ring_rows[ring], ring_cols[ring]]])
    colours, labels = np.unique(keys, return_inverse=True)
    labels = labels.reshape(-1)
    in_labels, ring_labels = labels[: len(in_owner)], labels[len(in_owner) :]
    n_colours = len(colours)
    histogram = np.bincount(ring_owner * n_colours + ring_labels, minlength=n * n_colours)
    background = histogram.reshape(n, n_colours).argmax(axis=1)  # (n,) colour label
    differs = (in_labels != background[in_owner]).astype(np.float64)
    result = np.bincount(in_owner, weights=differs, minlength=n) > 0
    no_ring = np.bincount(ring_owner, minlength=n) == 0
    if no_ring.any():  # boxes that fill the frame: compare with the frame's commonest colour
        values, counts = np.unique(packed, return_counts=True)
        mode = values[np.argmax(counts)]
        for i in np.flatnonzero(no_ring):
            result[i] = bool((packed[y0[i] : y1[i], x0[i] : x1[i]] != mode).any())
    return result


class ObjectDetector:
    """Reads the objects of each frame of one game from the emulator's RAM via OCAtari.

    Call `reset` at the start of every episode (OCAtari tracks objects across frames) and
    `detect` after every reset and step. If OCAtari does not cover the game, or raises at any
    point, the detector warns once (`GroundTruthWarning`), `available` becomes False and
    `detect` returns None from then on.

    Args:
        game: canonical ALE game name (see `permakey.data.games.resolve_game`).
        hud: include HUD objects (score, lives...): the paper counts the scoreboard as salient.

    Raises:
        UserError: the ``ocatari`` package is not installed (names the extra to install).
    """

    def __init__(self, game: str, hud: bool = True):
        available_games, self._ram = _import_ocatari()
        self.game = game
        self.hud = hud
        self.available = True
        self._objects: list = []
        if game not in available_games:
            self._fail(f"OCAtari does not cover {game}")

    def _fail(self, reason: str) -> None:
        self.available = False
        warnings.warn(
            f"{reason}: collecting {self.game} without object ground truth",
            GroundTruthWarning,
            stacklevel=3,
        )

    def reset(self) -> None:
        """Starts a new episode: fresh object slots."""
        if not self.available:
            return
        try:
            self._objects = self._ram.init_objects(self.game, self.hud)
        except Exception as err:  # any OCAtari failure means "no objects"
            self._fail(f"OCAtari failed on {self.game} ({type(err).__name__}: {err})")

    def detect(
        self, ram: np.ndarray, frame: np.ndarray
    ) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """The objects drawn in the current frame.

        Args:
            ram: (128,) uint8 RAM of the emulator after the step that produced ``frame``.
            frame: (210, 160, 3) uint8 RGB frame, used for the hygiene test.

        Returns:
            (categories, boxes, slots): n category names, (n, 4) float32 boxes (x, y, w, h)
            in pixels of ``frame``, clipped to it, and (n,) int32 slots, each object's
            position in OCAtari's object list (`permakey.data.identity` says for which games
            a slot is one object); objects outside the frame or not drawn are dropped. None
            once OCAtari has failed on this game.
        """
        if not self.available:
            return None
        try:
            self._ram.detect_objects_ram(self._objects, ram, self.game, self.hud)
            # NoObject placeholders are falsy: their slots stay empty.
            found = [(i, o.category, o.xywh) for i, o in enumerate(self._objects) if o]
        except Exception as err:  # any OCAtari failure means "no objects"
            self._fail(f"OCAtari failed on {self.game} ({type(err).__name__}: {err})")
            return None
        if not found:
            return [], np.zeros((0, 4), np.float32), np.zeros(0, np.int32)
        boxes, keep = clip_boxes(
            np.array([b for *_, b in found], dtype=np.float64), *frame.shape[:2]
        )
        keep[keep] = drawn(frame, boxes[keep])
        slots = np.array([s for s, *_ in found], dtype=np.int32)[keep]
        return [c for (_, c, _), k in zip(found, keep, strict=True) if k], boxes[keep], slots
