"""Run the benchmarks; write ``benchmarks/results/latest.json`` and ``latest.md``.

    python -m benchmarks.run [--quick] [--only sampling,rollouts] [--threads 1] [--jobs 0] [--out DIR]

Every line times two ways on the same inputs in the same process, alternating them (A B, B A, ...)
and taking medians, so the ratio holds even when the absolute times on a shared machine do not.
``--quick`` uses the tiny random model and small inputs (a smoke test of the suite; its ratios
mean little). ``--only`` reruns some benchmarks and keeps the others' last results in the files.
The benchmarks in ``ON_REQUEST`` run only when ``--only`` names them (or with ``--quick``); a plain
run keeps their last results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

BENCHMARKS = {  # name -> module (in the order they run)
    "sampling": "benchmarks.bench_sampling",
    "scoring": "benchmarks.bench_scoring",
    "rollouts": "benchmarks.bench_rollouts",
    "grpo": "benchmarks.bench_grpo",
    "pipeline": "benchmarks.bench_pipeline",
    "pairs": "benchmarks.bench_pairs",
    "tokens": "benchmarks.bench_tokens",
    "data_scaling": "benchmarks.bench_scaling",
    "roofline": "benchmarks.bench_roofline",
    "default_run": "benchmarks.bench_default",
}
ON_REQUEST = {"default_run"}  # the default profile end to end (≈ 45 min): with --only, or --quick (smoke profile)


def _fmt_rate(w: dict) -> str:
    if w.get("rate") is not None:
        return f"{w['rate']:.3g} {w['unit']}"
    if w.get("median_s") is not None:
        return f"{w['median_s']:.3g} s"
    return "-"


def _goal_cell(r: dict) -> str:
    if r["met"] is None:
        return "-"
    return "yes" if r["met"] else "**no**"


def _writers(stages: dict, n: int = 3) -> str:
    """The steps that wrote most (their console end lines), for the default_run note.

    >>> _writers({"steps_written_bytes": 1.6e9, "steps": [{"step": "a", "written_bytes": 1.0e9},
    ...           {"step": "b", "written_bytes": 6e8}, {"step": "c", "written_bytes": None}]})
    '; steps wrote 1.6 GB (most: a 1 GB, b 600 MB)'
    >>> _writers({"steps": []})
    ''
    """
    from benchmarks.common import fmt_bytes

    if not stages.get("steps_written_bytes"):
        return ""
    top = sorted((s for s in stages["steps"] if s.get("written_bytes")), key=lambda s: -s["written_bytes"])[:n]
    return (f"; steps wrote {fmt_bytes(stages['steps_written_bytes'])} (most: "
            + ", ".join(f"{s['step']} {fmt_bytes(s['written_bytes'])}" for s in top) + ")")


def _ceiling(r: dict) -> str:
    """For a decoding line: the most of its bound any step could reach on this machine's BLAS, were
    everything but the matrix products free: the bound's step over the fastest way measured to run
    the step's products alone (plain or MKL-packed weights). Below the goal, no change outside the
    products can meet it.

    >>> _ceiling({"step_s": {"bound": 0.045}, "matmul_floor": {"plain": {"seconds": 0.1},
    ...           "packed": {"seconds": 0.077}}})
    '; at most 0.58 of the bound with the products alone (packed, 77 ms)'
    >>> _ceiling({"step_s": {"bound": 0.043}})
    ''

    With the step's attention as it ran (``attention_s``), also the most reachable were only norms,
    activations, cache bookkeeping and Python free:

    >>> _ceiling({"step_s": {"bound": 0.045}, "matmul_floor": {"plain": {"seconds": 0.1},
    ...           "packed": {"seconds": 0.077}, "attention_s": 0.013}})
    '; at most 0.58 of the bound with the products alone (packed, 77 ms), 0.50 with attention (13 ms)'
    """
    floor, step = r.get("matmul_floor"), r.get("step_s") or {}
    if not floor or "bound" not in step:
        return ""
    name, best = min(((k, floor[k]) for k in ("plain", "packed") if k in floor), key=lambda kv: kv[1]["seconds"])
    out = (f"; at most {step['bound'] / best['seconds']:.2f} of the bound with the products alone "
           f"({name}, {best['seconds'] * 1e3:.0f} ms)")
    if floor.get("attention_s"):
        out += (f", {step['bound'] / (best['seconds'] + floor['attention_s']):.2f} with attention "
                f"({floor['attention_s'] * 1e3:.3g} ms)")
    return out


def _extra(r: dict) -> str:
    """The number the goal is about when it is not the ratio.

    >>> _extra({"name": "sampling", "bound": {"fraction_of_bound": 0.5, "bound_s": 9.0, "prefill_s": 8.0,
    ...         "prefill_fraction": 0.8, "decode_s": 6.0, "decode_fraction": 0.3}})
    '0.50 of the bound (9 s); prompt encoding 8 s (0.80 of its bound), decoding 6 s (0.30)'
    >>> _extra({"name": "sampling", "bound": {"fraction_of_bound": 0.5, "bound_s": 9.0, "products_s": 12.0,
    ...         "products_ceiling": 0.75}})
    '0.50 of the bound (9 s); at most 0.75 of the bound with the products alone (12 s)'
    >>> _extra({"name": "sampling", "bound": {"fraction_of_bound": 0.5, "bound_s": 9.0, "products_s": 12.0,
    ...         "products_ceiling": 0.75, "attention_s": 3.0, "kernels_ceiling": 0.6}})
    '0.50 of the bound (9 s); at most 0.75 of the bound with the products alone (12 s), 0.60 with attention (3 s)'
    """
    bound = r.get("bound") if isinstance(r.get("bound"), dict) else {}
    if "fraction_of_bound" in bound:
        note = f"{bound['fraction_of_bound']:.2f} of the bound ({bound['bound_s']:.3g} s)"
        if bound.get("prefill_fraction") is not None and bound.get("decode_fraction") is not None:
            note += (f"; prompt encoding {bound['prefill_s']:.3g} s ({bound['prefill_fraction']:.2f} of its bound), "
                     f"decoding {bound['decode_s']:.3g} s ({bound['decode_fraction']:.2f})")
        if bound.get("products_ceiling") is not None:
            note += (f"; at most {bound['products_ceiling']:.2f} of the bound with the products alone "
                     f"({bound['products_s']:.3g} s)")
        if bound.get("kernels_ceiling") is not None:
            note += f", {bound['kernels_ceiling']:.2f} with attention ({bound['attention_s']:.3g} s)"
        if "checks" in r and "identical_success_counts" in r["checks"]:
            c = r["checks"]
            note += f"; wins {c['successes_sequential']} vs {c['successes_batched']}"
        return note
    from benchmarks.common import fmt_bytes

    if "overhead_pct" in r:
        return f"overhead {r['overhead_pct']:+.1f}%/step"
    if "fraction_resampled" in r:
        return f"{r['states_sampled']}/{r['states']} states re-sampled ({r['fraction_resampled']:.1%}); time {r['time_vs_full']:.2f}x full"
    if r["name"] == "data_scaling":
        m1, m2 = r["marginal_s_per_game"]
        return (f"marginal {m1:.2f} then {m2:.2f} s/game; fixed {r['fixed_s']:.0f} s; "
                + ", ".join(f"{s['scale']}x {s['games']} games {s['total_s']:.0f} s" for s in r["scales"]))
    if r["name"] == "data_increment":
        c = r["checks"]
        return (f"+{r['share_of_rows']:.1%} rows: {r['b']['median_s']:.0f} s (allowed {r['allowed_s']:.0f} s); "
                f"{c['games_replayed']} games replayed, {c['states_sampled']}/{c['states']} states sampled")
    if r["name"] == "default_run":
        m = r["memory"].get("peak_used_bytes")
        return (f"{r['wall_min']:.1f} wall min, --jobs {r['jobs']} ({r['model_steps']} model steps, "
                f"{r['torch_threads_per_step']} torch thread(s) each); wait chain {r['stages']['wait_chain_min']:.1f} min, "
                f"no step running {r['stages']['no_step_min']:.1f} min; "
                f"peak memory used {fmt_bytes(m)}; load {r['load_avg']['start'][0]:.1f} → {r['load_avg']['end'][0]:.1f}"
                + _writers(r["stages"]))
    if r["name"] == "noop_rerun":
        return f"no-op {r['b']['median_s']:.1f} s"
    if "checks" in r and "identical_success_counts" in r["checks"]:
        c = r["checks"]
        return f"wins {c['successes_sequential']} vs {c['successes_batched']}"
    if "read_GBps" in r.get("roofline", {}):  # the prefill / decode lines (older tokens lines: below)
        roof = r["roofline"]
        floor = r.get("matmul_floor")
        return (f"bound by {r['a'].get('bound_by')}; {roof['read_GBps']} GB/s read, "
                f"peak {roof['peak_GFLOPs']} GFLOP/s ({roof['peak']['peak_shape']})"
                + (f"; the step's {floor['plain']['linears']} products alone at batch {floor['plain']['rows']}"
                   f"{' (packed, as the step runs them)' if floor.get('step_products') == 'packed' else ''}: "
                   f"{floor[floor.get('step_products', 'plain')]['seconds'] * 1e3:.0f} of "
                   f"{floor['measured_step_s'] * 1e3:.0f} ms ({floor['products_share']:.2f})" if floor else "")
                + _ceiling(r))
    if "roofline_fraction" in r:
        f = r["roofline_fraction"]
        return (f"roofline fraction: pipeline {f['pipeline']:.2f}, plain TRL {f['plain_trl']:.2f} "
                f"(matmul peak {r['matmul_peak']['peak_GFLOPs']} GFLOP/s)")
    if r["name"].startswith("tokens"):
        return f"{r['roofline']['read_bandwidth']['read_GBps']} GB/s, {r['roofline']['matmul_GFLOPs']} GFLOP/s"
    return ""


def _disk(r: dict) -> str:
    """What each way wrote and left on disk, where it was measured (``disk``: benchmarks.common.disk_use).

    >>> _disk({"a": {}, "b": {"disk": {"written_bytes": 45_000_000_000, "left_bytes": 5_100_000_000}}})
    'B wrote 45 GB, left 5.1 GB'
    >>> _disk({"a": {}, "b": {}})
    ''
    """
    from benchmarks.common import fmt_bytes

    return "; ".join(f"{k.upper()} wrote {fmt_bytes(r[k]['disk']['written_bytes'])}, left {fmt_bytes(r[k]['disk']['left_bytes'])}"
                     for k in ("a", "b") if isinstance(r.get(k), dict) and r[k].get("disk"))


def machine_label(m: dict) -> str:
    """A machine in a few words: its CPU and whether it has native bf16 (the default profile's
    ``bf16`` and ``inference_dtype: bfloat16`` take effect only there: another computation).

    >>> machine_label({"cpu_model": "AMD EPYC", "cpu_flags": {"avx512_bf16": False, "amx_bf16": False}})
    'AMD EPYC, no native bf16'
    """
    flags = m.get("cpu_flags") or {}
    return f"{m.get('cpu_model', '?')}, {'native bf16' if flags.get('avx512_bf16') or flags.get('amx_bf16') else 'no native bf16'}"


def _runs(doc: dict) -> list[tuple[str, str]]:
    """(benchmark, "<date> on <machine>") for each line's run; lines from before runs recorded their
    machine were run on the machine ``earlier_machine`` names."""
    seen: dict[str, str] = {}
    earlier = doc.get("earlier_machine") or doc["machine"]
    for r in doc["results"]:
        run = r.get("run", {})
        seen.setdefault(r.get("benchmark", r["name"]),
                        f"{run.get('date_utc', '?')} on {run.get('machine') or machine_label(earlier)}")
    return list(seen.items())


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        f"Machine of the latest run: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, {m.get('memory_gib', '?')} GiB; "
        f"AVX512: {m['cpu_flags']['avx512f']}; torch {m['torch']} ({m['torch_threads']} thread(s)), "
        f"transformers {m['transformers']}, trl {m['trl']}, duckdb {m['duckdb']}, pandas {m['pandas']}; "
        f"commit {m['git_commit'][:10]}{' (dirty)' if m['git_dirty'] else ''}; {m['date_utc']}"
        f"{' (--quick)' if doc['quick'] else ''}"
        + ("" if len({d for _, d in _runs(doc)}) <= 1 else
           " Lines from several runs of the suite (`--only`): "
           + "; ".join(f"{', '.join(n for n, d in _runs(doc) if d == day)} at {day}"
                       for day in sorted({d for _, d in _runs(doc)}))) + ".",
        "",
        "| benchmark | way A (baseline, or the bound) | way B (pipeline, or measured) | B vs A | goal | met? | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['name']} | - | - | - | - | error | {r['error'].splitlines()[-1][:120]} |")
            continue
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        lines.append(f"| {r['name']} | {r['a']['label']}: {_fmt_rate(r['a'])} | {r['b']['label']}: {_fmt_rate(r['b'])} "
                     f"| {ratio} | {r['goal']} | {_goal_cell(r)} | {'; '.join(x for x in (_extra(r), _disk(r)) if x)} |")
    lines += ["", "Ratios: B's rate / A's rate (for times: A's seconds / B's seconds; for prefill_* and tokens_*: "
              "measured / bound). Sampling and rollouts: the note gives the pipeline's time against the least "
              "time of its own forward calls on this CPU (`bound` in latest.json; the goal is on that). Medians "
              "of interleaved repeats; every line's N, seed and parameters are in latest.json."]
    levers = [(r["name"], x) for r in doc["results"] for x in r.get("before_after", [])]
    if levers:
        lines += ["", "Levers, before → after (same inputs, same run unless noted):", ""]
        for name, x in levers:
            if "before" in x:
                # identical_greedy_tokens, identical_completions, ...: the check that both ways computed the same
                same = "".join(f"; {k.replace('_', ' ')}: {'yes' if v else 'no'}" for k, v in x.items()
                               if k.startswith("identical_") and isinstance(v, bool))
                side = lambda w: " ".join(filter(None, (w.get("label"), _fmt_rate(w))))  # noqa: E731
                lines.append(f"- {name}: {x['lever']}: {side(x['before'])} → {side(x['after'])}"
                             + (f" ({x['note']})" if x.get("note") else "") + same)
            else:
                lines.append(f"- {name}: {x['lever']}: " + ", ".join(f"{k} {v}" for k, v in x.items() if k != "lever"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model, small inputs: a few minutes")
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 1),
                   help="torch threads (default $OMP_NUM_THREADS or 1: the machine is shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=0, help="default_run: act-pipeline run --jobs (0: as many as CPU cores)")
    p.add_argument("--model-steps", type=int, default=0,
                   help="default_run: act-pipeline run --model-steps (0: as many as fit in memory)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [
        n for n in BENCHMARKS if args.quick or n not in ON_REQUEST]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.common import REPO, Ctx, machine_info, scratch_dir
    from act_pipeline.config import load_config
    from act_pipeline.envs.alfworld import resolve_data_root
    from act_pipeline.machine import tune_malloc
    from act_pipeline.models import resolve_base_model

    malloc_tuned = tune_malloc()  # as in the pipeline's model steps (the sampling line measures it both ways)

    data = resolve_data_root(os.environ.get("ALFWORLD_DATA") or str(REPO.parent / "shared" / "alfworld"))
    if data is None:
        print("error: real ALFWorld games are needed: set ALFWORLD_DATA", file=sys.stderr)
        return 2
    quiet = lambda m: None  # noqa: E731
    tiny = resolve_base_model(load_config(REPO / "configs" / "smoke.yaml").model, 0, log=quiet)
    if args.quick:
        model, model_name = tiny, "tiny random Llama (SmolLM2 tokenizer)"
    else:
        model, model_name = resolve_base_model(load_config(REPO / "configs" / "default.yaml").model, 0, log=print), \
            "SmolLM2-135M-Instruct (float32)"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir()
    ctx = Ctx(quick=args.quick, model=model, model_name=model_name, tiny_model=tiny, threads=args.threads,
              seed=args.seed, scratch=scratch, alfworld=Path(data), log=lambda m: print(m, flush=True),
              jobs=args.jobs, model_steps=args.model_steps, out=out)
    doc = {"quick": args.quick, "machine": {**machine_info(args.threads), "malloc_tuned": malloc_tuned},
           "results": []}
    t_all = time.time()
    try:
        for name in names:
            print(f"== {name}", flush=True)
            t0 = time.time()
            try:
                res = importlib.import_module(BENCHMARKS[name]).run(ctx)
            except Exception as e:  # noqa: BLE001 - one broken benchmark is reported, the others run
                traceback.print_exc()
                res = [{"name": name, "error": f"{type(e).__name__}: {e}"}]
            for r in res:
                r["benchmark"] = name
                r["wall_s"] = round(time.time() - t0, 1)
                r["run"] = {"date_utc": doc["machine"]["date_utc"], "git_commit": doc["machine"]["git_commit"],
                            "git_dirty": doc["machine"]["git_dirty"], "machine": machine_label(doc["machine"])}
            doc["results"] += res
            print(f"   {name}: {time.time() - t0:.0f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    doc["total_s"] = round(time.time() - t_all, 1)
    latest = out / "latest.json"
    if latest.exists():  # keep the last results of the benchmarks not run (--only; ON_REQUEST)
        old = json.loads(latest.read_text())
        if old.get("quick") == args.quick:
            kept = [r for r in old["results"] if r.get("benchmark") not in names]
            doc["results"] = sorted(kept + doc["results"], key=lambda r: list(BENCHMARKS).index(r["benchmark"]))
            doc["earlier_machine"] = old.get("earlier_machine") or old["machine"]  # each line's own run: r["run"]
    for name, text in ctx.profiles.items():
        (out / f"profile_{name}.txt").write_text(text)
    latest.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "latest.md").write_text(markdown(doc))
    print(markdown(doc))
    print(f"wrote {latest} and {out / 'latest.md'} ({doc['total_s']:.0f} s)")
    return 0 if all("error" not in r for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
