"""Atari game names: any spelling a user types -> the canonical ALE name and environment id.

The list of games is the list of ROMs that ale-py ships in its wheel (nothing is downloaded),
restricted to those with a registered ``ALE/<Game>-v5`` environment.
"""

from __future__ import annotations

import difflib
import functools

from permakey.errors import UserError


def _key(name: str) -> str:
    # "Space Invaders", "space_invaders", "SPACEINVADERS" all name the same game.
    return "".join(c for c in name.lower() if c.isalnum())


@functools.cache
def _games() -> dict[str, str]:
    """Normalised key -> canonical ALE name (e.g. "spaceinvaders" -> "SpaceInvaders")."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    roms = {_key(rom) for rom in ale_py.roms.get_all_rom_ids()}
    games = {}
    for env_id in gym.registry:
        if env_id.startswith("ALE/") and env_id.endswith("-v5"):
            name = env_id[len("ALE/") : -len("-v5")]
            if _key(name) in roms:
                games[_key(name)] = name
    return games


def all_games() -> list[str]:
    """Canonical names of every game whose ROM ale-py ships, sorted."""
    return sorted(_games().values())


def resolve_game(name: str) -> str:
    """Returns the canonical ALE name of a game, whatever its case or separators.

    Args:
        name: a game name such as "spaceinvaders", "Space_Invaders" or "MsPacman".

    Returns:
        The canonical name, e.g. "SpaceInvaders".

    Raises:
        UserError: the name matches no game; the message lists close matches.
    """
    games = _games()
    key = _key(name)
    if key in games:
        return games[key]
    close = difflib.get_close_matches(key, list(games), n=4, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join(games[k] for k in close)}?"
        if close
        else " (see ale-py's ROM list)"
    )
    raise UserError(f"unknown Atari game {name!r}{hint}")


def env_id(game: str) -> str:
    """The Gymnasium id of a game's v5 environment, e.g. "ALE/SpaceInvaders-v5".

    Args:
        game: any spelling accepted by `resolve_game`.
    """
    return f"ALE/{resolve_game(game)}-v5"
