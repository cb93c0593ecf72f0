"""1. Alternative sampling: the pipeline's batched sampler vs one ``generate`` per state, and the
batched sampler's time against the least time of its own forward calls on this CPU
(:mod:`benchmarks.roofline`)."""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from unittest.mock import patch

import torch

from benchmarks import roofline
from benchmarks.common import (Ctx, entry, expert_states, interleaved, load, packed_on_off, pick_spread, profile_call,
                               way)

GOAL = 0.8  # of the bound


def naive_generate(model, tok, prompts, params, stop_strings):
    """The naive way: for each state, one ``generate`` with ``num_return_sequences=K``."""
    out = []
    torch.manual_seed(params.seed)
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt", add_special_tokens=False)
            seqs = model.generate(**enc, num_return_sequences=params.n, do_sample=True,
                                  temperature=params.temperature, top_p=params.top_p, top_k=0,
                                  max_new_tokens=params.max_new_tokens, pad_token_id=tok.pad_token_id,
                                  stop_strings=stop_strings, tokenizer=tok)
            out.append(tok.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def prefill_seconds(model, tok, prompts) -> float:
    """Seconds to encode every prompt once, one at a time (the least any way must spend on prompts)."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt", add_special_tokens=False)
            model(**enc, logits_to_keep=1)
    return time.perf_counter() - t0


def sampler_in_fresh_process(model_path: str, prompts: list[str], params: dict, stop: list[str]) -> dict:
    """In a fresh (spawned) process: the pipeline's sampler on ``prompts`` once untimed (warm-up:
    first-call costs), then once timed; its seconds, completions and whether ``tune_malloc`` applied.
    The allocator setting is per process and stays once set, so each side of its lever needs its
    own process."""
    from act_pipeline.machine import tune_malloc
    from act_pipeline.sampling.base import SamplingParams
    from act_pipeline.sampling.hf import TransformersSampler

    torch.set_num_threads(1)
    model, tok = load(model_path, inference=True)
    sampler = TransformersSampler(model, tok, batch_size=16, stop_strings=stop)
    p = SamplingParams(**params)
    sampler.generate(prompts[:1], p)
    t0 = time.perf_counter()
    out = sampler.generate(prompts, p)
    return {"seconds": time.perf_counter() - t0, "texts": [[str(c) for c in o] for o in out],
            "tuned": tune_malloc()}


def malloc_lever(ctx: Ctx, prompts: list[str], params, stop: list[str], repeats: int = 2) -> dict:
    """Before/after of ``machine.tune_malloc`` (glibc keeps freed blocks of up to 32 MiB for reuse):
    the pipeline's sampler in fresh processes with ``ACT_MALLOC_TUNING=0`` and ``=1``, alternately
    (off on, on off, ...), one process at a time; the completions must be the same both ways."""
    args = {"n": params.n, "temperature": params.temperature, "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens, "seed": params.seed}
    runs: dict[str, list[dict]] = {"0": [], "1": []}
    ctx_spawn = multiprocessing.get_context("spawn")
    for r in range(repeats):
        for setting in (("0", "1") if r % 2 == 0 else ("1", "0")):
            # a spawned process inherits the variable and reads it when it calls tune_malloc
            with patch.dict(os.environ, {"ACT_MALLOC_TUNING": setting}), \
                    ProcessPoolExecutor(1, mp_context=ctx_spawn) as pool:
                res = pool.submit(sampler_in_fresh_process, str(ctx.model), prompts, args, stop).result()
            runs[setting].append(res)
            ctx.log(f"  sampler, ACT_MALLOC_TUNING={setting}: {res['seconds']:.2f} s (repeat {r + 1}/{repeats})")

    def timing(rs):
        return {"seconds": [round(x["seconds"], 4) for x in rs],
                "median_s": statistics.median(x["seconds"] for x in rs)}

    same = all(x["texts"] == runs["0"][0]["texts"] for x in runs["0"] + runs["1"])
    return {"lever": "glibc malloc thresholds (machine.tune_malloc: freed blocks of up to 32 MiB reused, "
                     "not a fresh mmap per KV-cache layer per decoding step); fresh process each run",
            "before": way("the sampler, glibc's default thresholds (ACT_MALLOC_TUNING=0)", timing(runs["0"]),
                          len(prompts), "states/s"),
            "after": way("the sampler, tune_malloc applied (kept: the pipeline's steps and TransformersSampler "
                         "call it)", timing(runs["1"]), len(prompts), "states/s"),
            "identical_completions": same,
            "note": f"the same seeded completions both ways: {'yes' if same else 'no'}",
            "applied": {"off": [x["tuned"] for x in runs["0"]], "on": [x["tuned"] for x in runs["1"]]}}


def run(ctx: Ctx) -> list[dict]:
    from act_pipeline.act.prompts import State, agent_prompt
    from act_pipeline.sampling.base import SamplingParams
    from act_pipeline.sampling.hf import TransformersSampler

    n_states = 8 if ctx.quick else 6
    states = pick_spread(expert_states(ctx, 2 if ctx.quick else 4), n_states)
    model, tok = load(ctx.model, inference=True)
    history_len = 2
    prompts = [agent_prompt(tok, State.from_row(s), history_len) for s in states]
    lens = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
    # the default profile's sampling section: K=4, T=1.0, top_p=1.0, 16 new tokens, batch 16
    params = SamplingParams(n=4, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=ctx.seed)
    stop = ["</action>"]
    sampler = TransformersSampler(model, tok, batch_size=16, stop_strings=stop)
    naive_generate(model, tok, prompts[:1], params, stop)  # warm-up (first-call costs), not timed
    sampler.generate(prompts[:1], params)
    log = roofline.ForwardLog(model)  # the batched way's forward calls (rows, new tokens, cached tokens)
    ways = {"naive": lambda: naive_generate(model, tok, prompts, params, stop),
            "batched": lambda: log.record(lambda: sampler.generate(prompts, params))}
    t = interleaved(ways, 2, ctx.log)
    roof = roofline.measure(model, ctx.quick)
    calls = log.summary(roof)
    calls.update(log.products())  # the calls' products alone: how much of the bound this BLAS leaves reachable
    calls["products_ceiling"] = round(calls["bound_s"] / calls["products_s"], 3)
    if "attention_s" in calls:  # the products at their shapes plus the attention as it ran
        calls["kernels_ceiling"] = round(calls["bound_s"] / (calls["products_s"] + calls["attention_s"]), 3)
    a = way("one generate(num_return_sequences=K) per state", t["naive"], len(states), "states/s")
    b = way("TransformersSampler.generate (length-sorted, left-padded, prompt KV copied K times)",
            t["batched"], len(states), "states/s")
    ratio = a["median_s"] / b["median_s"]
    shapes_ok = all(len(o) == params.n for o in t["batched"]["result"]) and all(
        len(o) == params.n for o in t["naive"]["result"])
    # the bound on a compute-bound CPU: even with free decoding the batched way must encode each
    # prompt once, so the ratio cannot exceed naive seconds / (one prefill per prompt)
    prefill = prefill_seconds(model, tok, prompts)
    fraction = calls["bound_s"] / b["median_s"]
    res = entry(
        "sampling", "alternative sampling: K completions at each of N real expert states",
        a, b, ratio, f">= {GOAL:g} of the bound (B vs A reported)", fraction >= GOAL,
        n_states=len(states), seed=ctx.seed, model=ctx.model_name,
        params={"k": params.n, "temperature": params.temperature, "top_p": params.top_p,
                "max_new_tokens": params.max_new_tokens, "batch_size": 16, "history_len": history_len,
                "stop_strings": stop},
        prompt_tokens={"min": min(lens), "max": max(lens), "mean": round(sum(lens) / len(lens), 1)},
        checks={"k_completions_per_state_both_ways": shapes_ok},
        bound={**calls, "fraction_of_bound": round(fraction, 3),
               "meaning": "the least time of the batched way's own forward calls (its prompt encodings and "
                          "decode steps, recorded in its last timed run; seeded, so every run makes the same "
                          "calls) on this CPU: each call max(FLOPs / matmul peak, bytes / read bandwidth), "
                          "benchmarks/roofline.py; fraction_of_bound = bound_s / B's median seconds; "
                          "products_ceiling = bound_s / the calls' matrix products alone at their shapes "
                          "(roofline.ForwardLog.products): the most of the bound reachable on this BLAS "
                          "were attention, norms and Python free; kernels_ceiling = bound_s / (those products "
                          "+ attention_s, the model's attention calls timed as they ran in that run): the "
                          "most reachable were norms, activations, cache bookkeeping and Python free",
               "roofline": roof.brief(),
               "prefill_once_s": round(prefill, 3),
               "max_ratio_vs_naive_if_decoding_were_free": round(a["median_s"] / prefill, 2)},
    )
    if fraction < GOAL:
        # before/after of the lever this sampler already pulls (prompt KV copied K times) plus a profile
        off = TransformersSampler(model, tok, batch_size=16, stop_strings=stop, share_prefix=False)
        padded = TransformersSampler(model, tok, batch_size=16, stop_strings=stop, ragged_prefill=False)
        copied = TransformersSampler(model, tok, batch_size=16, stop_strings=stop, grow_cache=False)
        t_off = interleaved({"batched_no_prefix_share": lambda: off.generate(prompts, params),
                             "batched_padded_prefill": lambda: padded.generate(prompts, params)}, 1, ctx.log)
        # the cache lever, side by side with the kept way (2 interleaved repeats each)
        t_cache = interleaved({"dynamic_cache": lambda: copied.generate(prompts, params),
                               "growing_cache": lambda: sampler.generate(prompts, params)}, 2, ctx.log)
        res["before_after"] = [{
            "lever": "KV-cache reuse of the prompt (encode once, copy K times)",
            "before": way("batched, num_return_sequences=K (prompt encoded K times)",
                          t_off["batched_no_prefix_share"], len(states), "states/s"),
            "after": b,
        }, {
            "lever": "ragged prefill: each prompt of the batch encoded alone, caches left-padded for decoding",
            "before": way("batched, prompt KV shared, prompts encoded as one left-padded batch",
                          t_off["batched_padded_prefill"], len(states), "states/s"),
            "after": b,
        }, {
            "lever": "KV cache grown in place (act_pipeline.sampling.kv.GrowingCache) instead of transformers' "
                     "DynamicCache, which copies the whole cache at every generated token",
            "before": way("the sampler, DynamicCache (grow_cache=False)", t_cache["dynamic_cache"], len(states),
                          "states/s"),
            "after": way("the sampler, GrowingCache (kept: the default)", t_cache["growing_cache"], len(states),
                         "states/s"),
            "identical_completions": t_cache["dynamic_cache"]["result"] == t_cache["growing_cache"]["result"],
        }]
        res["profile"] = profile_call(ctx, "sampling", lambda: sampler.generate(prompts, params), {
            "model_forward": ("forward",), "prefill_shared_prefix": ("_generate_shared_prefix",),
            "tokenize_decode": ("__call__", "batch_decode")})
    res.setdefault("before_after", []).append(malloc_lever(ctx, prompts, params, stop))
    from act_pipeline import packed_linear

    if packed_linear.available(torch.float32):
        tp = packed_on_off(model, lambda: sampler.generate(prompts, params), 4, ctx.log)  # 4 each: a ~5 % effect
        res["before_after"].append({
            "lever": "float32 16-row products (the decoding steps of 4 prompts x K=4) through MKL's packed weights "
                     "(act_pipeline.packed_linear, ACT_PACKED_LINEAR=all) against plain F.linear",
            "before": way("the sampler, plain products", tp["plain"], len(states), "states/s"),
            "after": way("the sampler, packed weights (opt-in: ACT_PACKED_LINEAR=all)", tp["packed"],
                         len(states), "states/s"),
            "identical_completions": all(r == tp["plain"]["results"][0]
                                         for r in tp["plain"]["results"] + tp["packed"]["results"])})
    return [res]
