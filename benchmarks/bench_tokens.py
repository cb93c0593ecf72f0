"""6. The model's prompt encoding (prefill) and greedy decoding against this CPU's bounds.

``prefill_b1`` / ``prefill_b16``: one forward call over a prompt of the real prompts' length (400
tokens; the sampling line's real prompts are 324-735) at batch 1 and 16, against the FLOP bound.
``tokens_b1`` / ``tokens_b16``: decoding tokens/s (greedy, after a 24-token prompt) against the
memory-bandwidth bound at batch 1 and max(bandwidth, FLOP) at batch 16, decoding into the cache
the pipeline's sampler uses (:class:`act_pipeline.sampling.kv.GrowingCache`). The bounds are
:mod:`benchmarks.roofline`'s; the goal is 0.6 of the bound on each line.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch

from benchmarks import roofline
from benchmarks.common import Ctx, entry, interleaved, load, set_packed

GOAL = 0.6
PROMPT = ("Task: put a clean mug in the coffeemachine. You are in the middle of a room. Looking around "
          "you, you see a cabinet 1, a countertop 1, a coffeemachine 1, a sinkbasin 1 and a fridge 1. ")


def prompt_ids(tok, n: int, batch: int) -> torch.Tensor:
    """A (batch x n) block of real text's token ids (the ALFWorld-style sentence repeated)."""
    one = tok(PROMPT, add_special_tokens=False).input_ids
    ids = (one * (n // len(one) + 1))[:n]
    return torch.tensor([ids] * batch)


def prefill_seconds(model, ids, attn: str = "sdpa", keep: int = 1) -> float:
    """One forward call over ``ids`` with a fresh cache, as the sampler's prefill does."""
    old = model.config._attn_implementation
    model.config._attn_implementation = attn
    try:
        with torch.inference_mode():
            t0 = time.perf_counter()
            model(input_ids=ids, use_cache=True, logits_to_keep=keep)
            return time.perf_counter() - t0
    finally:
        model.config._attn_implementation = old


def growing(model, room: int):
    """The sampler's decoding cache (grows in place, room for ``room`` new tokens)."""
    from act_pipeline.sampling.kv import GrowingCache

    return GrowingCache(headroom=room, config=model.config)


def decode_run(model, enc, new_tokens: int, grow: bool = True, **kw):
    """Greedy generate of exactly ``new_tokens``; into the sampler's growing cache unless ``grow`` is
    False (transformers' own cache: dynamic, or ``cache_implementation=...``)."""
    if grow:
        kw["cache"] = growing(model, new_tokens)
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=enc["input_ids"][0, 0].item(), **kw)
        return time.perf_counter() - t0, out


def decode_after_prefix(model, ids, prefix, new_tokens: int, grow: bool):
    """Greedy decoding of ``new_tokens`` after a prompt whose cache (all but its last token) is
    ``prefix`` (a copy is decoded into, so each run starts from the same cache): seconds and tokens."""
    from transformers import DynamicCache

    cache = growing(model, new_tokens) if grow else DynamicCache(config=model.config)
    for li, layer in enumerate(prefix.layers):
        cache.update(layer.keys.clone(), layer.values.clone(), li)
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=int(ids[0, 0]))
        return time.perf_counter() - t0, out


def long_prompt_lever(model, tok, batch: int, n_new: int, log, n_prompt: int = 400) -> dict:
    """The cache lever where the pipeline decodes: after a prompt of the real prompts' length (the
    copy DynamicCache makes at each token grows with the cache)."""
    from transformers import DynamicCache

    ids = prompt_ids(tok, n_prompt, batch)
    prefix = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=ids[:, :-1], cache=prefix, use_cache=True, logits_to_keep=1)
    t = interleaved({"dynamic": lambda: decode_after_prefix(model, ids, prefix, n_new, False),
                     "growing": lambda: decode_after_prefix(model, ids, prefix, n_new, True)}, 2, log)
    sec = {k: [round(x[0], 4) for x in v["results"]] for k, v in t.items()}
    med = {k: statistics.median(v) for k, v in sec.items()}
    return {"lever": f"KV cache for decoding, batch {batch}, {n_prompt}-token prompt (the real prompts' length): "
                     "transformers' DynamicCache vs the growing cache",
            "before": _way("DynamicCache", batch * n_new / med["dynamic"], round(med["dynamic"], 4), sec["dynamic"]),
            "after": _way("GrowingCache (kept: the sampler's)", batch * n_new / med["growing"],
                          round(med["growing"], 4), sec["growing"]),
            "identical_greedy_tokens": bool(torch.equal(t["dynamic"]["result"][1], t["growing"]["result"][1]))}


def matmul_floor(model, batch: int, step_s: float, attention_s: float | None = None) -> dict:
    """A decoding step's matrix products alone (:func:`benchmarks.roofline.linear_floor`, plain and
    MKL-packed weights) against the measured step: ``products_share`` is what the products take of
    it, the rest being attention, norms, activations and the Python around the model.
    ``attention_s``: a decoding step's attention as it ran (:class:`benchmarks.roofline.ForwardLog`),
    stated with its share of the step."""
    from act_pipeline import packed_linear

    plain = roofline.linear_floor(model, batch)
    packed = roofline.linear_floor(model, batch, packed=True)
    # the products the step runs: packed where the model's float32 linears pack this row count
    runs = "packed" if (batch == packed_linear.BATCH_HINT and any(packed_linear.is_packed(m) for m in model.modules())
                        and packed["identical"]) else "plain"
    own = {"plain": plain, "packed": packed}[runs]
    return {"plain": plain, "packed": packed, "measured_step_s": round(step_s, 5), "step_products": runs,
            "products_share": round(own["seconds"] / step_s, 3),
            "rest_s": round(step_s - own["seconds"], 5),
            **({"attention_s": round(attention_s, 5), "attention_share": round(attention_s / step_s, 3)}
               if attention_s else {}),
            "meaning": "the step's nn.Linear products alone over the model's real weights at batch rows "
                       "(best of 3) vs the measured decoding step; the roofline's peak comes from the "
                       "best shape, and a few-row product runs below it"}


def packed_lever(floor: dict, batch: int) -> dict:
    """MKL's packed GEMM at the step's shapes, on the products alone (the pipeline packs for 16 rows:
    :mod:`act_pipeline.packed_linear`)."""
    plain, packed = floor["plain"], floor["packed"]
    gain = plain["seconds"] / packed["seconds"]
    kept = ("opt-in at 16 rows (act_pipeline.packed_linear, ACT_PACKED_LINEAR=all: float32 inference, each module's "
            "first packed product checked against the plain one; no end-to-end gain in the default run)" if batch == 16 else
            "not used at this row count (the pipeline packs for 16 rows only)")
    return {"lever": f"MKL packed weights (torch.ops.mkl._mkl_linear, as Inductor's CPU freezing uses), batch {batch}: "
                     "the decoding step's products alone",
            "before": _way(f"torch.nn.functional.linear, the step's {plain['linears']} products", None,
                           plain["seconds"]),
            "after": _way(f"packed weights, the same {packed['linears']} products", None, packed["seconds"]),
            "identical_products": packed["identical"], "max_abs_diff": packed["max_abs_diff"],
            "note": f"{kept}; {gain:.2f}x on the products (LM head {plain['head_s'] / packed['head_s']:.2f}x), "
                    f"{'bit-identical' if packed['identical'] else 'not bit-identical'} here; costs a packed "
                    "copy of every weight per model process"}


def compile_lever(model, enc, n_new: int, measured: float, dec_s: float, greedy, log) -> dict:
    """torch.compile of the decoding forward (transformers' auto-compile with a static cache, forced
    on a CPU): compile seconds, decoding tokens/s after it, and whether the greedy tokens match."""
    from transformers import CompileConfig

    batch = enc["input_ids"].shape[0]
    cc = CompileConfig(fullgraph=True, dynamic=False)
    cc._compile_all_devices = True  # transformers compiles only on accelerators unless told
    kw = dict(cache_implementation="static", compile_config=cc)
    from act_pipeline import packed_linear

    packed = [m for m in model.modules() if packed_linear.is_packed(m)]
    packed_linear.unpack_linears(model)  # compiled: Inductor's own linears (the packed forward is not traceable)
    log(f"  torch.compile, batch {batch}: compiling ...")
    # a cold compile, as a fresh machine's first model step has it: Inductor's on-disk caches in a new
    # folder (an earlier compile of these shapes would otherwise be read back from /tmp)
    old_dir = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
        try:
            t0 = time.perf_counter()
            _, out = decode_run(model, enc, n_new + 1, False, **kw)
            compile_s = time.perf_counter() - t0
        finally:
            if old_dir is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = old_dir
    t = interleaved({"first": lambda: decode_run(model, enc, 1, False, **kw)[0],
                     "all": lambda: decode_run(model, enc, n_new + 1, False, **kw)[0]}, 2, log)
    c_s = t["all"]["median_s"] - t["first"]["median_s"]
    saved = dec_s / n_new - c_s / n_new  # seconds per decoding step
    torch._dynamo.reset()
    for m in packed:
        packed_linear.pack_linears(m)
    even = round(compile_s / saved) if saved > 0 else None
    return {"lever": f"torch.compile (inductor, fullgraph, static cache; transformers' generate auto-compile "
                     f"forced on the CPU), batch {batch}",
            "before": _way("eager, GrowingCache (kept)", measured, round(dec_s, 4)),
            "after": _way("compiled, static cache", batch * n_new / c_s, round(c_s, 4),
                          {k: t[k]["seconds"] for k in ("first", "all")}),
            "compile_s": round(compile_s, 1), "identical_greedy_tokens": bool(torch.equal(out, greedy)),
            "break_even_steps": even,
            "note": f"the first call (compiling, Inductor's disk cache empty) took {compile_s:.0f} s: "
                    + (f"paid back after {even} decoding steps of this batch shape" if even else "never paid back")
                    + "; kept: no, a compile per process and per static-cache shape (batch x prompt + new "
                      "tokens), where the pipeline's model steps decode a few hundred steps each at batch sizes "
                      "and prompt lengths that change from call to call (rollouts, GRPO) and sample their "
                      "alternatives by scoring, without decoding"}


def packed_levers(ctx: Ctx, tok, n_new: int, log, dtype: torch.dtype) -> dict[str, dict]:
    """The pipeline's packed weights (:mod:`act_pipeline.packed_linear`, what ``load_model`` gives an
    inference model on a CPU) against plain products, alternately (off on, on off), each state's packs
    built before its timed calls; the greedy tokens must be the same both ways.

    bfloat16 (the default profile's ``inference_dtype`` where bf16 is native: oneDNN, every row
    count): decoding at batch 1 and 16 (as the tokens lines) and a 400-token prompt at batch 1 (as
    prefill_b1). float32 (MKL, 16-row products only): decoding at batch 16. Empty where the dtype has
    no packed products here."""

    from act_pipeline import packed_linear
    from act_pipeline.models import bf16_fast, load_model

    bf16 = dtype == torch.bfloat16
    if not (packed_linear.available(dtype) and (bf16_fast() or not bf16)):
        return {}
    model, _ = load_model(str(ctx.model), dtype="bfloat16" if bf16 else "float32", inference=True)
    model.eval()
    label = "bfloat16" if bf16 else "float32"

    batches = {"tokens_b1": 1, "tokens_b16": 16} if bf16 else {"tokens_b16": 16}
    names = [*batches, "prefill_b1"] if bf16 else [*batches]
    secs: dict = {(k, on): [] for k in names for on in (False, True)}
    outs: dict = {}
    for r in range(2):
        for on in ((False, True) if r % 2 == 0 else (True, False)):
            set_packed(model, on, dtype)  # the packs (float32: and their identity checks) before timing
            for name, b in batches.items():
                ids = prompt_ids(tok, 24, b)
                enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                first = decode_run(model, enc, 1)[0]
                all_s, outs[(name, on)] = decode_run(model, enc, n_new + 1)
                secs[(name, on)].append(round(all_s - first, 4))
            if bf16:
                secs[("prefill_b1", on)].append(round(prefill_seconds(model, prompt_ids(tok, 400, 1)), 4))
            log(f"  {label}, packed weights {'on' if on else 'off'}: "
                + ", ".join(f"{k} {secs[(k, on)][-1]:.2f} s" for k in names))
    checks = [packed_linear.verified(m) for m in model.modules() if packed_linear.is_packed(m)]
    packed_linear.unpack_linears(model)
    how = ("oneDNN's packed weights for every nn.Linear" if bf16 else
           "MKL's packed weights for every nn.Linear, used for 16-row products")
    out = {}
    for name in names:
        work = batches[name] * n_new if name in batches else 400
        med = {on: statistics.median(secs[(name, on)]) for on in (False, True)}
        lever = {"lever": (f"{label} (the default profile's inference_dtype where bf16 is native)" if bf16 else
                           "float32 (inference where bf16 is not native, and these lines)")
                          + f": {how} (act_pipeline.packed_linear) against plain {label} products, "
                          + (f"decoding at batch {batches[name]}" if name in batches else "a 400-token prompt at batch 1"),
                 "before": _way(f"{label}, plain F.linear", work / med[False], round(med[False], 4), secs[(name, False)]),
                 "after": _way(f"{label}, packed weights ("
                               + ("kept: load_model's default for inference on a CPU)" if bf16 else
                                  "opt-in, ACT_PACKED_LINEAR=all: no end-to-end gain in the default run)"),
                               work / med[True], round(med[True], 4), secs[(name, True)]),
                 "note": "tests/test_packed_linear.py: logits bit-identical"}
        if not bf16:
            lever["identity_checks_passed"] = f"{sum(all(c.values()) for c in checks if c)} of {len(checks)} modules"
        if name in batches:
            lever["identical_greedy_tokens"] = bool(torch.equal(outs[(name, False)], outs[(name, True)]))
        out[name] = lever
    return out


def _way(label, rate, median_s=None, seconds=None, **extra) -> dict:
    return {"label": label, "rate": None if rate is None else round(rate, 2), "unit": "tokens/s",
            "median_s": median_s, "seconds": seconds if seconds is not None else [], **extra}


def run(ctx: Ctx) -> list[dict]:
    model, tok = load(ctx.model, inference=True)  # as the sampler loads it (float32: plain unless ACT_PACKED_LINEAR=all)
    roof = roofline.measure(model, ctx.quick)
    rd = roof.as_dict()
    out = []
    common = dict(model=ctx.model_name, seed=ctx.seed, roofline=rd, goal_fraction=GOAL)

    # --- prefill: one forward over a realistic prompt, logits for the last position only
    n_prompt = 400
    for batch in (1, 16):
        ids = prompt_ids(tok, n_prompt, batch)
        ways = {"sdpa_keep1": lambda: prefill_seconds(model, ids)}
        if batch == 1:  # the levers, side by side with the kept setting
            ways["eager_keep1"] = lambda: prefill_seconds(model, ids, attn="eager")
            ways["sdpa_all_logits"] = lambda: prefill_seconds(model, ids, keep=0)
        prefill_seconds(model, ids[:, :16])  # warm-up
        t = interleaved(ways, 3 if batch == 1 else 2, ctx.log)
        s = t["sdpa_keep1"]["median_s"]
        bound_s = roof.call_s(batch, n_prompt, 0)
        short = prompt_ids(tok, 24, batch)
        short_s = min(prefill_seconds(model, short) for _ in range(3))
        res = entry(
            f"prefill_b{batch}", f"prompt encoding ({n_prompt} tokens) at batch {batch} vs the FLOP bound",
            _way("bound: FLOPs / matmul peak (2 x body params x tokens, causal attention, LM head for "
                 "the last position), or bytes / read bandwidth where larger", batch * n_prompt / bound_s, bound_by=roof.bound_by(batch, n_prompt)),
            _way("measured: one forward, sdpa attention, logits_to_keep=1", batch * n_prompt / s, s,
                 t["sdpa_keep1"]["seconds"]),
            bound_s / s, f">= {GOAL:g} of the FLOP bound", bound_s / s >= GOAL,
            batch=batch, prompt_tokens=n_prompt, flops=roof.flops(batch, n_prompt, 0), bound_s=round(bound_s, 4),
            short_prompt={"tokens": 24, "measured_s": round(short_s, 4),
                          "fraction_of_bound": round(roof.call_s(batch, 24, 0) / short_s, 3)},
            **common)
        if batch == 1:
            res["before_after"] = [
                {"lever": "attention implementation (prefill, 400 tokens, batch 1)",
                 "before": _way("eager", n_prompt / t["eager_keep1"]["median_s"], t["eager_keep1"]["median_s"],
                                t["eager_keep1"]["seconds"]),
                 "after": _way("sdpa (kept: the default)", n_prompt / s, s, t["sdpa_keep1"]["seconds"])},
                {"lever": "LM head for the last position only in prefill (logits_to_keep=1)",
                 "before": _way("logits for all 400 positions", n_prompt / t["sdpa_all_logits"]["median_s"],
                                t["sdpa_all_logits"]["median_s"], t["sdpa_all_logits"]["seconds"]),
                 "after": _way("logits_to_keep=1 (kept: generate's default and the sampler's prefill)",
                               n_prompt / s, s, t["sdpa_keep1"]["seconds"])},
            ]
        out.append(res)

    # --- decoding: greedy, after a 24-token prompt; the time of a 1-token run is subtracted
    n_new = 16 if ctx.quick else 32
    for batch in (1, 16):
        ids = prompt_ids(tok, 24, batch)
        enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        p = enc["input_ids"].shape[1]
        ways = {"first_token": lambda: decode_run(model, enc, 1)[0],
                "all_tokens": lambda: decode_run(model, enc, n_new + 1)[0]}
        if batch == 1 or not ctx.quick:
            ways["static_first"] = lambda: decode_run(model, enc, 1, False, cache_implementation="static")[0]
            ways["static_all"] = lambda: decode_run(model, enc, n_new + 1, False, cache_implementation="static")[0]
            ways["dynamic_first"] = lambda: decode_run(model, enc, 1, False)[0]
            ways["dynamic_all"] = lambda: decode_run(model, enc, n_new + 1, False)[0]
        decode_run(model, enc, 2)  # warm-up at this batch (first-call costs), not timed
        t = interleaved(ways, 3 if batch == 16 else 2, ctx.log)  # batch 16: 3, a median that one outlier cannot move
        dec_s = t["all_tokens"]["median_s"] - t["first_token"]["median_s"]
        measured = batch * n_new / dec_s
        # the n_new decode steps after the first token: step j sees p + j cached positions
        steps = [(batch, 1, p + j) for j in range(1, n_new + 1)]
        bound_s = sum(roof.call_s(*c) for c in steps)
        log = roofline.ForwardLog(model)
        wall = time.perf_counter()
        _, greedy = log.record(lambda: decode_run(model, enc, n_new + 1))
        wall = time.perf_counter() - wall
        res = entry(
            f"tokens_b{batch}", f"greedy decoding tokens/s at batch {batch} vs the "
            + ("memory-bandwidth bound" if batch == 1 else "max(bandwidth, FLOP) bound"),
            _way("bound: batch / max(bytes per step / read bandwidth, FLOPs per step / matmul peak)",
                 batch * n_new / bound_s, bound_by=roof.bound_by(batch, 1, p + n_new // 2)),
            _way(f"measured ({n_new} decoded tokens per sequence into the sampler's GrowingCache, prompt "
                 "encoding subtracted)", measured,
                 round(dec_s, 4), {k: t[k]["seconds"] for k in ("first_token", "all_tokens")}),
            bound_s / dec_s, f">= {GOAL:g} of the bound", bound_s / dec_s >= GOAL,
            batch=batch, new_tokens=n_new, prompt_tokens=p, bound_s=round(bound_s, 4),
            step_s={"bound": round(bound_s / n_new, 5), "measured": round(dec_s / n_new, 5),
                    "bytes_per_step": roof.bytes(batch, 1, p + n_new // 2),
                    "flops_per_step": roof.flops(batch, 1, p + n_new // 2)},
            python_outside_forward={"share": round(1 - log.seconds / wall, 3), "wall_s": round(wall, 4),
                                    "forward_s": round(log.seconds, 4), "forward_calls": len(log.calls),
                                    "meaning": "share of a generate call spent outside the model's forward "
                                               "(sampling, stopping checks, cache and mask bookkeeping)"},
            **common)
        att = log.attention_summary()
        res["matmul_floor"] = matmul_floor(model, batch, dec_s / n_new,
                                           att["decode_attention_s"] / n_new if att.get("decode_attention_s") else None)
        res["before_after"] = [packed_lever(res["matmul_floor"], batch)]
        if not ctx.quick:  # a compile per process and batch shape: minutes with the real model
            res["before_after"].append(compile_lever(model, enc, n_new, measured, dec_s, greedy, ctx.log))
        if "static_all" in t:
            for name, label in (("dynamic", "transformers' DynamicCache (copies the whole cache at every token)"),
                                ("static", "static cache (cache_implementation='static', no torch.compile)")):
                st_s = t[f"{name}_all"]["median_s"] - t[f"{name}_first"]["median_s"]
                kw = {"cache_implementation": "static"} if name == "static" else {}
                _, st_out = decode_run(model, enc, n_new + 1, False, **kw)
                res["before_after"].append({
                    "lever": f"KV cache for decoding, batch {batch}, {p}-token prompt: {label} vs the growing cache",
                    "before": _way(label, batch * n_new / st_s, round(st_s, 4),
                                   {k: t[k]["seconds"] for k in (f"{name}_first", f"{name}_all")}),
                    "after": _way("GrowingCache (kept: the sampler's)", measured, round(dec_s, 4)),
                    "identical_greedy_tokens": bool(torch.equal(st_out, greedy))})
            if batch == 16 and not ctx.quick:
                res["before_after"].append(long_prompt_lever(model, tok, batch, n_new, ctx.log))
        out.append(res)

    for dtype in (torch.float32, torch.bfloat16):
        for name, lever in packed_levers(ctx, tok, n_new, ctx.log, dtype).items():
            next(r for r in out if r["name"] == name).setdefault("before_after", []).append(lever)

    # the thread-count lever at batch 1 (on a shared 2-core machine the second core may be busy)
    ids = prompt_ids(tok, 24, 1)
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    before = torch.get_num_threads()
    rates = {}
    for th in sorted({1, 2} | {before}):
        torch.set_num_threads(th)
        t = interleaved({"first": lambda: decode_run(model, enc, 1)[0],
                         "all": lambda: decode_run(model, enc, n_new + 1)[0]}, 2, lambda m: None)
        rates[th] = round(n_new / (t["all"]["median_s"] - t["first"]["median_s"]), 2)
    torch.set_num_threads(before)
    b1 = next(r for r in out if r["name"] == "tokens_b1")
    b1["before_after"].append({"lever": "torch threads (batch 1 decode tokens/s)",
                               **{f"threads_{k}": v for k, v in rates.items()}})
    return out
