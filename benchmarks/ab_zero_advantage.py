"""GRPO steps whose groups all have equal rewards (zero advantage, no gradient), with and without the
model's forward and backward skipped (``SharedPromptGRPOTrainer.skip_no_gradient``): ACT and RL as the
default profile trains them (configs/default.yaml's ``act`` and ``rl`` sections), interleaved A B B A.

    python -m benchmarks.ab_zero_advantage --out benchmarks/results/zero_advantage_ab.json

Real expert states (the planner through 4 ALFWorld train games, as the roofline line picks them),
contrast pairs from them (the expert against another admissible action), SmolLM2-135M-Instruct,
``--steps`` steps per run (the first dropped from the step times), one torch thread. Reported per
arm and way: the median step seconds, the training positions the model ran, the reward logs (the same
draws both ways) and a hash of the trained weights (the same both ways: the lever's claim). Not part
of the suite: a standalone A/B of one lever.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from pathlib import Path

import torch


def weights_hash(folder: Path) -> str:
    """sha256 over the saved tensors' names and bytes (the checkpoint's content, whatever the file's layout)."""
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, t in sorted(load_file(str(folder / "model.safetensors")).items()):
        h.update(name.encode())
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2, help="A B, then B A, ...")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from act_pipeline.training import act_grpo
    from act_pipeline.training.grpo_shared import SharedPromptGRPOTrainer
    from act_pipeline.training.rl_grpo import train_rl
    from benchmarks.bench_grpo import make_pairs
    from benchmarks.bench_roofline import metered_grpo
    from benchmarks.common import default_profile_states, fresh_dirs, interleaved, machine_info

    prof, model, ctx, rows = default_profile_states("ab-zero-adv-")
    pairs = make_pairs(rows)
    history_len = prof.alfworld.history_len
    update = {"max_steps": args.steps, "save_steps": 0, "save_every_s": 0.0}
    arms = {"act": (prof.act.model_copy(update={**update, "probe_every": 0}),
                    lambda cfg, out: act_grpo.train_act(model, pairs, out, cfg, history_len=history_len,
                                                        log=lambda m: None)),
            "rl": (prof.rl.model_copy(update=update),
                   lambda cfg, out: train_rl(model, rows, out, cfg, history_len=history_len, log=lambda m: None))}
    doc = {"what": "GRPO steps of configs/default.yaml's act and rl sections with the model's forward and "
                   "backward skipped for micro-batches with no gradient (after) and TRL's full pass (before)",
           "machine": machine_info(1), "rows": len(rows), "steps_per_run": args.steps, "repeats": args.repeats,
           "history_len": history_len, "arms": {}}
    for arm, (cfg, train) in arms.items():
        fresh = fresh_dirs(ctx, arm)

        def way(skip: bool, cfg=cfg, train=train, fresh=fresh):
            def run() -> dict:
                out = fresh()
                before = SharedPromptGRPOTrainer.skip_no_gradient
                SharedPromptGRPOTrainer.skip_no_gradient = skip
                try:
                    res = metered_grpo(lambda: train(cfg, out))
                finally:
                    SharedPromptGRPOTrainer.skip_no_gradient = before
                return {**res, "weights": weights_hash(out)}
            return run

        print(f"{arm}: {cfg.max_steps} steps per run", flush=True)
        t = interleaved({"after": way(True), "before": way(False)}, args.repeats)
        runs = {name: [{**r, "skip_no_gradient": name == "after", "wall_s": round(sec, 1)}
                       for r, sec in zip(t[name]["results"], t[name]["seconds"])] for name in ("after", "before")}
        for name in ("after", "before"):
            for r in runs[name]:
                print(f"  {arm} {name}: steps {r['step_seconds']}, train positions {r['train_positions']}, "
                      f"rewards {r['rewards']}, weights {r['weights']}", flush=True)
        doc["arms"][arm] = {
            "config": cfg.model_dump(),
            "median_step_s": {k: statistics.median([s for r in runs[k] for s in r["step_seconds"]])
                              for k in ("before", "after")},
            "median_wall_s": {k: statistics.median(r["wall_s"] for r in runs[k]) for k in ("before", "after")},
            "train_positions_per_run": {k: runs[k][0]["train_positions"] for k in ("before", "after")},
            "identical_reward_logs": len({tuple(r["rewards"]) for rs in runs.values() for r in rs}) == 1,
            "identical_weights": len({r["weights"] for rs in runs.values() for r in rs}) == 1,
            "runs": runs["after"] + runs["before"]}
        print(json.dumps({k: v for k, v in doc["arms"][arm].items() if k not in ("runs", "config")}), flush=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
