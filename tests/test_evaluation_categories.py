"""The per-game category table and its command-line overrides."""

import pytest

from permakey.evaluation.categories import (
    EXCLUDED,
    HEADLINE,
    SMALL,
    default_categories,
    normalise_game,
    parse_names,
    select_categories,
)

MSPACMAN = ["Player", "Ghost", "Fruit", "PowerPill", "Pill", "Score", "Life"]
SPACEINVADERS = ["Player", "Alien", "Satellite", "Shield", "Bullet", "P1Score", "P2Score", "Lives"]


@pytest.mark.parametrize("game", ["MsPacman", "ALE/MsPacman-v5", "ms_pacman"])
def test_mspacman_default_drops_pills_keeps_hud(game):
    selection = default_categories(game, MSPACMAN)
    assert selection.excluded == ("PowerPill", "Pill")
    assert selection.headline == ("Player", "Ghost", "Fruit", "Score", "Life")
    assert selection.group("Pill") == EXCLUDED and selection.group("Score") == HEADLINE


def test_bullets_are_small_not_headline():
    selection = default_categories("SpaceInvaders", SPACEINVADERS)
    assert selection.small == ("Bullet",)
    assert "Bullet" not in selection.headline and selection.group("Bullet") == SMALL
    assert {"Alien", "P1Score", "Lives"} <= set(selection.headline)


def test_unknown_game_keeps_every_category():
    selection = default_categories("Zaxxon", ["Pill", "Bullet", "Thing"])
    assert selection.headline == ("Pill", "Bullet", "Thing")
    assert selection.small == selection.excluded == ()
    assert "not in table" in selection.source


def test_flags_override_the_default():
    only = select_categories("MsPacman", MSPACMAN, include=["Player", "Pill"])
    assert only.headline == ("Player", "Pill")
    assert set(only.excluded) == {"Ghost", "Fruit", "PowerPill", "Score", "Life"}
    assert "--categories Player,Pill" in only.source
    fewer = select_categories("SpaceInvaders", SPACEINVADERS, exclude=["P2Score", "Bullet"])
    assert "P2Score" not in fewer.headline and fewer.small == ()
    assert set(fewer.excluded) == {"P2Score", "Bullet"}
    assert select_categories("MsPacman", MSPACMAN) == default_categories("MsPacman", MSPACMAN)


def test_unknown_category_in_flag_names_it():
    with pytest.raises(ValueError, match="Pil;.*Pill"):
        select_categories("MsPacman", MSPACMAN, exclude=["Pil"])


def test_parse_names_and_normalise_game():
    assert parse_names(" Player, Alien ,") == ["Player", "Alien"]
    assert parse_names("") is None
    assert normalise_game("ALE/SpaceInvaders-v5") == "spaceinvaders"


def test_moving_categories_come_from_the_game_table_and_survive_the_json():
    from permakey.evaluation.categories import CategorySelection, default_categories

    names = ["Player", "Ghost", "Fruit", "Score", "Pill"]
    selection = default_categories("ALE/MsPacman-v5", names)
    assert selection.moving == ("Player", "Ghost")  # Fruit's box never moves in OCAtari 2.2.1
    assert CategorySelection.from_json(selection.to_json()) == selection
    unknown = default_categories("Qbert", names)
    assert unknown.moving is None and "moving" not in unknown.to_json()  # measured later
