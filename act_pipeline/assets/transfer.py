"""Reasoning transfer: MATH-500 and GPQA-Diamond accuracy of the base model and every checkpoint of
one benchmark's chain (the paper's Table 2: models trained on ALFWorld only). In the graph when the
profile says ``transfer: {enabled: true}``; the core is ``act_pipeline/evaluation/transfer.py``."""

import dagster as dg
import pyarrow as pa

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.common import GPU_STEP, output, partition_seed, preview, seed_partitions, setup_torch
from act_pipeline.assets.training import arms as arm_names
from act_pipeline.assets.versions import code_version, source_hash
from act_pipeline.config import PipelineConfig
from act_pipeline.data.store import table_hash
from act_pipeline.files import sha256_file, write_json
from act_pipeline.resources import ProfileResource

TRANSFER_KEY = dg.AssetKey("transfer_evaluation")
TRANSFER_MODULES = ["act_pipeline.evaluation.transfer", "act_pipeline.evaluation.metrics", "act_pipeline.act.prompts",
                    "act_pipeline.act.parsing", "act_pipeline.sampling.hf"]


def transfer_asset(b: Benchmark, cfg: PipelineConfig) -> dg.AssetsDefinition:
    @dg.asset(
        **GPU_STEP, key=TRANSFER_KEY, group_name="evaluation", kinds={"pytorch"}, partitions_def=seed_partitions(cfg),
        ins={"base_model": dg.AssetIn("base_model"), **b.ins(*arm_names(cfg))},
        code_version=code_version(cfg, TRANSFER_MODULES, ["eval", "transfer"]),
        description=f"Reasoning transfer (the paper's Table 2): MATH-500 and GPQA-Diamond accuracy, mean ± std over "
                    f"`transfer.runs` runs, of the base model (prompted without and with thinking) and every "
                    f"{b.name} checkpoint; math answers checked with math-verify, GPQA options in a seeded order.",
    )
    def transfer_evaluation(context: dg.AssetExecutionContext, profile: ProfileResource, base_model: dict,
                            **arms: dict) -> dg.Output[dict]:
        return _transfer(context, profile, b, base_model, arms)

    return transfer_evaluation


def _transfer(context, profile: ProfileResource, b: Benchmark, base_model: dict, arms: dict[str, dict]) -> dg.Output[dict]:
    from act_pipeline.evaluation import run, transfer

    cfg = profile.config()
    setup_torch(cfg)
    t, e = cfg.transfer, cfg.eval
    specs = transfer.resolve_sets(t, profile.root(), cfg.source)
    sets = transfer.load_sets(t, profile.root(), cfg.source)
    plan = run.eval_plan(cfg.model, e, base_model, arms)
    # the base model, scored in every training seed's partition, is read back after the first
    cache = run.EvalCache(profile.root() / "eval_cache", None)
    results = transfer.evaluate_arms(plan, sets, t, e, cfg.model, log=context.log.info, cache=cache,
                                     code=source_hash(*TRANSFER_MODULES))
    meta = {"profile": cfg.name, "profile_file": cfg.source, "benchmark": b.name, "seed": e.seed,
            "training_seed": partition_seed(context), "runs": t.runs, "temperature": e.temperature,
            "max_new_tokens": t.max_new_tokens, "limit": t.limit, "thinking": cfg.model.thinking,
            "sets": {name: {"source": spec, "items": len(sets[name]),
                            **({} if spec.startswith("hf:") else {"sha256": sha256_file(spec)})}
                     for name, spec in specs.items()},
            "model_name": base_model.get("name"), "base_model_hash": base_model["hash"],
            "checkpoints": {a: m["uri"] for a, m in {"base": base_model, **arms}.items()},
            "dagster_run_id": context.run_id}
    out = profile.artifact_dir("transfer_evaluation", context.run_id) / "transfer.json"
    write_json(out, {"meta": meta, "results": {a: [m.to_dict() for m in ms] for a, ms in results.items()}})
    flat = {f"{arm}/{m.name}": round(m.value, 4) if m.n else None for arm, ms in results.items() for m in ms}
    h = table_hash(pa.Table.from_pylist([{"k": k, "v": v} for k, v in flat.items()]))
    rows = [{"arm": arm, "set": m.split, "mean": "—" if not m.n else f"{100 * m.value:.1f}%",
             "std": "—" if m.detail.get("std") is None else f"{100 * m.detail['std']:.1f}", "runs": len(m.detail["runs"]),
             "n": m.n} for arm, ms in results.items() for m in ms]
    return output({"uri": str(out), "hash": h, "seed": partition_seed(context), "metrics": flat}, h,
                  metrics=dg.MetadataValue.json({k: {"value": v} for k, v in flat.items()}),
                  table=preview(rows, ["arm", "set", "mean", "std", "runs", "n"], limit=len(rows)))
