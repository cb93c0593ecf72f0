"""The memoized TextWorld translation and parsing (act_pipeline.envs.textworld_cache) play real
ALFWorld games exactly as the library's own functions do, and really serve resets and steps."""

import random

import pytest

from act_pipeline.envs import alfworld as aw
from act_pipeline.envs import textworld_cache
from benchmarks.common import io_counters


@pytest.fixture
def plain_then_restored(monkeypatch):
    """The library's own functions for the test's first games (AlfworldGame installs the memo: not
    here), and the memo back afterwards if the process had it."""
    had = textworld_cache.installed()
    textworld_cache.uninstall()
    monkeypatch.setattr(textworld_cache, "install", lambda: None)
    yield monkeypatch
    textworld_cache.uninstall()
    if had:
        textworld_cache.install()


def _play(gamefile, expert, seed: int, resets: int = 2, steps: int = 10) -> list:
    """A seeded random walk over the admissible actions, from ``resets`` resets: every observation,
    done flag and info (admissible list, won, the expert's action)."""
    game = aw.AlfworldGame(gamefile, expert=expert)
    rng = random.Random(seed)
    trace = []
    try:
        for _ in range(resets):
            obs, info = game.reset()
            trace.append((obs, game.task, info))
            for _ in range(steps):
                action = rng.choice(info["admissible"])
                obs, done, info = game.step(action)
                trace.append((action, obs, done, info))
                if done:
                    break
    finally:
        game.close()
    return trace


def test_memoized_games_play_exactly_as_the_librarys(alfworld_data, tmp_path, plain_then_restored):
    specs = aw.select_balanced(aw.discover_games(alfworld_data, "train"), 3)
    games = [(aw.build_game(s.path, tmp_path / s.game_id.replace("/", "_")), expert)
             for s, expert in zip(specs, [None, "planner", "handcoded"])]
    plain = [_play(f, expert, seed=i) for i, (f, expert) in enumerate(games)]
    assert not textworld_cache.installed()

    plain_then_restored.undo()  # AlfworldGame installs the memo again
    memo = [_play(f, expert, seed=i) for i, (f, expert) in enumerate(games)]
    assert textworld_cache.installed()
    for (f, expert), a, b in zip(games, plain, memo):
        assert len(a) > 2
        assert a == b, f"{f} (expert {expert}): the memoized game played differently"
    # the expert infos were there to compare
    assert any(step[-1].get("expert_action") for step in memo[1])


def test_resets_and_steps_are_served_from_the_memo(alfworld_data, tmp_path, plain_then_restored):
    plain_then_restored.undo()
    textworld_cache.install()
    spec = aw.discover_games(alfworld_data, "train")[0]
    game = aw.AlfworldGame(aw.build_game(spec.path, tmp_path / "g"))
    try:
        game.reset()
        before = textworld_cache.stats()
        for _ in range(3):
            obs, info = game.reset()
            for action in info["admissible"][:2]:
                game.step(action)
        after = textworld_cache.stats()
    finally:
        game.close()
    translate, words, logic = (after[k] for k in ("fast_downward.pddl2sas",
                                                  "textworld.envs.pddl.textgen._parse_and_convert",
                                                  "textworld.logic._parse_and_convert"))
    # three resets translate the problem twice each (plain, optimized), all from the memo
    assert translate["hits"] - before["fast_downward.pddl2sas"]["hits"] == 6
    assert translate["misses"] == before["fast_downward.pddl2sas"]["misses"]
    # the command templates and the grammar's conditions, parsed once: the steps hit
    for name, now in (("textworld.envs.pddl.textgen._parse_and_convert", words),
                      ("textworld.logic._parse_and_convert", logic)):
        assert now["hits"] > before[name]["hits"]
        assert now["misses"] - before[name]["misses"] <= now["hits"] - before[name]["hits"]


def test_uninstall_restores_the_librarys_functions(plain_then_restored):
    import fast_downward
    import textworld.envs.pddl.textgen as textgen

    original = fast_downward.pddl2sas, textgen._parse_and_convert
    plain_then_restored.undo()
    textworld_cache.install()
    textworld_cache.install()  # idempotent: wrapped once
    assert fast_downward.pddl2sas is not original[0]
    assert fast_downward.pddl2sas.__wrapped__ is original[0]
    textworld_cache.uninstall()
    assert (fast_downward.pddl2sas, textgen._parse_and_convert) == original
    assert textworld_cache.stats() == {}


def test_a_memoized_translation_is_the_translators(alfworld_data, tmp_path, plain_then_restored):
    import json

    import fast_downward

    specs = aw.discover_games(alfworld_data, "train")[:2]
    data = [json.loads(aw.build_game(s.path, tmp_path / str(i)).read_text()) for i, s in enumerate(specs)]
    aw.import_alfworld()

    def translations() -> list[str]:  # each game's SAS+ text, plain and optimized
        return [fast_downward.pddl2sas(d["pddl_domain"], d["pddl_problem"], optimize=o)[1] for d in data
                for o in (False, True)]

    plain = translations()
    plain_then_restored.undo()
    textworld_cache.install()
    memo, again = translations(), translations()
    assert memo == plain == again
    assert len(set(plain)) == 4  # two games, each translated two ways: four different texts


def test_a_parse_of_an_unhashable_argument_goes_to_the_library(plain_then_restored):
    import textworld.logic as logic

    plain_then_restored.undo()
    textworld_cache.install()
    calls = []
    original = textworld_cache._originals[(logic, "_parse_and_convert")]
    wrapped = textworld_cache._memo_parse(lambda *a, **k: calls.append(a) or original(*a, **k))
    text = "P(x: t)"
    assert str(wrapped(text, rule_name="onlyProposition")) == str(original(text, rule_name="onlyProposition"))
    wrapped(text, rule_name="onlyProposition")
    assert len(calls) == 1  # the second parse came from the memo
    with pytest.raises(Exception) as e:
        wrapped([text], rule_name="onlyProposition")  # a list: no key; the library's own error, not the memo's
    assert not isinstance(e.value, TypeError) or "unhashable" not in str(e.value)
    assert len(calls) == 2


def _written() -> int | None:
    """Bytes this process has caused to be written to storage (Linux's /proc/self/io); None without it."""
    return io_counters().get("write_bytes")


def _interleaved(files, experts, seed: int, steps: int = 6) -> list:
    """Games open at once, stepped in turn (a worker hosts several): each must keep its own
    library copy."""
    games = [aw.AlfworldGame(f, expert=e) for f, e in zip(files, experts)]
    rng = random.Random(seed)
    trace = []
    try:
        infos = []
        for g in games:
            obs, info = g.reset()
            infos.append(info)
            trace.append((obs, g.task, info))
        for _ in range(steps):
            for i, g in enumerate(games):
                action = rng.choice(infos[i]["admissible"])
                obs, done, infos[i] = g.step(action)
                trace.append((i, action, obs, done, infos[i]))
    finally:
        for g in games:
            g.close()
    return trace


def test_games_on_reused_library_copies_play_as_on_fresh_ones(alfworld_data, tmp_path, plain_then_restored):
    """Games one after another on the library copy of a closed game, and two open at once, play
    step for step as each did on a fresh copy (the library's own load_lib: a copy per game); a
    reused copy writes no new libdownward.so to disk."""
    import fast_downward

    specs = aw.select_balanced(aw.discover_games(alfworld_data, "train"), 4)
    files = [aw.build_game(s.path, tmp_path / s.game_id.replace("/", "_")) for s in specs]
    # the planner replans after every step of a random walk: on two of these scenes that takes
    # minutes (as on fresh copies), so it plays the two quick ones
    plan = [(files[0], "planner"), (files[1], None), (files[0], "handcoded"), (files[2], None),
            (files[3], "handcoded"), (files[1], "planner")]

    def games():
        seq = [_play(f, expert, seed=i, resets=2, steps=8) for i, (f, expert) in enumerate(plan)]
        return seq, _interleaved([files[0], files[3]], ["planner", None], seed=7), _play(files[1], "planner", seed=9)

    fresh = games()
    plain_then_restored.undo()
    textworld_cache.install()
    load_lib = fast_downward.load_lib
    reused = games()
    assert reused == fresh
    info = textworld_cache.stats()["fast_downward.load_lib"]
    # 6 games in turn: one copy, then reused; the two open at once: the free one and one new copy;
    # the last game: one of those two, freed when they closed
    assert (info["misses"], info["hits"], info["free"]) == (2, 7, 2), info

    before = _written()
    g = aw.AlfworldGame(files[0])  # a copy is free: no libdownward.so written
    g.reset()
    g.close()
    if before is not None:
        assert _written() - before < 5_000_000
    assert fast_downward.load_lib is load_lib and textworld_cache.stats()["fast_downward.load_lib"]["hits"] == 8


def test_a_new_library_copy_is_written_to_memory_not_disk(tmp_path, plain_then_restored):
    """A copy made for a game goes to a temporary folder under IN_MEMORY (no disk write for its
    33.8 MB); where that folder is unusable, to the library's own temporary folder, as before."""
    import os
    import tempfile

    import fast_downward
    import fast_downward.interface as interface

    plain_then_restored.undo()
    textworld_cache.install()
    if not os.path.isdir(textworld_cache.IN_MEMORY):
        pytest.skip(f"no {textworld_cache.IN_MEMORY} here")
    before = _written()
    lib = fast_downward.load_lib()
    assert lib._name.startswith(textworld_cache.IN_MEMORY + "/"), lib._name
    assert not os.path.exists(lib._name)  # removed once loaded, as the library does
    if before is not None:
        assert _written() - before < 5_000_000
    lib.cleanup()  # the library's own call: it answers

    plain_then_restored.setattr(textworld_cache, "IN_MEMORY", str(tmp_path / "missing"))
    other = fast_downward.load_lib()
    assert not other._name.startswith(str(tmp_path)) and other._name != lib._name
    assert other._name.startswith(tempfile.gettempdir())
    assert interface.tempfile is tempfile  # the stand-in is gone after each load
