"""One benchmark's evaluation of every arm, and the report over every benchmark."""

import json
from functools import partial
from pathlib import Path

import dagster as dg
import pyarrow as pa

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.common import GPU_STEP, latest_materialization, output, partition_seed, png_md, preview, seed_partitions, setup_torch
from act_pipeline.assets.training import arms as arm_names
from act_pipeline.assets.transfer import TRANSFER_KEY
from act_pipeline.assets.versions import code_version
from act_pipeline.config import PipelineConfig
from act_pipeline.data.store import read_parquet, table_hash
from act_pipeline.files import write_json
from act_pipeline.resources import ProfileResource

EVAL_MODULES = ["act_pipeline.evaluation.run", "act_pipeline.evaluation.metrics", "act_pipeline.act.prompts",
                "act_pipeline.act.parsing", "act_pipeline.sampling.hf"]


def evaluation_asset(b: Benchmark, cfg: PipelineConfig) -> dg.AssetsDefinition:
    @dg.asset(
        **GPU_STEP, key=b.key("evaluation"), group_name=b.name, kinds={b.name}, partitions_def=seed_partitions(cfg),
        ins={"base_model": dg.AssetIn("base_model"),
             **b.ins("games", "expert_trajectories", "contrast_pairs", *arm_names(cfg))},
        # (the Early Experience arm's budget reads its section)
        code_version=code_version(cfg, EVAL_MODULES, ["eval", b.name, *(["early_experience"] if "early_experience"
                                                                        in cfg.arms else [])]),
        description=f"{b.name}: every arm of the paper's Table 1 (prompt w/o and w/ thinking, ACT only, IL, Early "
                    f"Experience when `arms` lists it, IL w/ ACT, RL, RL w/ ACT) on the same held-out items: judgement accuracy on held-out {b.heldout_split} "
                    "pairs, next-action accuracy on held-out expert states"
                    + (", success rates of played games." if b.rollout_games is not None else "."),
    )
    def evaluation(context: dg.AssetExecutionContext, profile: ProfileResource, base_model: dict, games: dict,
                   expert_trajectories: dict, contrast_pairs: dict, **arms: dict) -> dg.Output[dict]:
        return _evaluate(context, profile, b, base_model, games, expert_trajectories, contrast_pairs, arms)

    return evaluation


def _evaluate(context, profile: ProfileResource, b: Benchmark, base_model: dict, games: dict,
              expert_trajectories: dict, contrast_pairs: dict, arms: dict[str, dict]) -> dg.Output[dict]:
    from act_pipeline.envs.workers import game_envs
    from act_pipeline.evaluation import run
    from act_pipeline.machine import code_commit

    cfg = profile.config()
    setup_torch(cfg)
    e, hl, split = cfg.eval, b.history_len(cfg), b.eval_split(cfg)
    pairs, states = run.heldout_items(read_parquet(contrast_pairs["uri"]).to_pylist(),
                                      read_parquet(expert_trajectories["uri"]).to_pylist(), split, e)
    # roll-outs play valid_seen / valid_unseen games: never while tuning on the validation split
    played = (b.rollout_games(cfg, read_parquet(games["uri"]).to_pylist())
              if b.rollout_games and split == b.heldout_split else {})
    played = {s: gs for s, gs in played.items() if gs}  # a split with no games is not played (no N=0 metric)
    rollouts = None
    if played:
        rollouts = run.Rollouts(played, partial(game_envs, cfg.envs, b.env_factory, b.env_kwargs(cfg, False),
                                                cfg.envs.eval_workers), e, hl, cfg.envs.retries, split)
    plan = run.eval_plan(cfg.model, e, base_model, arms)
    # an arm already scored on these items with this code and settings (the base model, in every
    # seed's evaluation) is read back, not scored again
    cache = run.EvalCache(profile.root() / "eval_cache", context.assets_def.code_versions_by_key.get(context.asset_key),
                          {"played": {s: [g["game_hash"] for g in gs] for s, gs in played.items()}})
    # Early Experience reasons before its action: room for its reflection, then the action
    budgets = {a: cfg.early_experience.max_new_tokens + e.max_new_tokens for a in arms if a in run.REASONS_FIRST}
    results, traces = run.evaluate_arms(plan, pairs, states, split, hl, cfg.model, e, b.name, rollouts,
                                        log=context.log.info, cache=cache, new_tokens=budgets)
    # the benchmark's settings first (the report names ScienceWorld's tasks and max_admissible)
    meta = {**cfg.to_dict()[b.name], "profile": cfg.name, "profile_file": cfg.source, "seed": e.seed, "max_steps": e.max_steps,
            "split": split, "training_seed": partition_seed(context), "code_commit": code_commit(),
            "model_name": base_model.get("name"), "base_model_hash": base_model["hash"],
            "checkpoints": {a: m["uri"] for a, m in {"base": base_model, **arms}.items()},
            **run.method_meta(cfg, contrast_pairs.get("origins"), arms),
            "pairs_hash": contrast_pairs["hash"], "games_source": games.get("source"),
            "judgement_curve": arms["act_checkpoint"].get("judgement_curve"), "dagster_run_id": context.run_id}
    out = profile.artifact_dir(b.label("evaluation"), context.run_id) / "evaluation.json"
    write_json(out, {"benchmark": b.name, "seed": partition_seed(context), "meta": meta, "traces": traces,
                     "results": {a: [m.to_dict() for m in ms] for a, ms in results.items()}})
    # a metric over no items (e.g. no model-driven held-out pairs) has no value, said as null
    flat = {f"{arm}/{m.name}/{m.split}": round(m.value, 4) if m.n else None for arm, ms in results.items() for m in ms}
    h = table_hash(pa.Table.from_pylist([{"k": k, "v": v} for k, v in flat.items()]))
    return output({"uri": str(out), "hash": h, "benchmark": b.name, "seed": partition_seed(context), "metrics": flat}, h,
                  metrics=dg.MetadataValue.json({k: {"value": v} for k, v in flat.items()}),
                  table=preview([{"metric": k, "value": "— (N=0)" if v is None else f"{100 * v:.1f}%"}
                                 for k, v in flat.items()], ["metric", "value"], limit=len(flat)))


def report_asset(benchmarks: list[Benchmark], cfg: PipelineConfig) -> dg.AssetsDefinition:
    """The one report page over every benchmark's evaluation (rendering only: cheap to redo). The
    first benchmark's grid leads the page; the others follow."""
    ins = {f"{b.name}_evaluation": dg.AssetIn(key=b.key("evaluation")) for b in benchmarks}
    if cfg.transfer.enabled:  # its table beside the paper's Table 2
        ins["transfer_evaluation"] = dg.AssetIn(key=TRANSFER_KEY)

    @dg.asset(group_name="evaluation", kinds={"matplotlib"}, ins=ins,
              code_version=code_version(cfg, ["act_pipeline.evaluation.report", "act_pipeline.evaluation.science",
                                            "act_pipeline.evaluation.stats"], []),
              description="The report: the Table-1 grid of every benchmark and arm with 95% bootstrap intervals, "
                          "per-task-type tables, judgement accuracy over ACT steps, critiques and side-by-side "
                          "episodes, the paper's numbers beside ours (markdown, HTML, PNG)"
                          + ("; the reasoning-transfer table beside the paper's Table 2." if cfg.transfer.enabled
                             else "."))
    def eval_report(context: dg.AssetExecutionContext, profile: ProfileResource, **evaluations: dict) -> dg.Output[dict]:
        return _report(context, profile, [b.name for b in benchmarks], evaluations, upstream_keys(benchmarks, cfg))

    return eval_report


def _report(context, profile: ProfileResource, names: list[str], evaluations: dict[str, dict],
            keys: dict[dg.AssetKey, bool]) -> dg.Output[dict]:
    from act_pipeline.evaluation.metrics import Metric
    from act_pipeline.evaluation.report import write_report

    cfg = profile.config()
    out = profile.artifact_dir("eval_report", context.run_id)
    science = None
    transfer = evaluations.pop("transfer_evaluation", None)
    if transfer is not None and cfg.seeds:  # {seed: manifest}: the lowest seed, as the grid
        if not transfer:
            raise ValueError(f"no training seed of transfer_evaluation is materialized yet: materialize a partition "
                             f"(seeds {cfg.seeds}) first")
        transfer = transfer[min(transfer, key=int)]
    if cfg.seeds:  # partitioned by training seed: {seed: manifest} per benchmark
        missing = [n for n in names if not evaluations[f"{n}_evaluation"]]
        if missing:
            raise ValueError(f"no training seed of {', '.join(missing)}/evaluation is materialized yet: materialize "
                             f"a partition (seeds {cfg.seeds}) first")
        per_seed = {n: {int(k): v for k, v in evaluations[f"{n}_evaluation"].items()} for n in names}
        science = _science(context, out, cfg, names[0], per_seed[names[0]], keys)
        # the Table-1 grid shows the lowest seed; the seeds together are in the science result
        evaluations = {f"{n}_evaluation": per_seed[n][min(per_seed[n])] for n in names}
    docs = {n: json.loads(Path(evaluations[f"{n}_evaluation"]["uri"]).read_text()) for n in names}
    results = {n: {a: [Metric.from_dict(d) for d in ms] for a, ms in doc["results"].items()} for n, doc in docs.items()}
    lead, rest = names[0], names[1:]
    meta = {**docs[lead]["meta"], "evaluations": {k: v["uri"] for k, v in evaluations.items()}}
    curve = meta.pop("judgement_curve", None)
    extra = {n: {"results": results[n], "judgement_curve": docs[n]["meta"].get("judgement_curve"),
                 "meta": {k: v for k, v in docs[n]["meta"].items() if k != "judgement_curve"}} for n in rest}
    transfer_doc = None
    if transfer is not None:
        doc = json.loads(Path(transfer["uri"]).read_text())
        transfer_doc = {"meta": doc["meta"], "results": {a: [Metric.from_dict(d) for d in ms]
                                                         for a, ms in doc["results"].items()}}
        meta["evaluations"]["transfer_evaluation"] = transfer["uri"]
    paths = write_report(out, results[lead], meta, docs[lead].get("traces"), curve, benchmarks=extra,
                         transfer=transfer_doc)
    flat = {f"{n}/{k}": v for n in names for k, v in evaluations[f"{n}_evaluation"]["metrics"].items()}
    if science:  # the headline numbers over every seed replace the single seed's
        flat = {f"{names[0]}/{k}": v for k, v in science["flat"].items()}
    if transfer is not None:
        flat.update({f"transfer/{k}": v for k, v in transfer["metrics"].items()})
    h = table_hash(pa.Table.from_pylist([{"k": k, "v": v} for k, v in flat.items()]))
    extra_md = {}
    if science:
        extra_md = {"science": dg.MetadataValue.md(science["paths"]["markdown"].read_text()),
                    "science_json": dg.MetadataValue.path(str(science["paths"]["json"])),
                    **{f"science_{k}": png_md(science["paths"][k]) for k in ("forest", "curves", "arms")}}
    return output({"uri": str(out), "hash": h, "report_md": str(paths["markdown"]), "report_json": str(paths["json"]),
                   "report_html": str(paths["html"]), "plot": str(paths["png"]), "metrics": flat,
                   **({"science_json": str(science["paths"]["json"]), "science_md": str(science["paths"]["markdown"])}
                      if science else {})}, h,
                  report=dg.MetadataValue.md(paths["markdown"].read_text()),
                  report_path=dg.MetadataValue.path(str(paths["markdown"])),
                  report_html=dg.MetadataValue.path(str(paths["html"])),
                  plot=png_md(paths["png"]),
                  **{f"plot_{n}": png_md(p) for n, p in paths.get("bench_png", {}).items()},
                  # judgement_curve (the lead benchmark), judgement_curve_<other benchmark>
                  **{png.stem: png_md(png) for png in sorted(out.glob("judgement_curve*.png"))},
                  metrics=dg.MetadataValue.json({k: {"value": v} for k, v in flat.items()}), **extra_md)


def upstream_keys(benchmarks: list[Benchmark], cfg: PipelineConfig) -> dict[dg.AssetKey, bool]:
    """Every asset the report stands on, and whether it is partitioned by training seed."""
    keys = {dg.AssetKey("base_model"): False}
    for b in benchmarks:
        keys.update({b.key(a): False for a in ("games", *(["imported_expert_steps"] if b.imports else []),
                                               "expert_trajectories", "sampled_alternatives", "contrast_pairs")})
        keys.update({b.key(a): bool(cfg.seeds) for a in (*arm_names(cfg), "evaluation")})
    if cfg.transfer.enabled:
        keys[TRANSFER_KEY] = bool(cfg.seeds)
    return keys


def _stage_minutes(context, keys: dict[dg.AssetKey, bool], seeds: list[str]) -> dict:
    """Minutes of every asset upstream of the report, from the step stats of the runs that made
    their current materializations (each seed's partitions summed), and the wall time from the
    first such step's start to the last one's end (``total``; the report itself not included)."""
    inst = context.instance
    spans: dict[str, list[tuple[float, float]]] = {}
    stats: dict[str, dict] = {}
    for key, parted in keys.items():
        for part in seeds if parted else [None]:
            rec = latest_materialization(inst, key, part)
            if rec is None:
                continue
            ev = rec.event_log_entry
            if ev.run_id not in stats:
                stats[ev.run_id] = {s.step_key: s for s in inst.get_run_step_stats(ev.run_id)}
            step = stats[ev.run_id].get(ev.step_key)
            if step and step.start_time and step.end_time:
                spans.setdefault(key.to_user_string(), []).append((step.start_time, step.end_time))
    out = {k: round(sum(e - s for s, e in v) / 60, 2) for k, v in sorted(spans.items())}
    every = [x for v in spans.values() for x in v]
    if every:
        out["total"] = round((max(e for _, e in every) - min(s for s, _ in every)) / 60, 2)
    return out


def _science(context, out: Path, cfg: PipelineConfig, bench: str, per_seed: dict[int, dict],
             keys: dict[dg.AssetKey, bool]) -> dict:
    """The result over every materialized training seed (paired differences, intervals over games
    and seeds): ``science/latest.json``, ``latest.md`` and plots inside the report folder. It
    states the commit, the machine, its load, the minutes of every stage (from the Dagster runs
    that made the current materializations) and what was tried while tuning (the file
    ``<profile>.tuning.md`` beside the profile, one item a line)."""
    from act_pipeline.evaluation.science import science_result, tuning_notes, write_science
    from act_pipeline.machine import machine_info, machine_line

    docs = {s: json.loads(Path(m["uri"]).read_text()) for s, m in sorted(per_seed.items())}
    evals = [{"seed": s, "results": d["results"]} for s, d in docs.items()]
    curves = {s: d["meta"].get("judgement_curve") or [] for s, d in docs.items()}
    info = machine_info(cfg.threads)
    notes = Path(cfg.source).with_suffix(".tuning.md")
    tuning = tuning_notes(notes.read_text()) if notes.is_file() else [f"not recorded ({notes.name} is not there)"]
    # the commit(s) the evaluations ran at (the code that scored the arms), not the one the report
    # is made at: a report made later, or from a tree with other changes, still names the run's code
    made = sorted({d["meta"]["code_commit"] for d in docs.values() if d["meta"].get("code_commit")})
    now = info["git_commit"] + ("+dirty" if info["git_dirty"] else "")
    meta = {"profile": cfg.name, "profile_file": cfg.source, "benchmark": bench,
            "commit": ", ".join(made) or now, "report_commit": now,
            "machine": machine_line(info),
            "machine_detail": {k: info.get(k) for k in ("cpu_model", "logical_cpus", "memory_gib", "cpu_flags",
                                                         "platform", "torch", "transformers", "trl", "dagster")},
            "load": f"load average {' / '.join(f'{x:.2f}' for x in info['load_avg_at_start'])} (1 / 5 / 15 min) when "
                    f"the report was made; torch threads per process: {cfg.threads or 'default'}",
            "wall_minutes": _stage_minutes(context, keys, [str(x) for x in cfg.seeds]), "tuning": tuning,
            "split": next(iter(docs.values()))["meta"].get("split"), "seeds_configured": cfg.seeds,
            "evaluations": {s: m["uri"] for s, m in per_seed.items()}}
    result = science_result(evals, curves, meta)
    paths = write_science(out / "science", result)
    flat = {}
    for group, arms in (("judgement_model_only", ("base", "act")), ("next_action", ("base", "act", "il", "il_act"))):
        for arm in arms:
            if arm in result.get(group, {}):
                flat[f"{group}/{arm}"] = round(result[group][arm]["mean"], 4)
    return {"paths": paths, "result": result, "flat": flat}
