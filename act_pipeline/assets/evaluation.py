"""One benchmark's evaluation of every arm, and the report over every benchmark."""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.common import GPU_STEP, output, png_md, preview, setup_torch
from act_pipeline.assets.training import ARMS
from act_pipeline.assets.versions import code_version
from act_pipeline.config import PipelineConfig
from act_pipeline.data.store import read_parquet, table_hash
from act_pipeline.files import write_json
from act_pipeline.resources import ProfileResource

EVAL_MODULES = ["act_pipeline.evaluation.run", "act_pipeline.evaluation.metrics", "act_pipeline.act.prompts",
                "act_pipeline.act.parsing", "act_pipeline.sampling.hf"]


def evaluation_asset(b: Benchmark, cfg: PipelineConfig) -> dg.AssetsDefinition:
    @dg.asset(
        **GPU_STEP, key=b.key("evaluation"), group_name=b.name, kinds={b.name},
        ins={"base_model": dg.AssetIn("base_model"), **b.ins("games", "expert_trajectories", "contrast_pairs", *ARMS)},
        code_version=code_version(cfg, EVAL_MODULES, ["eval", b.name]),
        description=f"{b.name}: every arm of the paper's Table 1 (prompt w/o and w/ thinking, ACT only, IL, IL w/ ACT, "
                    f"RL, RL w/ ACT) on the same held-out items: judgement accuracy on held-out {b.heldout_split} "
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

    cfg = profile.config()
    setup_torch(cfg)
    e, hl = cfg.eval, b.history_len(cfg)
    pairs, states = run.heldout_items(read_parquet(contrast_pairs["uri"]).to_pylist(),
                                      read_parquet(expert_trajectories["uri"]).to_pylist(), b.heldout_split, e)
    played = b.rollout_games(cfg, read_parquet(games["uri"]).to_pylist()) if b.rollout_games else {}
    rollouts = None
    if played:
        rollouts = run.rollouts(
            played, lambda: game_envs(cfg.envs, b.env_factory, b.env_kwargs(cfg, False), cfg.envs.eval_workers,
                                      context.log.info),
            e, hl, cfg.envs.retries, b.heldout_split, log=context.log.info)
    plan = run.eval_plan(cfg.model, e, base_model, arms)
    results, traces = run.evaluate_arms(plan, pairs, states, b.heldout_split, hl, cfg.model, e, b.name, rollouts,
                                        log=context.log.info)
    # the benchmark's settings first (the report names ScienceWorld's tasks and max_admissible)
    meta = {**cfg.to_dict()[b.name], "profile": cfg.name, "profile_file": cfg.source, "seed": e.seed, "max_steps": e.max_steps,
            "model_name": base_model.get("name"), "base_model_hash": base_model["hash"],
            "checkpoints": {a: m["uri"] for a, m in {"base": base_model, **arms}.items()},
            **run.method_meta(cfg, contrast_pairs.get("origins"), arms),
            "pairs_hash": contrast_pairs["hash"], "games_source": games.get("source"),
            "judgement_curve": arms["act_checkpoint"].get("judgement_curve"), "dagster_run_id": context.run_id}
    out = profile.artifact_dir(b.label("evaluation"), context.run_id) / "evaluation.json"
    write_json(out, {"benchmark": b.name, "meta": meta, "traces": traces,
                     "results": {a: [m.to_dict() for m in ms] for a, ms in results.items()}})
    # a metric over no items (e.g. no model-driven held-out pairs) has no value, said as null
    flat = {f"{arm}/{m.name}/{m.split}": round(m.value, 4) if m.n else None for arm, ms in results.items() for m in ms}
    h = table_hash(pa.Table.from_pylist([{"k": k, "v": v} for k, v in flat.items()]))
    return output({"uri": str(out), "hash": h, "benchmark": b.name, "metrics": flat}, h,
                  metrics=dg.MetadataValue.json({k: {"value": v} for k, v in flat.items()}),
                  table=preview([{"metric": k, "value": "— (N=0)" if v is None else f"{100 * v:.1f}%"}
                                 for k, v in flat.items()], ["metric", "value"], limit=len(flat)))


def report_asset(benchmarks: list[Benchmark], cfg: PipelineConfig) -> dg.AssetsDefinition:
    """The one report page over every benchmark's evaluation (rendering only: cheap to redo). The
    first benchmark's grid leads the page; the others follow."""
    ins = {f"{b.name}_evaluation": dg.AssetIn(key=b.key("evaluation")) for b in benchmarks}

    @dg.asset(group_name="evaluation", kinds={"matplotlib"}, ins=ins,
              code_version=code_version(cfg, ["act_pipeline.evaluation.report"], []),
              description="The report: the Table-1 grid of every benchmark and arm with 95% bootstrap intervals, "
                          "per-task-type tables, judgement accuracy over ACT steps, critiques and side-by-side "
                          "episodes, the paper's numbers beside ours (markdown, HTML, PNG).")
    def eval_report(context: dg.AssetExecutionContext, profile: ProfileResource, **evaluations: dict) -> dg.Output[dict]:
        return _report(context, profile, [b.name for b in benchmarks], evaluations)

    return eval_report


def _report(context, profile: ProfileResource, names: list[str], evaluations: dict[str, dict]) -> dg.Output[dict]:
    from act_pipeline.evaluation.metrics import Metric
    from act_pipeline.evaluation.report import write_report

    docs = {n: json.loads(Path(evaluations[f"{n}_evaluation"]["uri"]).read_text()) for n in names}
    results = {n: {a: [Metric.from_dict(d) for d in ms] for a, ms in doc["results"].items()} for n, doc in docs.items()}
    lead, rest = names[0], names[1:]
    meta = {**docs[lead]["meta"], "evaluations": {k: v["uri"] for k, v in evaluations.items()}}
    curve = meta.pop("judgement_curve", None)
    extra = {n: {"results": results[n], "judgement_curve": docs[n]["meta"].get("judgement_curve"),
                 "meta": {k: v for k, v in docs[n]["meta"].items() if k != "judgement_curve"}} for n in rest}
    out = profile.artifact_dir("eval_report", context.run_id)
    paths = write_report(out, results[lead], meta, docs[lead].get("traces"), curve, benchmarks=extra)
    flat = {f"{n}/{k}": v for n in names for k, v in evaluations[f"{n}_evaluation"]["metrics"].items()}
    h = table_hash(pa.Table.from_pylist([{"k": k, "v": v} for k, v in flat.items()]))
    return output({"uri": str(out), "hash": h, "report_md": str(paths["markdown"]), "report_json": str(paths["json"]),
                   "report_html": str(paths["html"]), "plot": str(paths["png"]), "metrics": flat}, h,
                  report=dg.MetadataValue.md(paths["markdown"].read_text()),
                  report_path=dg.MetadataValue.path(str(paths["markdown"])),
                  report_html=dg.MetadataValue.path(str(paths["html"])),
                  plot=png_md(paths["png"]),
                  **{f"plot_{n}": png_md(p) for n, p in paths.get("bench_png", {}).items()},
                  # judgement_curve (the lead benchmark), judgement_curve_<other benchmark>
                  **{png.stem: png_md(png) for png in sorted(out.glob("judgement_curve*.png"))},
                  metrics=dg.MetadataValue.json({k: {"value": v} for k, v in flat.items()}))
