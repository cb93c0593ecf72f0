"""8. Training tokens/s as a fraction of the FLOP roofline: IL (SFT) and ACT (GRPO), each through the
pipeline and through a plain TRL script on the same examples, the roofline from a matmul peak
measured in the same run.

FLOPs counted (P = the parameters the forward multiplies: every ``nn.Linear`` weight, the LM head
included; SmolLM2 ties it to the embedding, whose lookup is no matmul and is not counted again;
norms and attention scores are left out):

- SFT: 6·P per real (non-padding) token trained (forward 2·P, backward 4·P);
- GRPO: 6·P per prompt or completion token of every sequence trained, plus its generation:
  2·P per prompt token (prefill) and per generated token after the first (the first comes out of
  the prefill): 6·P·T + 2·P·(T − sequences), T = the step's prompt + completion tokens (TRL's
  ``num_tokens``).

fraction = FLOPs per second of the steady-state steps (each run's first step dropped) / the
matmul peak: :func:`benchmarks.roofline.model_peak` (float32 ``F.linear``, this thread count, the best
of the model's matmul shapes at 16, 400 and 1024 rows and a 1024² one), measured once per process,
so the tokens / sampling / roll-out lines of the same run state the same peak.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import TrainerCallback

from benchmarks import roofline
from benchmarks.common import REPO, Ctx, entry, expert_states, fresh_dirs, interleaved, pick_spread

GOAL = 0.5


def matmul_params(model) -> int:
    """Parameters the forward multiplies: every ``nn.Linear`` weight (a tied LM head once, as the head)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def precision_lever(shape: tuple[int, int, int]) -> dict:
    """``torch.set_float32_matmul_precision``: GFLOP/s of ``F.linear`` at ``shape`` (rows, in, out)
    at each setting, and whether the product is bit-identical to the default ("highest")."""
    before = torch.get_float32_matmul_precision()
    x, w = torch.randn(shape[0], shape[1]), torch.randn(shape[2], shape[1])
    linear = torch.nn.functional.linear
    with torch.inference_mode():
        ref = linear(x, w)
    out = {}
    try:
        for p in ("highest", "high", "medium"):
            torch.set_float32_matmul_precision(p)
            with torch.inference_mode():
                same = bool(torch.equal(linear(x, w), ref))
            out[p] = {"GFLOPs": round(roofline.linear_flops(*shape) / 1e9, 2), "identical": same}
    finally:
        torch.set_float32_matmul_precision(before)
    return out


class Meter(TrainerCallback):
    """Per step: the time it ended, TRL's cumulative ``num_tokens`` (real tokens: prompt and
    completion, padding not counted) and the positions the model's forward got (with gradients:
    training, padding included; without: generation)."""

    def __init__(self):
        self.stamps: list[float] = []
        self.tokens: dict[int, float] = {}
        self.positions: dict[int, tuple[int, int]] = {}
        self.losses: list[float] = []
        self.rewards: list[float] = []
        self._train = self._nograd = 0
        self._handle = None

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if isinstance(ids, torch.Tensor):
            if torch.is_grad_enabled():
                self._train += ids.numel()
            else:
                self._nograd += ids.numel()

    def on_train_begin(self, args, state, control, model=None, **kw):
        if model is not None and self._handle is None:
            self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def on_step_end(self, args, state, control, **kw):
        self.stamps.append(time.perf_counter())
        self.positions[state.global_step] = (self._train, self._nograd)

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "num_tokens" in logs:
            self.tokens[state.global_step] = float(logs["num_tokens"])
        if "loss" in logs:
            self.losses.append(float(logs["loss"]))
        if "reward" in logs:
            self.rewards.append(float(logs["reward"]))

    def on_train_end(self, args, state, control, **kw):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def summary(self) -> dict:
        """The steady-state steps (the first dropped): seconds, real tokens, positions."""
        steps = sorted(self.positions)
        first, last = steps[0], steps[-1]
        return {"steps_timed": last - first, "seconds": self.stamps[-1] - self.stamps[0],
                "tokens": self.tokens[last] - self.tokens[first],
                "train_positions": self.positions[last][0] - self.positions[first][0],
                "generate_positions": self.positions[last][1] - self.positions[first][1],
                "step_seconds": [round(b - a, 3) for a, b in zip(self.stamps, self.stamps[1:])],
                "losses": self.losses, "rewards": self.rewards}


@contextmanager
def metered(module, meter: Meter):
    """The pipeline's trainer (``module.train_*``) with ``meter``'s events chained to its progress
    callback, as the pipeline builds it (nothing else changes)."""
    original = module.progress_callback

    def patched(*a, **kw):
        cb = original(*a, **kw)
        for event in ("on_train_begin", "on_step_end", "on_log", "on_train_end"):
            inner, mine = getattr(cb, event), getattr(meter, event)

            def chained(*x, _inner=inner, _mine=mine, **y):
                _mine(*x, **y)
                return _inner(*x, **y)

            setattr(cb, event, chained)
        return cb

    module.progress_callback = patched
    try:
        yield
    finally:
        module.progress_callback = original


def plain_sft(model_path: str, rows: list[dict], cfg, history_len: int, max_length: int, out: Path) -> dict:
    """A minimal TRL script: the same model, examples and SFTConfig values; TRL's defaults otherwise."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from act_pipeline.act.prompts import State, agent_prompt
    from act_pipeline.training.sft import action_target

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    ds = Dataset.from_list([{"prompt": agent_prompt(tok, State.from_row(r), history_len),
                             "completion": action_target(r["expert_action"])} for r in rows])
    args = SFTConfig(output_dir=str(out), save_strategy="no", use_cpu=True, max_steps=cfg.max_steps,
                     learning_rate=cfg.learning_rate, per_device_train_batch_size=cfg.per_device_train_batch_size,
                     gradient_accumulation_steps=cfg.gradient_accumulation_steps, seed=cfg.seed, bf16=False,
                     completion_only_loss=True, max_length=max_length, logging_steps=1, report_to="none",
                     disable_tqdm=True, dataloader_num_workers=0)
    meter = Meter()
    SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[meter]).train()
    return {**meter.summary(), "gradient_checkpointing": bool(args.gradient_checkpointing)}


def pipeline_sft(model_path: str, rows: list[dict], cfg, history_len: int, out: Path, padding_free: bool,
                 compact_head: bool = True) -> dict:
    from act_pipeline.training import sft

    meter = Meter()
    with metered(sft, meter):
        sft.train_sft(model_path, rows, out, cfg, history_len=history_len, log=lambda m: None, padding_free=padding_free,
                      compact_head=compact_head)
    return meter.summary()


def plain_grpo(model_path: str, pairs: list[dict], cfg, history_len: int, out: Path,
               checkpointing: bool = False) -> dict:
    """A minimal TRL GRPOTrainer script: the same model, prompts, reward, generation restriction
    (``act.answer: choice``) and GRPOConfig values; TRL's defaults otherwise, but for activation
    checkpointing: off, as the pipeline sets it (``checkpointing=True``: TRL's default, on).

    TRL scores each completion token with its fused LM head (``add_fused_lm_head``), which on a
    device without Triton (the CPU) runs the head, log-softmax and entropy over every position of
    every row, the prompt's included, and zeroes all but the completion's: with one answer token
    that is ~the prompt length times the head work the loss uses (pyinstrument, tiny model: 95% of
    the step). No GRPOConfig value changes it; the pipeline's shared-prompt trainer scores the last
    position only."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from act_pipeline.act.prompts import State, choice_token_ids, critic_prompt
    from act_pipeline.act.rewards import make_judgement_reward
    from act_pipeline.training.act_grpo import restricted_generation, stop_token_ids

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    ds = Dataset.from_list([{"prompt": critic_prompt(tok, State.from_row(r), r["action_1"], r["action_2"], history_len),
                             "expert_slot": r["expert_slot"], "action_1": r["action_1"], "action_2": r["action_2"]}
                            for r in pairs])
    choice = cfg.answer == "choice"
    extra = {"generation_kwargs": restricted_generation(choice_token_ids(tok),
                                                        int(model.get_output_embeddings().weight.shape[0]), False),
             "max_completion_length": 1} if choice else {"max_completion_length": cfg.max_completion_length}
    args = GRPOConfig(output_dir=str(out), save_strategy="no", use_cpu=True, max_steps=cfg.max_steps,
                      learning_rate=cfg.learning_rate, per_device_train_batch_size=cfg.per_device_train_batch_size,
                      num_generations=cfg.num_generations, temperature=cfg.temperature, beta=cfg.beta, seed=cfg.seed,
                      bf16=False, logging_steps=1, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
                      activation_checkpointing=checkpointing, **extra)
    reward = make_judgement_reward(cfg.unparsable_penalty, stop_token_ids(model_path), one_token_choice=choice)
    meter = Meter()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                          callbacks=[meter])
    trainer.train()
    return {**meter.summary(), "ref_model_loaded": trainer.ref_model is not None,
            "gradient_checkpointing": bool(args.gradient_checkpointing)}


def metered_grpo(train: Callable[[], object], encode_prompts_once: bool = True) -> dict:
    """The meter's summary of ``train()``, a pipeline GRPO training (``act_grpo.train_grpo``: ACT's
    ``train_act`` or RL's ``train_rl``); ``encode_prompts_once=False``: with TRL's generation (each
    of a prompt's ``num_generations`` copies encoded), the lever's before."""
    from act_pipeline.training import act_grpo
    from act_pipeline.training.grpo_shared import SharedPromptGRPOTrainer

    meter = Meter()
    before = SharedPromptGRPOTrainer.encode_prompts_once
    SharedPromptGRPOTrainer.encode_prompts_once = encode_prompts_once
    try:
        with metered(act_grpo, meter):
            train()
    finally:
        SharedPromptGRPOTrainer.encode_prompts_once = before
    return meter.summary()


def pipeline_grpo(model_path: str, pairs: list[dict], cfg, history_len: int, out: Path,
                  encode_prompts_once: bool = True) -> dict:
    """The pipeline's ``train_act``, metered (:func:`metered_grpo`)."""
    from act_pipeline.training import act_grpo

    return metered_grpo(lambda: act_grpo.train_act(model_path, pairs, out, cfg, history_len=history_len,
                                                   log=lambda m: None), encode_prompts_once)


def _rates(results: list[dict], flops_of, peak: float) -> dict:
    """Per run: real tokens/s and the roofline fraction of the steady-state steps; medians over runs."""
    tps = [r["tokens"] / r["seconds"] for r in results]
    frac = [flops_of(r) / r["seconds"] / peak for r in results]
    return {"tokens_per_s": statistics.median(tps), "fraction": statistics.median(frac),
            "fractions": [round(f, 4) for f in frac]}


def _way(label: str, timing: dict, rate: dict) -> dict:
    r0 = timing["results"]
    return {"label": label, "seconds": timing["seconds"], "median_s": round(timing["median_s"], 4),
            "rate": round(rate["tokens_per_s"], 3), "unit": "tokens/s", "roofline_fraction": round(rate["fraction"], 4),
            "roofline_fractions": rate["fractions"],
            "median_step_s": round(statistics.median([s for r in r0 for s in r["step_seconds"]] or [0]), 3),
            "per_run": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in r0]}


def run(ctx: Ctx) -> list[dict]:
    from act_pipeline.config import load_config
    from act_pipeline.models import context_window, load_model
    from benchmarks.bench_grpo import make_pairs

    prof = load_config(REPO / "configs" / "science.yaml")  # the measured run's profile: its il / act sections
    history_len = prof.alfworld.history_len
    # one run per way (~12 min for both lines with SmolLM2-135M on an idle machine: an SFT step takes
    # 15-30 s, a pipeline GRPO step 5-10 s), 4 steps each, the first dropped
    steps = 3 if ctx.quick else 4
    repeats = 1
    model, _ = load_model(ctx.model)
    P = matmul_params(model)
    total_params = sum(p.numel() for p in model.parameters())
    peak = roofline.model_peak(model.config)  # the run's one measurement (shared with tokens / sampling / roll-outs)
    del model
    ctx.log(f"  matmul peak {peak['peak_GFLOPs']} GFLOP/s ({peak['peak_shape']}); P = {P:,} matmul parameters")
    peak_flops = peak["peak_GFLOPs"] * 1e9
    precision = precision_lever(peak["shapes"][peak["peak_shape"]])
    rows = pick_spread(expert_states(ctx, 2 if ctx.quick else 4), 16)
    fresh = fresh_dirs(ctx, "roofline")

    common = {"model": ctx.model_name, "seed": ctx.seed, "matmul_params": P, "total_params": total_params,
              "matmul_peak": peak, "repeats": repeats, "profile": "configs/science.yaml", "history_len": history_len}

    # --- SFT (IL): the profile's batch (micro-batches x accumulation), real expert steps ---
    il = prof.il.model_copy(update={"max_steps": steps, "save_steps": 0, "save_every_s": 0.0, "seed": ctx.seed})
    max_length = il.max_length or context_window(ctx.model, prof.model)
    t = interleaved({"plain_trl": lambda: plain_sft(ctx.model, rows, il, history_len, max_length, fresh()),
                     "pipeline": lambda: pipeline_sft(ctx.model, rows, il, history_len, fresh(), False),
                     "pipeline_padding_free": lambda: pipeline_sft(ctx.model, rows, il, history_len, fresh(), True),
                     "pipeline_every_position": lambda: pipeline_sft(ctx.model, rows, il, history_len, fresh(), False,
                                                                     compact_head=False)},
                    repeats, ctx.log)
    sft_flops = lambda r: 6 * P * r["tokens"]  # noqa: E731
    rate = {k: _rates(t[k]["results"], sft_flops, peak_flops) for k in t}
    loss = {k: t[k]["results"][0]["losses"] for k in t}
    r0 = {k: t[k]["results"][0] for k in t}
    pad_share = {k: round(1 - r0[k]["tokens"] / r0[k]["train_positions"], 4) for k in t}
    sft = entry(
        "sft_roofline", "IL (SFT) training tokens/s as a fraction of the FLOP roofline (6·P·tokens / matmul peak), "
        "the pipeline's train_sft vs a plain TRL SFTTrainer script, same examples and SFTConfig values",
        _way("plain TRL SFTTrainer script", t["plain_trl"], rate["plain_trl"]),
        _way("act_pipeline.training.sft.train_sft", t["pipeline"], rate["pipeline"]),
        rate["pipeline"]["tokens_per_s"] / rate["plain_trl"]["tokens_per_s"], f">= {GOAL} of the roofline",
        rate["pipeline"]["fraction"] >= GOAL, **common,
        roofline_fraction={k: round(rate[k]["fraction"], 4) for k in t},
        flops="6 x matmul_params x real (non-padding) tokens per step; padding and attention scores not counted",
        params={"max_steps": steps, "steps_timed_per_run": steps - 1,
                "per_device_train_batch_size": il.per_device_train_batch_size,
                "gradient_accumulation_steps": il.gradient_accumulation_steps, "learning_rate": il.learning_rate,
                "max_length": max_length, "examples": len(rows)},
        tokens_per_step={k: round(r0[k]["tokens"] / r0[k]["steps_timed"], 1) for k in t},
        positions_per_step={k: round(r0[k]["train_positions"] / r0[k]["steps_timed"], 1) for k in t},
        padding_share=pad_share,
        checks={"same_tokens_trained": len({r0[k]["tokens"] for k in t}) == 1,
                "losses": loss,
                "max_abs_loss_diff_padding_free": max(abs(a - b) for a, b in zip(loss["pipeline"], loss["pipeline_padding_free"])),
                "identical_losses_plain_trl": loss["plain_trl"] == loss["pipeline"],
                "max_abs_loss_diff_plain_trl": max(abs(a - b) for a, b in zip(loss["plain_trl"], loss["pipeline"])),
                "max_abs_loss_diff_compact_head": max(abs(a - b) for a, b in
                                                      zip(loss["pipeline"], loss["pipeline_every_position"])),
                "plain_trl_gradient_checkpointing": r0["plain_trl"]["gradient_checkpointing"]},
    )
    sft["before_after"] = [
        {"lever": "gradient checkpointing off (TRL's SFTConfig default: on; the pipeline sets it off, trainer_extras)",
         "before": {"rate": sft["a"]["rate"], "unit": "tokens/s"},
         "after": {"rate": round(rate["pipeline_every_position"]["tokens_per_s"], 3), "unit": "tokens/s"},
         "note": "kept (already in the pipeline): the same gradients, recomputation only; before = plain TRL, after = "
                 "the pipeline with the LM head at every position, as plain TRL on a CPU"},
        {"lever": "the LM head at the target's positions only (TRL's compact path, its default on Triton devices; "
                  "train_sft(compact_head=True), tests/test_compact_lm_head.py: same losses and update to float "
                  "rounding)",
         "before": {"rate": round(rate["pipeline_every_position"]["tokens_per_s"], 3), "unit": "tokens/s"},
         "after": {"rate": sft["b"]["rate"], "unit": "tokens/s"},
         "roofline_fraction_before": round(rate["pipeline_every_position"]["fraction"], 4),
         "note": "kept: the default; before = every position scored (TRL's CPU default), after = the pipeline"},
        {"lever": "padding_free (each micro-batch as one row, block-diagonal attention from position_ids; "
                  "tests/test_sft_padding_free.py: same losses and gradients)",
         "before": {"rate": sft["b"]["rate"], "unit": "tokens/s"},
         "after": {"rate": round(rate["pipeline_padding_free"]["tokens_per_s"], 3), "unit": "tokens/s"},
         "roofline_fraction_after": round(rate["pipeline_padding_free"]["fraction"], 4),
         "note": f"padding share {pad_share['pipeline']:.1%} -> {pad_share['pipeline_padding_free']:.1%}; "
                 "train_sft(padding_free=...) default off: flip it where an idle run shows after > before"},
        {"lever": "torch.set_float32_matmul_precision (matmul GFLOP/s at the peak shape; identical product?)",
         **{p: f"{v['GFLOPs']} GFLOP/s, identical {v['identical']}" for p, v in precision.items()},
         "kept": "no: the default ('highest') stays; the setting allows TF32 / bf16 matmuls, which change results "
                 "where the hardware has them (not on an AVX2-only CPU: products identical, GFLOP/s within noise)"},
        {"lever": "length bucketing (train_sampling_strategy='group_by_length')",
         "result": "not tried: it changes which examples share a batch (a different training run); padding_free "
                   "removes the padding without changing the batches"},
    ]

    # --- GRPO (ACT): the profile's act section, real critic prompts ---
    act = prof.act.model_copy(update={"max_steps": steps, "save_steps": 0, "save_every_s": 0.0, "probe_every": 0,
                                      "seed": ctx.seed})
    pairs = make_pairs(rows)
    t = interleaved({"plain_trl": lambda: plain_grpo(ctx.model, pairs, act, history_len, fresh()),
                     "plain_trl_checkpointing": lambda: plain_grpo(ctx.model, pairs, act, history_len, fresh(),
                                                                   checkpointing=True),
                     "pipeline_trl_generation": lambda: pipeline_grpo(ctx.model, pairs, act, history_len, fresh(),
                                                                      encode_prompts_once=False),
                     "pipeline": lambda: pipeline_grpo(ctx.model, pairs, act, history_len, fresh())},
                    repeats, ctx.log)
    seqs = act.per_device_train_batch_size  # sequences per step (one process, no accumulation)

    def grpo_flops(r):
        return 6 * P * r["tokens"] + 2 * P * (r["tokens"] - seqs * r["steps_timed"])

    rate = {k: _rates(t[k]["results"], grpo_flops, peak_flops) for k in t}
    r0 = {k: t[k]["results"][0] for k in t}
    grpo = entry(
        "grpo_roofline", "ACT (GRPO) training tokens/s as a fraction of the FLOP roofline (6·P·T training + "
        "2·P·(T - sequences) generation, / matmul peak), the pipeline's train_act vs a plain TRL GRPOTrainer script "
        "(activation checkpointing off in both)",
        _way("plain TRL GRPOTrainer script (activation_checkpointing=False)", t["plain_trl"], rate["plain_trl"]),
        _way("act_pipeline.training.act_grpo.train_act", t["pipeline"], rate["pipeline"]),
        rate["pipeline"]["tokens_per_s"] / rate["plain_trl"]["tokens_per_s"], f">= {GOAL} of the roofline",
        rate["pipeline"]["fraction"] >= GOAL, **common,
        roofline_fraction={k: round(rate[k]["fraction"], 4) for k in t},
        flops="6 x P x T (training, T = prompt + completion tokens of every sequence, TRL's num_tokens) + "
              "2 x P x (T - sequences) (generation: prefill, then one forward per generated token after the first)",
        params={"max_steps": steps, "steps_timed_per_run": steps - 1, "answer": act.answer,
                "per_device_train_batch_size": act.per_device_train_batch_size,
                "num_generations": act.num_generations, "max_completion_length": act.max_completion_length,
                "beta": act.beta, "learning_rate": act.learning_rate, "pairs": len(pairs)},
        tokens_per_step={k: round(r0[k]["tokens"] / r0[k]["steps_timed"], 1) for k in t},
        train_positions_per_step={k: round(r0[k]["train_positions"] / r0[k]["steps_timed"], 1) for k in t},
        generate_positions_per_step={k: round(r0[k]["generate_positions"] / r0[k]["steps_timed"], 1) for k in t},
        checks={"same_tokens_trained": len({r0[k]["tokens"] for k in t}) == 1,
                "identical_reward_logs": len({tuple(r0[k]["rewards"]) for k in t}) == 1,
                "rewards": {k: r0[k]["rewards"] for k in t},
                "ref_model_loaded_at_beta_0": r0["plain_trl"]["ref_model_loaded"],
                "plain_trl_gradient_checkpointing": {k: r0[k]["gradient_checkpointing"]
                                                     for k in ("plain_trl", "plain_trl_checkpointing")}},
        notes="the pipeline's shared-prompt trainer (act.answer: choice) runs each distinct prompt once in training "
              "(train_positions_per_step) and in generation (generate_positions_per_step), and the LM head at the answer position only, so it does fewer FLOPs than "
              "the formula counts; plain TRL on a CPU runs the LM head (log-softmax, entropy) at every position and "
              "keeps the completion's (its fused head compacts to the scored positions only with Triton, on "
              "CUDA/XPU): on the tiny model (LM head ~97% of P) that is ~95% of its step (pyinstrument); the "
              "fraction counts the formula's FLOPs for all ways",
    )
    ckpt = rate["plain_trl_checkpointing"]
    grpo["before_after"] = [
        {"lever": "gradient checkpointing off (TRL's GRPOConfig default: on; the pipeline sets it off, "
                  "trainer_extras; a GRPOConfig value: activation_checkpointing=False)",
         "before": {"rate": round(ckpt["tokens_per_s"], 3), "unit": "tokens/s"},
         "after": {"rate": grpo["a"]["rate"], "unit": "tokens/s"},
         "roofline_fraction_before": round(ckpt["fraction"], 4),
         "note": "kept (already in the pipeline): the same gradients, recomputation only; before = plain TRL at its "
                 "default, after = plain TRL with it off (way a)"},
        {"lever": "one training forward per distinct prompt, the LM head at the answer position only (the pipeline's "
                  "SharedPromptGRPOTrainer; tests/test_grpo_dedup.py: same log-probabilities and gradients)",
         "before": {"rate": grpo["a"]["rate"], "unit": "tokens/s"}, "after": {"rate": grpo["b"]["rate"], "unit": "tokens/s"},
         "note": "before = plain TRL (checkpointing off, one forward per completion, the LM head at every position on "
                 "a CPU, all but the completion's discarded), after = the pipeline; no GRPOConfig value does either"},
        {"lever": "generation: each distinct prompt encoded once (TRL repeats a prompt num_generations times and "
                  "its transformers generation encodes every copy; SharedPromptGRPOTrainer._generate_single_turn, "
                  "tests/test_grpo_generation.py: the same sequences, RL trained to the same weights)",
         "before": {"rate": round(rate["pipeline_trl_generation"]["tokens_per_s"], 3), "unit": "tokens/s"},
         "after": {"rate": grpo["b"]["rate"], "unit": "tokens/s"},
         "step_s": {"before": t["pipeline_trl_generation"]["results"][0]["step_seconds"],
                    "after": t["pipeline"]["results"][0]["step_seconds"]},
         "identical_reward_logs": r0["pipeline_trl_generation"]["rewards"] == r0["pipeline"]["rewards"],
         "note": f"generation positions per step {grpo['generate_positions_per_step']['pipeline_trl_generation']:.0f} "
                 f"-> {grpo['generate_positions_per_step']['pipeline']:.0f}; kept: the default (before = the "
                 "pipeline with TRL's generation)"},
        {"lever": "reference model at beta = 0",
         "result": f"TRL loads none at beta = 0 (GRPOTrainer.ref_model is None: "
                   f"{not r0['plain_trl']['ref_model_loaded']}); nothing to remove"},
    ]
    return [sft, grpo]
