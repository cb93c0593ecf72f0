"""RL GRPO (the default profile's ``rl`` section) with and without each distinct prompt encoded once
in generation: step seconds, generation positions and the reward logs, interleaved A B B A.

    python -m benchmarks.ab_rl_generation --out benchmarks/results/rl_generation_ab.json

Real expert states (the planner through 4 ALFWorld train games, as the roofline line picks them),
SmolLM2-135M-Instruct, 4 steps per run (the first dropped), one torch thread. Not part of the suite:
a standalone A/B of one lever (the suite's grpo_roofline line measures it on ACT).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from transformers import AutoConfig

    from act_pipeline.training.rl_grpo import train_rl
    from benchmarks.bench_roofline import metered_grpo
    from benchmarks.common import default_profile_states, fresh_dirs, interleaved, machine_info
    from benchmarks.roofline import model_peak

    prof, model, ctx, rows = default_profile_states("ab-rl-")
    peak = {k: v for k, v in model_peak(AutoConfig.from_pretrained(model)).items() if k in ("peak_GFLOPs", "peak_shape")}
    cfg = prof.rl.model_copy(update={"max_steps": args.steps, "save_steps": 0, "save_every_s": 0.0})
    history_len = prof.alfworld.history_len
    fresh = fresh_dirs(ctx, "run")

    def way(once: bool):
        return lambda: metered_grpo(lambda: train_rl(model, rows, fresh(), cfg, history_len=history_len,
                                                     log=lambda m: None), once)

    # after, before, then before, after (interleaved's A B B A)
    t = interleaved({"after": way(True), "before": way(False)}, 2)
    runs = {}
    for name, once in (("after", True), ("before", False)):
        runs[name] = [{**r, "encode_prompts_once": once, "wall_s": round(sec, 1)}
                      for r, sec in zip(t[name]["results"], t[name]["seconds"])]
        for r in runs[name]:
            print(f"{name}: steps {r['step_seconds']}, generate positions {r['generate_positions']}, "
                  f"rewards {r['rewards']}", flush=True)

    def per_step(name: str) -> float:
        return runs[name][0]["generate_positions"] / runs[name][0]["steps_timed"]

    doc = {"what": "RL GRPO (configs/default.yaml rl section) with each distinct prompt encoded once in "
                   "generation (after) against TRL's generation, each copy encoded (before)",
           "machine": machine_info(1), "matmul_peak": peak, "rows": len(rows), "steps_per_run": args.steps,
           "rl": cfg.model_dump(), "history_len": history_len,
           "median_step_s": {k: statistics.median_high([s for r in runs[k] for s in r["step_seconds"]])
                             for k in ("before", "after")},
           "generate_positions_per_step": {k: per_step(k) for k in ("before", "after")},
           "identical_reward_logs": len({tuple(r["rewards"]) for rs in runs.values() for r in rs}) == 1,
           "runs": runs["after"] + runs["before"]}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("median_step_s", "generate_positions_per_step", "identical_reward_logs")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
