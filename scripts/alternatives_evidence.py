#!/usr/bin/env python
"""Evidence for constrained alternatives at 135M: does SmolLM2-135M-Instruct, restricted to the
admissible actions, put the expert's action near the top, and how often does it name an admissible
action when sampling freely?

Plain Python (no dagster). The default profile's base model (float32, CPU), 40 expert states of the
ALFWorld train games the default profile selects (the planner expert played in this process), every
admissible action scored by ``act_pipeline.sampling.constrained.score_admissible``; then the free
baseline on the same states (K=4, T=1, the default profile's token budget). Writes
docs/evidence/constrained_alternatives.{json,md}.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python scripts/alternatives_evidence.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        return head + ("+uncommitted" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def expert_states(cfg, n_states: int, log) -> tuple[list[dict], list[str]]:
    """The first ``n_states`` won expert states of the default profile's train games (task types
    round-robin), the planner expert played in this process."""
    from act_pipeline.data.trajectories import collect_expert_trajectories
    from act_pipeline.envs import alfworld as aw

    data = aw.resolve_data_root(cfg.alfworld.data)
    if data is None:
        beside = REPO.parent / "shared" / "alfworld"
        if not (beside / "json_2.1.1").is_dir():
            raise SystemExit("set ALFWORLD_DATA (the folder that holds json_2.1.1/)")
        data = beside
    # task types round-robin: the first train_games of these are the default run's training games
    train = aw.discover_games(data, "train", cfg.alfworld.task_types)
    games = aw.select_balanced(train, max(cfg.alfworld.train_games, 24))
    logic = aw.game_logic()
    states: list[dict] = []
    played: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for g in games:
            if len(states) >= n_states:
                break
            gamefile = aw.build_game(g.path, Path(tmp) / g.game_id, logic)
            row = {"game_id": g.game_id, "split": "train", "task_type": g.task_type, "gamefile": str(gamefile)}
            table, stats = collect_expert_trajectories(
                [row], lambda f: aw.AlfworldGame(f, expert=cfg.alfworld.expert), cfg.alfworld.max_expert_steps,
                cfg.alfworld.history_len, log=log)
            rows = [r for r in table.to_pylist() if r["won"]]
            states.extend(rows)
            played.append(g.game_id)
    return states[:n_states], played


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=str(REPO / "configs" / "default.yaml"))
    ap.add_argument("--states", type=int, default=40)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--sweep", type=float, nargs="*", default=[1.0, 0.5, 0.25, 0.1],
                    help="draw temperatures to report for the mean scores")
    ap.add_argument("--out", default=str(REPO / "docs" / "evidence" / "constrained_alternatives"))
    args = ap.parse_args()

    import torch

    from benchmarks.common import _cpu_model as cpu_model
    from act_pipeline.act.pairs import EQUALS_EXPERT, INADMISSIBLE, KEPT, UNPARSABLE, DUPLICATE, filter_alternatives
    from act_pipeline.act.prompts import State, agent_prompt
    from act_pipeline.config import load_config
    from act_pipeline.sampling import constrained
    from act_pipeline.sampling.base import SamplingParams, is_truncated
    from act_pipeline.sampling.hf import TransformersSampler
    from act_pipeline.models import load_model, resolve_base_model

    t_start = time.time()
    load_start = os.getloadavg()
    log = lambda m: print(m, flush=True)  # noqa: E731
    cfg = load_config(args.profile)
    model_path = resolve_base_model(cfg.model, cfg.seed, log=log)
    model, tok = load_model(model_path, cfg.model.trust_remote_code, "float32", "cpu")
    model.eval()
    hl = cfg.alfworld.history_len

    t0 = time.time()
    states, played = expert_states(cfg, args.states, log)
    t_expert = time.time() - t0
    log(f"{len(states)} expert states from {len(played)} games in {t_expert:.0f}s")

    t0 = time.time()
    both = constrained.score_admissible(model, tok, states, hl, reduce="both",
                                        progress=lambda d, n: log(f"scored {d}/{n} states ({time.time() - t0:.0f}s)"))
    t_score = time.time() - t0

    # "sum": log pi_0(action | prompt), what the policy draws from; "mean": the length-normalised ranking
    ranking: dict = {}
    per_state = []
    sweep: dict = {}  # the mean scores' draws at other temperatures (sampling.constrained_temperature)
    for reduce, pick in (("sum", 0), ("mean", 1)):
        rows = []
        for s in states:
            sc = [b[pick] for b in both[s["state_id"]]]
            e_i = s["admissible"].index(s["expert_action"])
            rank = 1 + sum(x > sc[e_i] for x in sc)  # ties count in the expert's favour
            p = constrained.restricted_distribution(sc, args.temperature)
            order = sorted(range(len(sc)), key=lambda i: -sc[i])
            draws = constrained.draw_constrained(s, sc, args.k, args.temperature, cfg.seed)
            top5 = {s["admissible"][i] for i in order[:5]}
            rows.append({"state_id": s["state_id"], "game_id": s["game_id"], "task_type": s["task_type"],
                         "step": s["step"], "task": s["task"], "expert_action": s["expert_action"],
                         "n_admissible": len(sc), "expert_rank": rank, "expert_p": p[e_i], "max_p": max(p),
                         "draws_in_top5": sum(a in top5 for a, _ in draws), "n_draws": len(draws),
                         "top5": [{"action": s["admissible"][i], "score": round(sc[i], 4), "p": round(p[i], 4)}
                                  for i in order[:5]],
                         "constrained_draws": [a for a, _ in draws]})
        ranks = [r["expert_rank"] for r in rows]
        ns = [r["n_admissible"] for r in rows]
        n = len(rows)
        ranking[reduce] = {
            "states": n,
            "expert_first_share": sum(r == 1 for r in ranks) / n,
            "expert_top4_share": sum(r <= 4 for r in ranks) / n,
            "median_rank": statistics.median(ranks),
            "mean_rank": statistics.fmean(ranks),
            "mean_admissible": statistics.fmean(ns),
            "chance_first": statistics.fmean(1 / x for x in ns),
            "chance_top4": statistics.fmean(min(4, x) / x for x in ns),
            "chance_median_rank": statistics.median((x + 1) / 2 for x in ns),
            "mean_expert_p_T": statistics.fmean(r["expert_p"] for r in rows),
            "mean_max_p_T": statistics.fmean(r["max_p"] for r in rows),
            "draws_in_top5_share": sum(r["draws_in_top5"] for r in rows) / max(1, sum(r["n_draws"] for r in rows)),
            "chance_draws_in_top5": statistics.fmean(min(5, x - 1) / (x - 1) for x in ns if x > 1),
        }
        if reduce == "mean":
            per_state = rows  # what the policy draws from
            for t in args.sweep:
                inside, total, ep = 0, 0, []
                for s, r in zip(states, rows):
                    sc = [b[pick] for b in both[s["state_id"]]]
                    top5 = {x["action"] for x in r["top5"]}
                    d = constrained.draw_constrained(s, sc, args.k, t, cfg.seed)
                    inside += sum(a in top5 for a, _ in d)
                    total += len(d)
                    ep.append(constrained.restricted_distribution(sc, t)[s["admissible"].index(s["expert_action"])])
                sweep[str(t)] = {"draws_in_top5_share": inside / max(1, total), "mean_expert_p": statistics.fmean(ep)}
    n = len(per_state)

    # the free baseline on the same states
    t0 = time.time()
    sampler = TransformersSampler(model, tok, batch_size=cfg.sampling.batch_size, stop_strings=["</action>"])
    params = SamplingParams(n=args.k, temperature=args.temperature, top_p=cfg.sampling.top_p,
                            max_new_tokens=cfg.sampling.max_new_tokens, seed=cfg.seed)
    prompts = [agent_prompt(tok, State.from_row(s), hl, cfg.model.thinking) for s in states]
    outs = sampler.generate(prompts, params)
    t_free = time.time() - t0
    reasons: dict[str, int] = {}
    truncated = 0
    examples_free = []
    for s, comps in zip(states, outs):
        for c, (action, reason) in zip(comps, filter_alternatives(comps, s["expert_action"], s["admissible"])):
            reasons[reason] = reasons.get(reason, 0) + 1
            truncated += is_truncated(c)
            if len(examples_free) < 12:
                examples_free.append({"completion": str(c), "action": action, "reason": reason})
    total = sum(reasons.values())
    free = {
        "k": args.k, "temperature": args.temperature, "max_new_tokens": cfg.sampling.max_new_tokens,
        "samples": total, "reasons": reasons,
        "parsable_share": (total - reasons.get(UNPARSABLE, 0)) / total,
        "admissible_share": sum(reasons.get(r, 0) for r in (KEPT, EQUALS_EXPERT, DUPLICATE)) / total,
        "kept_share": reasons.get(KEPT, 0) / total,
        "equals_expert_share": reasons.get(EQUALS_EXPERT, 0) / total,
        "inadmissible_share": reasons.get(INADMISSIBLE, 0) / total,
        "truncated": truncated,
        "states_with_a_kept_sample": sum(
            any(r == KEPT for _, r in filter_alternatives(c, s["expert_action"], s["admissible"]))
            for s, c in zip(states, outs)) / n,
        "examples": examples_free,
    }

    wall = time.time() - t_start
    result = {
        "what": "SmolLM2-135M-Instruct restricted to the admissible actions (constrained alternatives) vs free sampling",
        "commit": _commit(),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "torch_threads": torch.get_num_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "loadavg_start": [round(x, 2) for x in load_start],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "wall_s": round(wall, 1),
        "stage_s": {"expert_states": round(t_expert, 1), "scoring": round(t_score, 1), "free_sampling": round(t_free, 1)},
        "model": model_path, "dtype": "float32", "device": "cpu", "profile": str(Path(args.profile).relative_to(REPO))
        if Path(args.profile).is_relative_to(REPO) else args.profile,
        "scorer": constrained.SCORER_ID, "history_len": hl, "games": played,
        "ranking": ranking, "draw_temperature_sweep": sweep, "free_sampling": free, "per_state": per_state,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(_markdown(result))
    log(json.dumps({"ranking": ranking, "free": {k: v for k, v in free.items() if k != "examples"},
                    "wall_s": result["wall_s"]}, indent=1))


def _markdown(r: dict) -> str:
    rk, rm, fr, m = r["ranking"]["sum"], r["ranking"]["mean"], r["free_sampling"], r["machine"]
    pct = lambda x: f"{100 * x:.1f} %"  # noqa: E731
    lines = [
        "# Constrained alternatives at 135M: evidence",
        "",
        f"SmolLM2-135M-Instruct (float32, CPU), {rk['states']} expert states of {len(r['games'])} ALFWorld train "
        f"games (planner expert, the default profile's selection, history_len {r['history_len']}). Every admissible "
        "action scored by the log-likelihood of `action</action>` after the agent prompt "
        "(`act_pipeline.sampling.constrained`): summed over its tokens (log π₀(action | prompt), whose softmax over the "
        "admissible actions is π₀ restricted to them) and its mean per token (length-normalised: what `constrained` "
        "draws from, at `sampling.constrained_temperature`). Produced by `scripts/alternatives_evidence.py`.",
        "",
        "## Where the expert's action ranks among the admissible actions, and where the draws land",
        "",
        "| measure | summed (log π₀(action given prompt)) | mean per token (drawn from) | chance |",
        "|---|---|---|---|",
        f"| expert ranked first | {pct(rk['expert_first_share'])} | {pct(rm['expert_first_share'])} "
        f"| {pct(rk['chance_first'])} (mean 1/n) |",
        f"| expert in the top 4 | {pct(rk['expert_top4_share'])} | {pct(rm['expert_top4_share'])} "
        f"| {pct(rk['chance_top4'])} |",
        f"| median rank of the expert | {rk['median_rank']} | {rm['median_rank']} | {rk['chance_median_rank']} |",
        f"| mean rank of the expert | {rk['mean_rank']:.1f} | {rm['mean_rank']:.1f} | |",
        f"| mean number of admissible actions | {rk['mean_admissible']:.1f} | | |",
        f"| mean probability of the expert (T = {fr['temperature']}) | {rk['mean_expert_p_T']:.3f} "
        f"| {rm['mean_expert_p_T']:.3f} | {rk['chance_first']:.3f} |",
        f"| mean probability of the most likely action (T = {fr['temperature']}) | {rk['mean_max_p_T']:.3f} "
        f"| {rm['mean_max_p_T']:.3f} | {rk['chance_first']:.3f} |",
        f"| constrained draws (K = {fr['k']}) among π₀'s top 5 | {pct(rk['draws_in_top5_share'])} "
        f"| {pct(rm['draws_in_top5_share'])} | {pct(rk['chance_draws_in_top5'])} |",
        "",
        "Draws from the mean scores at other temperatures (`sampling.constrained_temperature`; p^(1/T)):",
        "",
        "| T | draws among the top 5 by mean score | mean probability of the expert |",
        "|---|---|---|",
        *[f"| {t} | {pct(v['draws_in_top5_share'])} | {v['mean_expert_p']:.3f} |"
          for t, v in r["draw_temperature_sweep"].items()],
        "",
        f"## Free sampling on the same states (K = {fr['k']}, T = {fr['temperature']}, "
        f"{fr['max_new_tokens']} new tokens)",
        "",
        f"{fr['samples']} samples: parsable {pct(fr['parsable_share'])}, admissible (parsable and one of the state's "
        f"actions, the expert's included) {pct(fr['admissible_share'])}, kept as an alternative (admissible, not the "
        f"expert's, not a duplicate) {pct(fr['kept_share'])}; states with at least one kept free sample: "
        f"{pct(fr['states_with_a_kept_sample'])}. Verdicts: {fr['reasons']}; hit the token limit: {fr['truncated']}.",
        "",
        "Some free completions: " + "; ".join(f"`{e['completion'][:60]!s}` ({e['reason']})" for e in fr["examples"][:6]),
        "",
        "## Example states (top 5 by mean token log-likelihood; ★ = the expert's action)",
        "",
    ]
    for s in r["per_state"][:: max(1, len(r["per_state"]) // 5)][:5]:
        lines.append(f"**{s['task']}** (game {s['game_id']}, step {s['step']}; {s['n_admissible']} admissible; "
                     f"expert `{s['expert_action']}` ranked {s['expert_rank']})")
        lines.append("")
        for i, t in enumerate(s["top5"], 1):
            star = " ★" if t["action"] == s["expert_action"] else ""
            lines.append(f"{i}. `{t['action']}`{star} — score {t['score']:.3f}, p {t['p']:.3f}")
        lines.append(f"   constrained draws (K = {fr['k']}, T = {fr['temperature']}): "
                     + ", ".join(f"`{a}`" for a in s["constrained_draws"]))
        lines.append("")
    lines += [
        "## Run",
        "",
        f"commit {r['commit']}; {m['nproc']} CPUs ({m['cpu']}), torch threads {m['torch_threads']} "
        f"(OMP_NUM_THREADS={m['OMP_NUM_THREADS']}); load average at start {m['loadavg_start']}, at end "
        f"{m['loadavg_end']} (other jobs shared the machine); wall time {r['wall_s']:.0f} s "
        f"(expert states {r['stage_s']['expert_states']:.0f} s, scoring {r['stage_s']['scoring']:.0f} s, "
        f"free sampling {r['stage_s']['free_sampling']:.0f} s).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
