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
import os
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def one_run(model: str, rows: list[dict], cfg, history_len: int, out: Path, once: bool) -> dict:
    from act_pipeline.act.rewards import make_action_reward
    from act_pipeline.training import act_grpo
    from act_pipeline.training.grpo_shared import SharedPromptGRPOTrainer
    from act_pipeline.training.rl_grpo import state_dataset
    from benchmarks.bench_roofline import Meter, metered

    meter = Meter()
    before = SharedPromptGRPOTrainer.encode_prompts_once
    SharedPromptGRPOTrainer.encode_prompts_once = once
    try:
        with metered(act_grpo, meter):
            reward = make_action_reward(act_grpo.stop_token_ids(model))
            act_grpo.train_grpo(model, lambda tok: state_dataset(rows, tok, history_len), reward, out, cfg, False,
                                lambda m: None, None, None, None, "RL GRPO", "states")
    finally:
        SharedPromptGRPOTrainer.encode_prompts_once = before
    return meter.summary()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from act_pipeline.config import load_config
    from act_pipeline.models import resolve_base_model
    from benchmarks.common import Ctx, expert_states, machine_info, pick_spread
    from benchmarks.roofline import model_peak

    prof = load_config(REPO / "configs" / "default.yaml")
    model = resolve_base_model(prof.model, 0, log=print)
    scratch = Path(tempfile.mkdtemp(prefix="ab-rl-"))
    ctx = Ctx(quick=False, model=model, model_name="SmolLM2-135M-Instruct", tiny_model="", threads=1, seed=0,
              scratch=scratch, alfworld=Path(os.environ.get("ALFWORLD_DATA", REPO.parent / "shared" / "alfworld")))
    rows = pick_spread(expert_states(ctx, 4), 16)
    from transformers import AutoConfig

    peak = {k: v for k, v in model_peak(AutoConfig.from_pretrained(model)).items() if k in ("peak_GFLOPs", "peak_shape")}
    cfg = prof.rl.model_copy(update={"max_steps": args.steps, "save_steps": 0, "save_every_s": 0.0})
    runs = []
    for i, once in enumerate([True, False, False, True]):
        t0 = time.perf_counter()
        r = one_run(model, rows, cfg, prof.alfworld.history_len, scratch / f"run{i}", once)
        r.update(encode_prompts_once=once, wall_s=round(time.perf_counter() - t0, 1))
        print(f"run {i} encode_prompts_once={once}: steps {r['step_seconds']}, "
              f"generate positions {r['generate_positions']}, rewards {r['rewards']}", flush=True)
        runs.append(r)
    way = {k: [r for r in runs if r["encode_prompts_once"] is k] for k in (True, False)}

    def med(rs):
        steps = sorted(s for r in rs for s in r["step_seconds"])
        return steps[len(steps) // 2] if steps else None

    doc = {"what": "RL GRPO (configs/default.yaml rl section) with each distinct prompt encoded once in "
                   "generation (after) against TRL's generation, each copy encoded (before)",
           "machine": machine_info(1), "matmul_peak": peak, "rows": len(rows), "steps_per_run": args.steps,
           "rl": cfg.model_dump(), "history_len": prof.alfworld.history_len,
           "median_step_s": {"before": med(way[False]), "after": med(way[True])},
           "generate_positions_per_step": {
               "before": way[False][0]["generate_positions"] / way[False][0]["steps_timed"],
               "after": way[True][0]["generate_positions"] / way[True][0]["steps_timed"]},
           "identical_reward_logs": len({tuple(r["rewards"]) for r in runs}) == 1,
           "runs": runs}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("median_step_s", "generate_positions_per_step", "identical_reward_logs")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
