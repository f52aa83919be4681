"""Are OCAtari's object slots one object each? Real rollouts, per game and category.

python scripts/identity_check.py [--frames 3000] [--seed 0] GAME [GAME ...]

Plays each game as `permakey collect` does (ALE v5, frameskip 4, sticky actions 0.25,
actions held for 4 steps, seed 0), reads the objects with `permakey.data.objects`, and
counts, per category, over the frames where a slot holds an object in two consecutive frames:

  steps      such slot continuations;
  swaps      continuations where two slots of the category trade objects: exchanging their
             objects in the second frame brings both within the gate of where they were, and
             closer by more than 1 px in all (OCAtari re-indexed them: a slot is not one
             object). A reset that sends every ghost home is no swap: the trade is no motion;
  recat      continuations where the slot's category changes;
  reused     returns of a slot after frames without its object, more than the gate from
             where it was last seen (`permakey.data.identity` then starts a new id);
  p99, max   the 99th percentile and the largest centre distance of a continuation, in
             pixels of the 84 x 84 frame (what the linking gate must allow).

A game's slots are stable when no headline category changes category in a slot and its
swaps are fewer than `MAX_SWAPS_PER_1000` per 1,000 continuations;
`permakey.data.identity.SLOT_GAMES` lists those games. The threshold is not zero because of
one case seen: MsPacman's ghosts, all sent home when a life is lost, can land where a trade
looks shorter (1 in 10,910 ghost continuations, 3,000 frames, seed 0), while OCAtari's four
ghost slots are the four ghosts. Frostbite's floes (2 swaps per 1,000: OCAtari numbers them
anew when they split) and BattleZone's tanks (swaps and category changes) are not stable.
"""

from __future__ import annotations

import argparse
import warnings
from collections import defaultdict

import numpy as np

from permakey.data.frames import FRAME_SIZE, RAW_SHAPE, scale_boxes
from permakey.data.games import env_id, resolve_game
from permakey.data.identity import GATE_PX, box_centres
from permakey.data.policies import make_policy
from permakey.evaluation.categories import default_categories

SWAP_MARGIN_PX = 1.0  # how much closer a trade must bring both objects to count as a swap
MAX_SWAPS_PER_1000 = 1.0  # swaps per 1,000 continuations of a headline category still stable


def rollout(
    game: str, frames: int, seed: int
) -> list[tuple[int, dict[int, tuple[str, np.ndarray]]]]:
    """(episode, {slot: (category, (x, y) centre in 84 x 84 pixels)}) for every frame."""
    import ale_py
    import gymnasium as gym

    from permakey.data.objects import ObjectDetector

    detector = ObjectDetector(game)
    gym.register_envs(ale_py)
    env = gym.make(
        env_id(game), frameskip=4, repeat_action_probability=0.25, full_action_space=False
    )
    act = make_policy("random-hold:4", int(env.action_space.n), np.random.default_rng(seed))
    ale = env.unwrapped.ale
    record, episode = [], 0
    obs, _ = env.reset(seed=seed)
    detector.reset()
    while len(record) < frames and detector.available:
        found = detector.detect(ale.getRAM(), obs)
        if found is None:
            break
        names, boxes, slots = found
        centres = box_centres(scale_boxes(boxes, RAW_SHAPE[:2], (FRAME_SIZE, FRAME_SIZE)))
        record.append(
            (episode, {int(s): (c, p) for s, c, p in zip(slots, names, centres, strict=True)})
        )
        obs, _, terminated, truncated, _ = env.step(int(act(obs)))
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset()
            detector.reset()
    env.close()
    return record


def check(record) -> dict[str, dict[str, float]]:
    """The counts of the module docstring, per category."""
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    steps: dict[str, list[float]] = defaultdict(list)
    last: dict[tuple[int, int], tuple[int, str, np.ndarray]] = {}
    for t, (episode, objects) in enumerate(record):
        previous = record[t - 1][1] if t and record[t - 1][0] == episode else {}
        for slot, (category, centre) in objects.items():
            seen = last.get((episode, slot))
            if seen is not None and seen[0] == t - 1:
                counts[category]["steps"] += 1
                counts[category]["recat"] += seen[1] != category
                steps[category].append(float(np.linalg.norm(centre - seen[2])))
            elif seen is not None:
                counts[category]["reused"] += np.linalg.norm(centre - seen[2]) > GATE_PX
            last[(episode, slot)] = (t, category, centre)
        by_category = defaultdict(list)
        for slot, (category, _) in objects.items():
            if previous.get(slot, ("",))[0] == category:
                by_category[category].append(slot)
        for category, slots in by_category.items():
            before = np.array([previous[s][1] for s in slots])  # (S, 2)
            now = np.array([objects[s][1] for s in slots])  # (S, 2)
            distance = np.linalg.norm(now[None] - before[:, None], axis=-1)  # (S before, S now)
            kept = np.diag(distance)
            traded = distance + distance.T  # [i, j]: i's object to j's place and back
            plausible = (distance <= GATE_PX) & (distance.T <= GATE_PX)
            better = plausible & (traded < kept[:, None] + kept[None] - SWAP_MARGIN_PX)
            counts[category]["swaps"] += int(np.triu(better, 1).sum())
    for category, distances in steps.items():
        counts[category]["p99"] = float(np.percentile(distances, 99))
        counts[category]["max"] = float(np.max(distances))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("games", nargs="+")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.games:
        game = resolve_game(name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = rollout(game, args.frames, args.seed)
        if not record:
            reason = "; ".join(str(w.message) for w in caught) or "no frames"
            print(f"\n{game}: no objects ({reason})")
            continue
        counts = check(record)
        selection = default_categories(game, sorted(counts))
        headline = [c for c in selection.headline if c in counts]
        stable = all(
            counts[c]["recat"] == 0
            and counts[c]["swaps"] < MAX_SWAPS_PER_1000 * counts[c]["steps"] / 1000
            for c in headline
        )
        episodes = record[-1][0] + 1
        print(f"\n{game}: {len(record)} frames, {episodes} episodes; slots stable: {stable}")
        print("| category | group | steps | swaps | recat | reused | p99 px | max px |")
        print("|---|---|---|---|---|---|---|---|")
        for category in sorted(counts):
            c = counts[category]
            print(
                f"| {category} | {selection.group(category)} | {c['steps']:.0f} | "
                f"{c['swaps']:.0f} | {c['recat']:.0f} | {c['reused']:.0f} | "
                f"{c.get('p99', 0):.1f} | {c.get('max', 0):.1f} |"
            )


if __name__ == "__main__":
    main()
