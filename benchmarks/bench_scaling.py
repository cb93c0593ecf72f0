"""7. Cost proportional to the data: the data chain (``alfworld/expert_trajectories`` →
``sampled_alternatives`` → ``contrast_pairs``) run cold at 1×, 4× and 16× the default profile's
games (train and held-out-state games both scaled; 16 → 64 → 256 games), then an import of +10 %
expert steps into the largest data root, its caches warm (the planner's played games, the samples).

Each scale has a fresh data root (no cache). Setting up (the games, the base model, the steps to
import, played on other train games) is not timed; each timed asset is one ``dg.materialize`` in
this process. The tiny random model samples (the smoke profile's ``model:``): the line is about how
the pipeline's cost grows with the data, and a model's cost per state is the same at every scale.

Goals: the cost of one more game is the same at every scale (the marginal seconds per game from 4×
to 16× within ±30 % of that from 1× to 4×); the import costs the fixed part of a run plus at most
1.5 × its share of the cold run's variable part (its rows / the cold run's rows).
"""

from __future__ import annotations

import json
import math
import time

import yaml

from benchmarks.common import REPO, Ctx, entry

SCALES = (1, 4, 16)
QUICK_SCALES = (1, 2, 4)  # of 2 train + 1 held-out game
GOAL_MARGINAL = 0.30
GOAL_INCREMENT = 1.5
INCREMENT = 0.10
ASSETS = ("alfworld/expert_trajectories", "alfworld/sampled_alternatives", "alfworld/contrast_pairs")


def profile(ctx: Ctx, scale: int) -> dict:
    """The default profile at ``scale`` × its games, sampled by the tiny model, ALFWorld only."""
    p = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    p["model"] = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())["model"]
    p["threads"] = ctx.threads
    p["scienceworld"]["enabled"] = False
    a = p["alfworld"]
    if ctx.quick:
        a["train_games"], a["eval_state_games"] = 2, 1
    a["train_games"] *= scale
    a["eval_state_games"] *= scale
    a["data"] = str(ctx.alfworld)
    return p


class Root:
    """One data root with its profile; ``materialize`` times one asset (or several) in this process."""

    def __init__(self, ctx: Ctx, name: str, prof: dict):
        import dagster as dg

        self.dg = dg
        self.home = ctx.scratch / "scaling" / name
        self.home.mkdir(parents=True)
        self.path = self.home / "profile.yaml"
        self.path.write_text(yaml.safe_dump(prof))
        self.instance = dg.DagsterInstance.ephemeral()

    def materialize(self, *keys: str) -> float:
        from act_pipeline.assets.graph import build_assets
        from act_pipeline.config import load_config
        from act_pipeline.definitions import build_resources

        t0 = time.perf_counter()
        res = self.dg.materialize(build_assets(load_config(self.path)), selection=list(keys),
                                  resources=build_resources(str(self.path), str(self.home)), instance=self.instance)
        dt = time.perf_counter() - t0
        if not res.success:
            raise RuntimeError(f"materializing {keys} in {self.home} failed")
        return dt

    def manifest(self, key: str) -> dict:
        return json.loads((self.home / "manifests" / f"{key.replace('/', '__')}.json").read_text())

    def chain(self) -> dict[str, float]:
        """The data chain, one asset after another: seconds per asset."""
        return {k.split("/")[1]: round(self.materialize(k), 3) for k in ASSETS}


def _import_steps(ctx: Ctx, root: Root, prof: dict, share: float) -> tuple[int, int]:
    """Expert steps of train games the profile does not play, about ``share`` of its games, imported
    into ``root`` like ``act-pipeline import-expert`` does; (games, rows) imported."""
    from act_pipeline.assets.sensors import eval_game_ids
    from act_pipeline.data.imports import accept
    from act_pipeline.data.store import read_parquet
    from act_pipeline.data.trajectories import collect_expert_trajectories
    from act_pipeline.envs import alfworld as aw

    a = prof["alfworld"]
    played = {g["game_id"] for g in read_parquet(root.manifest("alfworld/games")["uri"]).to_pylist()}
    n = max(1, math.ceil(share * (a["train_games"] + a["eval_state_games"])))
    others = aw.select_balanced([g for g in aw.discover_games(ctx.alfworld, "train") if g.game_id not in played], n)
    out = ctx.scratch / "scaling" / "import_games"
    games = [{"game_id": g.game_id, "split": "train", "task_type": g.task_type,
              "gamefile": str(aw.build_game(g.path, out / str(i)))} for i, g in enumerate(others)]
    table, _ = collect_expert_trajectories(games, lambda f: aw.AlfworldGame(f, a["expert"]), a["max_expert_steps"],
                                           a["history_len"], log=lambda m: None)
    rows = [{k: r[k] for k in ("game_id", "task_type", "task", "step", "observation", "history", "admissible",
                               "expert_action", "won", "split")} for r in table.to_pylist()]
    path = ctx.scratch / "scaling" / "import.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    accept(path, root.home / "expert_imports", eval_game_ids(root.home))
    return len(games), len(rows)


def _way(label: str, seconds: float, work: float, unit: str) -> dict:
    return {"label": label, "seconds": [round(seconds, 3)], "median_s": round(seconds, 3),
            "rate": round(work / seconds, 4) if seconds > 0 else None, "unit": unit}


def run(ctx: Ctx) -> list[dict]:
    from act_pipeline.data.store import read_parquet

    scales = QUICK_SCALES if ctx.quick else SCALES
    runs = []
    root = prof = None
    for scale in scales:
        prof = profile(ctx, scale)
        root = Root(ctx, f"x{scale}", prof)
        root.materialize("base_model", "alfworld/games", "alfworld/imported_expert_steps")  # not timed
        ctx.log(f"  {scale}x: {prof['alfworld']['train_games']} train + {prof['alfworld']['eval_state_games']} "
                f"held-out-state games, cold")
        seconds = root.chain()
        traj = root.manifest("alfworld/expert_trajectories")
        alts = root.manifest("alfworld/sampled_alternatives")
        games = traj["games_replayed"] + traj["games_from_cache"]
        total = sum(seconds.values())
        runs.append({"scale": scale, "games": games, "games_replayed": traj["games_replayed"], "rows": traj["rows"],
                     "states": alts["states"], "pairs": root.manifest("alfworld/contrast_pairs")["rows"],
                     "seconds": seconds, "total_s": round(total, 3), "s_per_game": round(total / games, 3)})
        ctx.log(f"  {scale}x: {games} games, {traj['rows']} expert rows: {total:.1f} s {seconds}")

    # the import, on the largest root (its caches warm)
    cold = runs[-1]
    cold_table = read_parquet(root.manifest("alfworld/expert_trajectories")["uri"])
    n_games, n_rows = _import_steps(ctx, root, prof, INCREMENT)
    ctx.log(f"  import: {n_rows} expert steps of {n_games} other train games (+{n_rows / cold['rows']:.1%} rows)")
    inc = {"imported_expert_steps": round(root.materialize("alfworld/imported_expert_steps"), 3), **root.chain()}
    inc_s = sum(inc.values())
    traj = root.manifest("alfworld/expert_trajectories")
    alts = root.manifest("alfworld/sampled_alternatives")
    table = read_parquet(traj["uri"])
    checks = {"games_replayed": traj["games_replayed"],
              "played_rows_unchanged": table.slice(0, cold_table.num_rows).to_pylist() == cold_table.to_pylist(),
              "rows_added": table.num_rows - cold_table.num_rows, "states_sampled": alts["sampled"],
              "states_from_cache": alts["cached"], "states": alts["states"]}
    ctx.log(f"  import: {inc_s:.1f} s {inc}; {checks}")

    # linear: the marginal cost per game is the same at both steps; the fixed part is what is left at 1x
    g = [r["games"] for r in runs]
    t = [r["total_s"] for r in runs]
    m1, m2 = (t[1] - t[0]) / (g[1] - g[0]), (t[2] - t[1]) / (g[2] - g[1])
    fixed = max(0.0, t[0] - m1 * g[0])
    linear = m1 > 0 and abs(m2 / m1 - 1) <= GOAL_MARGINAL
    share = checks["rows_added"] / cold["rows"]
    allowed = fixed + GOAL_INCREMENT * share * max(0.0, cold["total_s"] - fixed)
    proportional = inc_s <= allowed and checks["games_replayed"] == 0 and checks["played_rows_unchanged"]
    common = dict(model="tiny random Llama (smoke profile's model:)", seed=prof["seed"],
                  profile=f"configs/default.yaml at {scales} x its alfworld.train_games and eval_state_games, "
                          "model: the smoke profile's, scienceworld off",
                  timed=list(ASSETS), expert_workers=prof.get("envs", {}).get("expert_workers", 1))
    first, last = runs[0], runs[-1]
    return [
        entry("data_scaling", "the data chain cold (expert_trajectories -> sampled_alternatives -> contrast_pairs) "
              f"at {', '.join(f'{s}x' for s in scales)} the default profile's games",
              _way(f"cold, {first['scale']}x ({first['games']} games)", first["total_s"], first["games"], "games/s"),
              _way(f"cold, {last['scale']}x ({last['games']} games)", last["total_s"], last["games"], "games/s"),
              (last["games"] / last["total_s"]) / (first["games"] / first["total_s"]),
              f"marginal s/game {scales[1]}x->{scales[2]}x within ±{GOAL_MARGINAL:.0%} of {scales[0]}x->{scales[1]}x",
              linear, scales=runs, marginal_s_per_game=[round(m1, 3), round(m2, 3)], fixed_s=round(fixed, 2),
              **common),
        entry("data_increment", f"+{INCREMENT:.0%} data: expert steps of other train games imported into the "
              f"{last['scale']}x data root (caches warm): imported_expert_steps and the data chain",
              _way(f"cold chain, {last['scale']}x", last["total_s"], last["rows"], "rows/s"),
              _way("after the import (stale assets only)", inc_s, checks["rows_added"], "rows/s"),
              last["total_s"] / inc_s,
              f"<= fixed + {GOAL_INCREMENT:g} x share x variable cost; no game replayed",
              proportional, seconds=inc, share_of_rows=round(share, 4), allowed_s=round(allowed, 2),
              imported_games=n_games, checks=checks,
              notes="before the played-games cache, expert_trajectories replayed every game here "
                    f"(the cold one took {last['seconds']['expert_trajectories']:.0f} s)", **common),
    ]
