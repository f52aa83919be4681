"""Which OCAtari object categories count in the evaluation, per game, in one place.

Every category of a dataset falls in one of three groups:

- ``headline``: the objects of the headline metrics (object recall, and with ``small`` the
  boxes that keypoint precision counts). Players, enemies, balls, and HUD items such as
  scores and lives (the paper counts the scoreboard as salient).
- ``small``: objects that are real but tiny and transient (bullets, missiles, shots: about
  0.5 px wide at 84 x 84). A keypoint on one counts for precision, and their recall is
  reported on its own line, but they do not enter the headline recall, which they would
  otherwise dominate in frames full of bullets.
- ``excluded``: not evaluated at all: tiny static items present by the hundred (MsPacman's
  ``Pill``, and ``PowerPill``, 4 static pellets of 2 x 3 px) and level scenery that OCAtari
  reports as objects (MontezumaRevenge's platforms, walls, ladders, ropes), whose large boxes
  would make precision trivially high.

A game missing from the table keeps every category in ``headline``. The command line changes
the selection with `select_categories` (``--categories`` and ``--exclude``).

Independently of the groups, the identity metrics split object tracks into *moving* and
*static* categories (`CategorySelection.moving`): the player, enemies, balls, missiles and
floes move; HUD items, shields, blocks and scenery do not. `_MOVING` says which per game, as
the game is played, not as measured on some frames (a random policy may leave the player
nearly still). For a game not in it, the moving categories are measured on the evaluated
frames instead (`permakey.evaluation.metrics.category_motion`: a category moves when its
objects move more than `MOVING_PX` per step on average), and the selection says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HEADLINE = "headline"
SMALL = "small"
EXCLUDED = "excluded"

# Per game (normalised name, see `normalise_game`): categories in the small and excluded
# groups; every other category of the dataset is a headline category.
_SMALL: dict[str, tuple[str, ...]] = {
    "spaceinvaders": ("Bullet",),
    "seaquest": ("PlayerMissile", "EnemyMissile"),
    "battlezone": ("Shot",),
}
_EXCLUDED: dict[str, tuple[str, ...]] = {
    "mspacman": ("Pill", "PowerPill"),
    "montezumarevenge": ("Platform", "Wall", "Ladder", "Rope"),
}
# Per game: the categories of objects that move (every other category is static). MsPacman's
# Fruit is static here: OCAtari 2.2.1 never moves its box from where it starts.
_MOVING: dict[str, tuple[str, ...]] = {
    "frostbite": ("Player", "Bear", "Bird", "Crab", "Clam", "GreenFish", "FloatingBlock"),
    "spaceinvaders": ("Player", "Alien", "Bullet", "Satellite"),
    "battlezone": ("Blue_Tank", "Red_Thing", "Radar_Content", "Shot"),
    "mspacman": ("Player", "Ghost"),
    "seaquest": (
        "Player",
        "Shark",
        "Submarine",
        "SurfaceSubmarine",
        "Diver",
        "PlayerMissile",
        "EnemyMissile",
    ),
    "pong": ("Player", "Enemy", "Ball"),
    "breakout": ("Player", "Ball"),
    "montezumarevenge": ("Player", "Skull", "Spider", "Snake"),
}
# Mean movement per step, in pixels, above which a category of a game not in `_MOVING` moves.
MOVING_PX = 0.1
KNOWN_GAMES = frozenset(_SMALL) | frozenset(_EXCLUDED) | frozenset(_MOVING)


@dataclass(frozen=True)
class CategorySelection:
    """The group of every category of one dataset.

    Attributes:
        headline: categories of the headline recall (and precision).
        small: categories counted for precision and reported separately for recall.
        excluded: categories left out of every metric.
        source: how the selection was made, for the report (e.g. "default for MsPacman").
        moving: the categories whose objects move (the others are static), for the identity
            metrics; None until measured for a game not in the table, and in results
            written before identities were measured.
        moving_source: how ``moving`` was made ("table for MsPacman", "measured...").
    """

    headline: tuple[str, ...]
    small: tuple[str, ...]
    excluded: tuple[str, ...]
    source: str
    moving: tuple[str, ...] | None = None
    moving_source: str | None = None

    def group(self, category: str) -> str:
        """The group (`HEADLINE`, `SMALL` or `EXCLUDED`) of a category name."""
        if category in self.headline:
            return HEADLINE
        if category in self.small:
            return SMALL
        return EXCLUDED

    def to_json(self) -> dict:
        out = {
            HEADLINE: list(self.headline),
            SMALL: list(self.small),
            EXCLUDED: list(self.excluded),
            "source": self.source,
        }
        if self.moving is not None:  # absent, as in files from before it, when not known
            out |= {"moving": list(self.moving), "moving_source": self.moving_source}
        return out

    @classmethod
    def from_json(cls, data: dict) -> CategorySelection:
        """The selection that `to_json` wrote (``moving`` None in files from before it)."""
        moving = data.get("moving")
        return cls(
            headline=tuple(data[HEADLINE]),
            small=tuple(data[SMALL]),
            excluded=tuple(data[EXCLUDED]),
            source=data["source"],
            moving=None if moving is None else tuple(moving),
            moving_source=data.get("moving_source"),
        )


def normalise_game(game: str) -> str:
    """'ALE/MsPacman-v5', 'MsPacman', 'ms_pacman' -> 'mspacman'."""
    name = game.split("/")[-1]
    name = re.sub(r"-v\d+$", "", name)
    return re.sub(r"[^a-z0-9]", "", name.lower())


def default_categories(game: str, categories: Sequence[str]) -> CategorySelection:
    """The table's default groups for the categories of a dataset of ``game``.

    Args:
        game: the game's name in any common spelling ('MsPacman', 'ALE/MsPacman-v5').
        categories: every category name of the dataset, in its order.

    Returns:
        The selection; an unknown game keeps every category in the headline, and its moving
        categories are left to be measured (None).
    """
    key = normalise_game(game)
    small = set(_SMALL.get(key, ()))
    excluded = set(_EXCLUDED.get(key, ()))
    source = (
        f"default for {game}" if key in KNOWN_GAMES else f"all categories ({game} not in table)"
    )
    moving = None
    if key in _MOVING:
        moving = tuple(c for c in categories if c in _MOVING[key])
    return CategorySelection(
        headline=tuple(c for c in categories if c not in small and c not in excluded),
        small=tuple(c for c in categories if c in small),
        excluded=tuple(c for c in categories if c in excluded),
        source=source,
        moving=moving,
        moving_source=f"table for {game}" if moving is not None else None,
    )


def parse_names(text: str | None) -> list[str] | None:
    """'Player, Alien' -> ['Player', 'Alien']; None or '' -> None."""
    if not text:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def select_categories(
    game: str,
    categories: Sequence[str],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> CategorySelection:
    """The default selection, changed by the command line's flags.

    Args:
        game: the dataset's game.
        categories: every category name of the dataset.
        include: ``--categories``: exactly these are the headline categories; the default
            small categories not named stay small, every other category is excluded.
        exclude: ``--exclude``: these are removed from the headline and small groups.

    Returns:
        The selection.

    Raises:
        ValueError: a named category is not in the dataset (the message lists the valid ones).
    """
    include = list(include) if include is not None else None
    exclude = list(exclude) if exclude is not None else []
    unknown = [c for c in (include or []) + exclude if c not in categories]
    if unknown:
        raise ValueError(
            f"unknown object categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(unknown)}; the dataset has: {', '.join(categories)}"
        )
    selection = default_categories(game, categories)
    if include is None and not exclude:
        return selection
    headline = set(include) if include is not None else set(selection.headline)
    small = set(selection.small) - headline
    headline -= set(exclude)
    small -= set(exclude)
    flags = []
    if include is not None:
        flags.append(f"--categories {','.join(include)}")
    if exclude:
        flags.append(f"--exclude {','.join(exclude)}")
    return CategorySelection(
        headline=tuple(c for c in categories if c in headline),
        small=tuple(c for c in categories if c in small),
        excluded=tuple(c for c in categories if c not in headline and c not in small),
        source=f"{selection.source}, changed by {' '.join(flags)}",
        moving=selection.moving,
        moving_source=selection.moving_source,
    )
