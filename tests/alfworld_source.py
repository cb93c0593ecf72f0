"""Where the tests' ALFWorld games come from, decided here and nowhere else (the ``alfworld_data``
fixture in conftest.py serves what :func:`decide` returns).

* The official data (the ``json_2.1.1`` folder ``alfworld-download`` writes) when it is there:
  ``$ALFWORLD_DATA``, else ``../shared/alfworld`` beside the checkout. An ``ALFWORLD_DATA`` that is set
  but holds no ``json_2.1.1/`` is an error, never a silent fallback.
* Under CI (``CI`` set and not ``0``/``false``; ``.ci/run`` exports ``CI=1``) the official data is
  required: without it the tests that play games fail, so the real-data path keeps running in CI.
* Otherwise (a fresh clone with nothing beside it) games generated offline by
  ``act_pipeline.envs.alfworld_gen``, once per test session into a temporary folder, in the same
  ``json_2.1.1`` layout: ``GENERATED_PER_SPLIT`` games in each split, the task types round-robin, so
  the train split holds every task type. Like the official data here they hold ``initial_state.pddl``
  and ``traj_data.json`` only (the generator's ``game.tw-pddl`` is removed): the tests build every game
  from its problem either way.
* ``ACT_TEST_NO_OFFICIAL_DATA=1`` ignores the official data (``ALFWORLD_DATA`` is removed from the
  test process's environment, ``../shared/alfworld`` is not looked at): a fresh clone, simulated on a
  machine that has the data. Refused under CI.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

NO_OFFICIAL = "ACT_TEST_NO_OFFICIAL_DATA"
GENERATED_PER_SPLIT = 6  # >= 6: the train split then holds one game of each of the six task types
GENERATED_SEED = 0
OFFICIAL_COUNTS = {"valid_seen": 140, "valid_unseen": 134}  # the official in- / out-of-distribution sets


@dataclass(frozen=True)
class GamesSource:
    path: Path  # the folder holding json_2.1.1/ (what ALFWORLD_DATA names)
    official: bool  # False: generated offline for this session


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def ignore_official() -> bool:
    """``ACT_TEST_NO_OFFICIAL_DATA=1``; a usage error under CI (CI always runs on the official data)."""
    value = os.environ.get(NO_OFFICIAL, "")
    if value not in ("", "0", "1"):
        raise pytest.UsageError(f"{NO_OFFICIAL}={value!r}: expected 1 (ignore the official ALFWorld data) or 0")
    if value == "1" and under_ci():
        raise pytest.UsageError(f"{NO_OFFICIAL}=1 is refused under CI: CI runs the tests on the official "
                                "ALFWorld data (../shared/alfworld)")
    return value == "1"


def configure() -> None:
    """At session start: with the override, the official data is out of sight for every test."""
    if ignore_official():
        os.environ.pop("ALFWORLD_DATA", None)


def official_data(repo: Path) -> Path | None:
    if ignore_official():
        return None
    env = os.environ.get("ALFWORLD_DATA")
    if env:
        if not (Path(env) / "json_2.1.1").is_dir():
            pytest.fail(f"ALFWORLD_DATA={env} holds no json_2.1.1/ (the folder alfworld-download writes); "
                        "unset it to play games generated offline")
        return Path(env)
    beside = repo.parent / "shared" / "alfworld"
    return beside if (beside / "json_2.1.1").is_dir() else None


def decide(repo: Path, tmp_path_factory) -> GamesSource:
    path = official_data(repo)
    if path is not None:
        return GamesSource(path, official=True)
    if under_ci():
        pytest.fail("the official ALFWorld games are required under CI: ../shared/alfworld (or ALFWORLD_DATA) "
                    "holds no json_2.1.1/")
    from act_pipeline.envs.alfworld_gen import generate_games

    out = generate_games(tmp_path_factory.mktemp("alfworld_generated"), GENERATED_PER_SPLIT, seed=GENERATED_SEED)
    # as the official data here: initial_state.pddl + traj_data.json, no game file, so that every test
    # builds its games from the problem with the installed alfworld's logic whichever the source
    for gamefile in (out / "json_2.1.1").glob("*/*/*/game.tw-pddl"):
        gamefile.unlink()
    return GamesSource(out, official=False)


def expected_games(source: GamesSource, split: str) -> int:
    """How many games a validation split holds: the official set's size, or what was generated."""
    return OFFICIAL_COUNTS[split] if source.official else GENERATED_PER_SPLIT
