"""Early Experience: the alternative actions executed in the environment from the expert states.

For every expert state that gets alternatives, each alternative is taken in the real game: the
game is reset, the expert's actions before the state are replayed, every observation on the way
checked against the one the trajectory recorded (a replay that drifted onto another state is
caught and recorded as ``desync``, never trusted), and then the alternative is taken; its next
observation is what it led to. The expert action's own outcome comes from one replay of the whole
trajectory. One environment per game, reset for every branch (ALFWorld and ScienceWorld have no
save/restore: a state is reached by replay).

Environments run where ``make_game`` opens them: in env worker processes
(:mod:`act_pipeline.envs.workers`), with the same fault handling as the expert's roll-outs: an
:class:`~act_pipeline.envs.workers.EnvFault` (a timeout, a worker that died or grew past its memory
limit, an env that raised) starts the game's branches again on a fresh worker, ``retries`` times,
then records them as ``fault`` with the reason; the other games go on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa

# the expert's pool of game threads (one factory per thread); private there, used as it is: editing
# that module would change the expert cache's key (it hashes the module's source)
from act_pipeline.data.trajectories import _play_all

Log = Callable[[str], None]

OUTCOME_SCHEMA = pa.schema([
    ("state_id", pa.string()),
    ("game_id", pa.string()),
    ("split", pa.string()),
    ("step", pa.int32()),
    ("action", pa.string()),
    ("is_expert", pa.bool_()),
    ("next_observation", pa.string()),  # null unless status is ok
    ("done", pa.bool_()),
    ("won", pa.bool_()),
    ("status", pa.string()),  # ok | desync | fault | error | no_game
    ("reason", pa.string()),
])
OK = "ok"


class Desync(RuntimeError):
    """A replayed observation differs from the recorded one."""


def _replay(game, actions: Sequence[str], observations: Sequence[str], upto: int) -> None:
    """Reset ``game`` and take the expert's first ``upto`` actions, each observation checked."""
    obs, _ = game.reset()
    if obs != observations[0]:
        raise Desync(f"the reset observation differs from the recorded one ({obs[:80]!r} vs {observations[0][:80]!r})")
    for i in range(upto):
        obs, done, _ = game.step(actions[i])
        if obs != observations[i + 1]:
            raise Desync(f"after expert step {i} ({actions[i]!r}) the observation differs from the recorded one "
                         f"({obs[:80]!r} vs {observations[i + 1][:80]!r})")
        if done:
            raise Desync(f"the game ended at expert step {i}, before the recorded state {upto}")


def _row(r: dict, action: str, is_expert: bool, obs=None, done=False, won=False, status=OK, reason=None) -> dict:
    return {"state_id": r["state_id"], "game_id": r["game_id"], "split": r["split"], "step": r["step"],
            "action": action, "is_expert": is_expert, "next_observation": obs, "done": bool(done),
            "won": bool(won), "status": status, "reason": reason}


def _branches(game, steps: list[dict], alternatives: Mapping[str, Sequence[str]]) -> list[dict]:
    """Every branch of one game: the expert's outcome at each state and each alternative's."""
    actions = [r["expert_action"] for r in steps]
    observations = [r["observation"] for r in steps]
    # the expert's outcomes: one replay of the whole trajectory. States from `reach` on cannot be
    # reached (the replay drifted there): their branches are desync, with the reason
    expert: dict[int, tuple] = {}
    reach, why = len(steps), None
    try:
        _replay(game, actions, observations, 0)
        for i in range(len(steps)):
            obs, done, info = game.step(actions[i])
            expert[i] = (obs, done, info.get("won", False))
            if i + 1 < len(steps) and (obs != observations[i + 1] or done):
                reach = i + 1
                why = (f"after expert step {i} ({actions[i]!r}) the game "
                       + ("ended" if done else f"showed {obs[:80]!r}, not the recorded {observations[i + 1][:80]!r}"))
                break
    except Desync as e:
        reach, why = 0, str(e)
    rows: list[dict] = []
    for i, r in enumerate(steps):
        rows.append(_row(r, actions[i], True, *expert[i]) if i in expert
                    else _row(r, actions[i], True, status="desync", reason=why))
        for a in alternatives.get(r["state_id"], ()):
            if i >= reach:
                rows.append(_row(r, a, False, status="desync", reason=why))
                continue
            try:
                _replay(game, actions, observations, i)
                obs, done, info = game.step(a)
                rows.append(_row(r, a, False, obs, done, info.get("won", False)))
            except Desync as e:  # (the expert's replay passed here: the game is not deterministic)
                rows.append(_row(r, a, False, status="desync", reason=str(e)))
    return rows


def _failed(steps: list[dict], alternatives: Mapping[str, Sequence[str]], status: str, reason: str) -> list[dict]:
    return [row for r in steps
            for row in [_row(r, r["expert_action"], True, status=status, reason=reason),
                        *(_row(r, a, False, status=status, reason=reason) for a in alternatives.get(r["state_id"], ()))]]


def _game_branches(gamefile: str, steps: list[dict], alternatives, make_game, retries: int,
                   log: Log) -> tuple[list[dict], list[dict]]:
    """One game's branches with its retries: (rows, the env faults it hit)."""
    from act_pipeline.envs.workers import EnvFault

    faults: list[dict] = []
    game_id = steps[0]["game_id"]
    while True:
        game = None
        try:
            game = make_game(gamefile)
            return _branches(game, steps, alternatives), faults
        except EnvFault as e:
            faults.append({"game_id": game_id, "attempt": len(faults) + 1, "fault": str(e)})
            if len(faults) <= retries:
                log(f"{game_id}: {e}; executing its alternatives again on a fresh worker "
                    f"(attempt {len(faults) + 1}/{retries + 1})")
                continue
            return _failed(steps, alternatives, "fault", f"{gamefile}: {e}"), faults
        except Exception as e:  # noqa: BLE001 - a broken game is recorded, the others go on
            return _failed(steps, alternatives, "error", f"{gamefile}: {type(e).__name__}: {str(e)[:300]}"), faults
        finally:
            close = getattr(game, "close", None)
            if close:
                close()


def execute_alternatives(
    games: Sequence[dict],
    steps: Sequence[dict],
    alternatives: Mapping[str, Sequence[str]],
    make_game: Callable[[str], object] | Sequence[Callable[[str], object]],
    log: Log = print,
    retries: int = 0,
) -> tuple[pa.Table, dict]:
    """Execute ``alternatives`` (state id → actions) from the expert states of ``steps`` (trajectory
    rows: every step of each game, from step 0) in the games of ``games`` (``game_id``,
    ``gamefile``). One row per (state, action), the expert's action included (``is_expert``), in
    the order of the games, then steps, expert first. A game of ``steps`` that ``games`` lacks (an
    imported trajectory) has nothing to replay: its rows say ``no_game``. ``make_game``: one factory,
    or a list of them to run that many games at once (each thread its own; the same table)."""
    factories = [make_game] if callable(make_game) else list(make_game)
    gamefile = {g["game_id"]: g["gamefile"] for g in games}
    by_game: dict[str, list[dict]] = {}
    for r in steps:
        by_game.setdefault(r["game_id"], []).append(r)
    ids = list(by_game)
    results: list[tuple[list[dict], list[dict]] | None] = [None] * len(ids)

    def play(i: int, factory) -> None:
        rows = sorted(by_game[ids[i]], key=lambda r: r["step"])
        if [r["step"] for r in rows] != list(range(len(rows))):
            results[i] = (_failed(rows, alternatives, "error", "the trajectory does not hold every step from 0"), [])
        elif ids[i] not in gamefile:
            results[i] = (_failed(rows, alternatives, "no_game", "no game to replay (an imported trajectory)"), [])
        else:
            results[i] = _game_branches(gamefile[ids[i]], rows, alternatives, factory, retries, log)
        ok = sum(r["status"] == OK for r in results[i][0])
        log(f"alternatives executed in {ids[i]}: {ok}/{len(results[i][0])} branches ok")

    _play_all(list(range(len(ids))), factories, play)
    rows = [r for res in results for r in res[0]]
    table = pa.Table.from_pylist(rows, schema=OUTCOME_SCHEMA)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return table, {"games": len(ids), "branches": len(rows), "status": statuses,
                   "env_faults": [f for res in results for f in res[1]],
                   "not_ok": [{"state_id": r["state_id"], "action": r["action"], "status": r["status"],
                               "reason": r["reason"]} for r in rows if r["status"] != OK][:20]}


def pick_alternatives(alternative_rows: Sequence[dict], state_ids: set[str], k: int) -> dict[str, list[str]]:
    """Up to ``k`` kept alternatives of each state in ``state_ids``, in sample order (the
    ``sampled_alternatives`` table's rows: ``reason`` kept, distinct, never the expert's).

    >>> rows = [{"state_id": "s", "reason": "kept", "action": a, "sample_index": i} for i, a in enumerate("bca")]
    >>> pick_alternatives(rows + [{"state_id": "s", "reason": "duplicate", "action": "d", "sample_index": 9}], {"s"}, 2)
    {'s': ['b', 'c']}
    """
    out: dict[str, list[str]] = {}
    for r in sorted(alternative_rows, key=lambda r: (r["state_id"], r["sample_index"])):
        if r["state_id"] in state_ids and r["reason"] == "kept" and r["action"]:
            picked = out.setdefault(r["state_id"], [])
            if len(picked) < k and r["action"] not in picked:
                picked.append(r["action"])
    return out
