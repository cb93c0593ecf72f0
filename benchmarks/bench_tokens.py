"""6. Greedy decoding tokens/s of the model vs a roofline estimate for this CPU."""

from __future__ import annotations

import time

import torch

from benchmarks.common import Ctx, entry, interleaved, load, matmul_flops


def read_bandwidth(gib: float = 0.5, repeats: int = 5) -> dict:
    """Memory bandwidth with torch at the current thread count: a sum over a float32 array much larger
    than the caches (bytes read / s) and a copy (bytes read + written / s); best of ``repeats``."""
    a = torch.ones(int(gib * 2**30 / 4))
    b = torch.empty_like(a)
    nbytes = a.numel() * 4
    read, copy = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        read.append(nbytes / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        b.copy_(a)
        copy.append(2 * nbytes / (time.perf_counter() - t0))
    return {"read_GBps": round(max(read) / 1e9, 2), "copy_GBps": round(max(copy) / 1e9, 2),
            "array_GiB": gib, "repeats": repeats}


def decode_seconds(model, enc, new_tokens: int) -> float:
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=enc["input_ids"][0, 0].item())
        return time.perf_counter() - t0


def run(ctx: Ctx) -> list[dict]:
    model, tok = load(ctx.model)
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    pbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bw = read_bandwidth(0.25 if ctx.quick else 0.5)
    flops = matmul_flops(1024, 1024, 1024)
    prompt = "Task: put a clean mug in the coffeemachine. You are in the middle of a room. Looking around"
    n_new = 16 if ctx.quick else 32
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    out = []
    for batch in (1, 16):
        enc = tok([prompt] * batch, return_tensors="pt", add_special_tokens=False)
        ctx_len = enc["input_ids"].shape[1] + n_new // 2  # mean context while decoding
        # decode time alone: a run of n_new + 1 tokens minus a run of 1 token (prompt encoding + first token)
        t = interleaved({"first_token": lambda: decode_seconds(model, enc, 1),
                         "all_tokens": lambda: decode_seconds(model, enc, n_new + 1)}, 2, ctx.log)
        dec_s = t["all_tokens"]["median_s"] - t["first_token"]["median_s"]
        measured = batch * n_new / dec_s
        kv_bytes = batch * 2 * cfg.num_hidden_layers * kv_heads * head_dim * ctx_len * 4
        step_bw = (pbytes + kv_bytes) / (bw["read_GBps"] * 1e9)
        step_fl = batch * 2 * params / flops
        roof = batch / max(step_bw, step_fl)
        out.append(entry(
            f"tokens_b{batch}", f"greedy decoding tokens/s at batch {batch} vs the roofline",
            {"label": "roofline: batch / max(bytes per step / read bandwidth, batch x 2 x params / matmul FLOP/s)",
             "rate": round(roof, 2), "unit": "tokens/s", "median_s": None, "seconds": [],
             "bound_by": "memory bandwidth" if step_bw >= step_fl else "compute"},
            {"label": f"measured ({n_new} decoded tokens per sequence, prompt encoding subtracted)",
             "rate": round(measured, 2), "unit": "tokens/s", "median_s": round(dec_s, 4),
             "seconds": {k: t[k]["seconds"] for k in t}},
            measured / roof, "report: measured / roofline", None,
            model=ctx.model_name, seed=ctx.seed, batch=batch, new_tokens=n_new, prompt_tokens=int(enc["input_ids"].shape[1]),
            roofline={"params": params, "param_bytes": pbytes, "kv_bytes_per_step": kv_bytes,
                      "bytes_per_step": pbytes + kv_bytes, "read_bandwidth": bw,
                      "matmul_GFLOPs": round(flops / 1e9, 2), "threads": torch.get_num_threads(),
                      "step_s_memory": round(step_bw, 5), "step_s_compute": round(step_fl, 5),
                      "derivation": "each decode step reads every weight once (float32: 4 bytes/param) plus the KV "
                                    "cache, and does 2 FLOPs per param per sequence; the step takes at least the "
                                    "larger of bytes/bandwidth and FLOPs/(matmul FLOP/s); tokens/s = batch / step"}))
    # the thread-count lever at batch 1 (on a shared 2-core machine the second core may be busy)
    enc = tok([prompt], return_tensors="pt", add_special_tokens=False)
    before = torch.get_num_threads()
    rates = {}
    for th in sorted({1, 2} | {before}):
        torch.set_num_threads(th)
        t = interleaved({"first": lambda: decode_seconds(model, enc, 1),
                         "all": lambda: decode_seconds(model, enc, n_new + 1)}, 2, lambda m: None)
        rates[th] = round(n_new / (t["all"]["median_s"] - t["first"]["median_s"]), 2)
    torch.set_num_threads(before)
    out[0]["before_after"] = [{"lever": "torch threads (batch 1 decode tokens/s)",
                               **{f"threads_{k}": v for k, v in rates.items()}}]
    return out
