"""One device check of the project's GPU paths, for a lent single-GPU machine (an H200).

Run by ``bash scripts/gpu_check.sh`` (installs the carried wheels of ``.whl/`` first; see
``scripts/gpu_wheels.sh``). Every step runs in its own process group with its own timeout under a
global budget, so one failing (or hanging, or crashing) step does not stop the others. Each step
prints one ``PASS|FAIL|SKIP <step> (<seconds>s): <key numbers>`` line; all of them, with their
details, go to ``$OUT/gpu_check.json``, and every process's output to ``$OUT/gpu_check.log``.

Steps:
  env             nvidia-smi, torch/CUDA facts, the packages in use, a bf16 8192^3 matmul's TFLOP/s
  nccl            torchrun --nproc_per_node=1, NCCL all_reduce/all_gather/broadcast on CUDA tensors
                  (world size 1: NCCL refuses two ranks on one GPU)
  prep            the smoke profile's tiny random Llama (models.build_tiny_random, from the carried
                  SmolLM2 tokenizer), a rows Parquet file serving as contrast pairs and expert steps
  act_inproc      training.launch.run_job, stage act (GRPO, TRL), bf16, in this process
  il_inproc       the same, stage il (SFT)
  sampler         sampling.backends.make_sampler (transformers) generating on CUDA in bf16
  accelerate_act  accelerate launch --config_file configs/accelerate/single_gpu.yaml
                  -m act_pipeline.assets.pipes_entry JOB.json (the asset's command, no Dagster)
  deepspeed_act   the same with configs/accelerate/deepspeed_zero3.yaml, --num_processes 1
  rl_inproc       run_job, stage rl (GRPO on next actions)
  vllm            the vLLM backend: SKIP unless vllm is importable (its wheel cannot be carried)

``--cpu-dry-run`` runs the same steps on the CPU (float32, gloo, configs/accelerate/cpu.yaml and
deepspeed_zero3_cpu.yaml, a small matmul): the script's logic, not the GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = REPO / ".gpu_model"  # carried: the SmolLM2 tokenizer (scripts/gpu_wheels.sh)
VLLM_NOTE = ("no vllm wheel can travel: the newest cp312 manylinux x86_64 wheel (vllm 0.33.0, "
             "cp38-abi3-manylinux_2_28_x86_64, measured 2026-11-30) is 336.4 MB, over the 64 MiB the working tree "
             "may carry, and it pins torch==2.14.0 (this machine: torch 2.11)")

# name -> (timeout in seconds, needs prep)
STEPS: dict[str, tuple[int, bool]] = {
    "env": (90, False),
    "nccl": (90, False),
    "prep": (90, False),
    "act_inproc": (150, True),
    "il_inproc": (120, True),
    "sampler": (90, True),
    "accelerate_act": (150, True),
    "deepspeed_act": (180, True),
    "rl_inproc": (150, True),
    "vllm": (60, True),
}

PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "huggingface_hub", "tokenizers",
            "safetensors", "numpy", "pyarrow", "pandas", "fsspec", "pydantic", "duckdb", "deepspeed",
            "dagster_pipes", "regex", "jinja2", "typing_extensions", "triton", "vllm")


class Skip(Exception):
    """A step that cannot run here, with the reason."""


# --------------------------------------------------------------------------- helpers


def gpu_mode(args) -> bool:
    return not args.cpu_dry_run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict | None = None) -> dict:
    path = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "TOKENIZERS_PARALLELISM": "false",
            **(extra or {})}


def nccl_version() -> str:
    import torch

    v = torch.cuda.nccl.version()
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def work_paths(work: Path) -> dict:
    return {"tiny": work / "tiny-llama", "rows": work / "rows.parquet", "profile": work / "profile.yaml"}


def rows_for_check() -> list[dict]:
    """The rows tests/test_launch.py trains on: 8 train rows that are both contrast pairs and won expert
    steps, 2 valid_unseen rows (the probe's held-out pairs; the stage filters must drop them)."""
    row = {"game_id": "g1", "step": 0, "task": "put a mug in the sink.", "observation": "You see a sink 1.",
           "history": [{"action": "look", "observation": "You are in a room."}],
           "admissible": ["go to sink 1", "look", "inventory"], "expert_action": "go to sink 1", "won": True,
           "split": "train", "action_1": "go to sink 1", "action_2": "look", "expert_slot": 1}
    rows = [row, dict(row, step=1, action_1="look", action_2="go to sink 1", expert_slot=2)] * 4
    rows += [dict(row, split="valid_unseen", game_id="g2"),
             dict(row, split="valid_unseen", game_id="g2", step=1, action_1="inventory", action_2="go to sink 1",
                  expert_slot=2)]
    return rows


def check_checkpoint(out: Path, init: Path) -> dict:
    """The trained folder: safetensors only, every tensor finite and shaped as in the initial model
    (a ZeRO-3 save without the 16-bit gather would leave empty shards), and whether training moved it."""
    import torch
    from safetensors.torch import load_file

    files = sorted(out.glob("*.safetensors"))
    names = sorted(p.name for p in out.iterdir())
    pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth")) or n.startswith("global_step")]
    if not files or pickles:
        raise AssertionError(f"{out}: expected safetensors only, found {names}")
    got = {}
    for f in files:
        got.update(load_file(str(f)))
    ref = load_file(str(init / "model.safetensors"))
    bad = [k for k, t in got.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise AssertionError(f"non-finite tensors in {out}: {bad[:5]}")
    # tied embeddings: lm_head may be absent from either side
    common = sorted(set(ref) & set(got))
    shapes = [k for k in common if tuple(ref[k].shape) != tuple(got[k].shape)]
    if not common or shapes:
        raise AssertionError(f"{out}: tensors missing or reshaped vs the initial model: {shapes[:5] or sorted(ref)[:5]}")
    moved = max(float((got[k].float() - ref[k].float()).abs().max()) for k in common)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in got.values()})
    return {"files": names, "tensors": len(got), "dtypes": dtypes, "max_abs_change_vs_init": moved}


def job_for(work: Path, stage: str, name: str, accelerate_config: str | None) -> dict:
    from act_pipeline.config import load_config
    from act_pipeline.training.launch import make_job

    p = work_paths(work)
    cfg = load_config(p["profile"])
    if accelerate_config:
        cfg.training.launcher = "accelerate"
        cfg.training.accelerate_config = accelerate_config
        cfg.training.num_processes = 1
    card = {"asset": f"alfworld/{stage}_gpu_check", "config": cfg.to_dict(), "gpu_check": name}
    return make_job(cfg, stage, cfg.alfworld.history_len, {"uri": str(p["tiny"])}, {"uri": str(p["rows"])},
                    work / f"{name}_out", work / f"{name}_trainer", card,
                    probe_split="valid_unseen" if stage == "act" else None)


def summarize_training(res: dict, job: dict, work: Path, args, extra: dict | None = None) -> tuple[str, dict]:
    p = work_paths(work)
    cfg_steps = job["config"]["max_steps"]
    ck = check_checkpoint(Path(job["out_dir"]), p["tiny"])
    device = str(res.get("device"))
    info = {k: res.get(k) for k in ("global_step", "device", "world_size", "distributed_type", "backend",
                                    "zero_stage", "train_runtime_s", "rows", "loss_first", "loss_last",
                                    "mean_reward_first", "mean_reward_last", "frac_groups_equal_reward",
                                    "truncated_share", "content_hash")}
    info["bf16"] = job["config"].get("bf16")
    if res.get("judgement_curve") is not None:
        info["judgement_curve"] = [(c["step"], c["judgement_accuracy"], c["n"]) for c in res["judgement_curve"]]
    info["checkpoint"] = ck
    info.update(extra or {})
    if res.get("global_step") != cfg_steps:
        raise AssertionError(f"global_step {res.get('global_step')} != max_steps {cfg_steps}")
    if gpu_mode(args) and not device.startswith("cuda"):
        raise AssertionError(f"trained on {device}, expected cuda")
    if not gpu_mode(args) and not device.startswith("cpu"):
        raise AssertionError(f"trained on {device}, expected cpu in the dry run")
    metric = (f"loss {res['loss_first']:.4g}->{res['loss_last']:.4g}" if res.get("loss_first") is not None
              else f"reward {res.get('mean_reward_first')}->{res.get('mean_reward_last')}")
    summary = (f"{res['global_step']} steps on {device} ({info['distributed_type']}, backend {info['backend']}, "
               f"zero {info['zero_stage']}, world {info['world_size']}), bf16={info['bf16']}, "
               f"{info['train_runtime_s'] or 0:.1f}s train, {metric}; saved {ck['dtypes']} safetensors "
               f"({ck['tensors']} tensors, max |change| {ck['max_abs_change_vs_init']:.3g})")
    return summary, info


# --------------------------------------------------------------------------- steps


def step_env(args, work: Path) -> tuple[str, dict]:
    import importlib.metadata as md

    import torch

    info: dict = {"python": sys.version.split()[0], "executable": sys.executable,
                  "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    smi = None
    try:
        r = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
        print(r.stdout + r.stderr)
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,"
                            "compute_cap", "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        smi = q.stdout.strip() or q.stderr.strip()
    except (OSError, subprocess.SubprocessError) as e:
        smi = f"nvidia-smi: {e}"
    info["nvidia_smi"] = smi
    pk = {}
    for name in PACKAGES:
        try:
            ver = md.version(name)
        except md.PackageNotFoundError:
            ver = None
        spec = importlib.util.find_spec(name) if ver else None
        where = None
        if spec and spec.origin:
            where = str(Path(spec.origin).parent.parent if spec.submodule_search_locations else Path(spec.origin).parent)
        pk[name] = f"{ver} ({where})" if ver else None
    info["packages"] = pk
    for k, v in pk.items():
        print(f"  {k:18s} {v}")
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if not torch.cuda.is_available():
        if gpu_mode(args):
            raise AssertionError("torch.cuda.is_available() is False")
        n, dtype, dev = 512, torch.float32, "cpu"
    else:
        prop = torch.cuda.get_device_properties(0)
        info.update(device_count=torch.cuda.device_count(), device=prop.name,
                    capability=f"{prop.major}.{prop.minor}", total_memory_gib=round(prop.total_memory / 2**30, 1),
                    sms=prop.multi_processor_count, bf16_supported=torch.cuda.is_bf16_supported(),
                    cudnn=torch.backends.cudnn.version(), nccl=nccl_version())
        n, dtype, dev = 8192, torch.bfloat16, "cuda"
    a = torch.randn(n, n, dtype=dtype, device=dev)
    b = torch.randn(n, n, dtype=dtype, device=dev)
    reps = 50 if dev == "cuda" else 3
    for _ in range(3):
        c = a @ b
    if dev == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            c = a @ b
        end.record()
        torch.cuda.synchronize()
        secs = start.elapsed_time(end) / 1e3
    else:
        t0 = time.perf_counter()
        for _ in range(reps):
            c = a @ b
        secs = time.perf_counter() - t0
    tflops = 2 * n**3 * reps / secs / 1e12
    ref = a[:64].float() @ b.float()
    rel = float((c[:64].float() - ref).norm() / ref.norm())
    info.update(matmul={"n": n, "dtype": str(dtype).replace("torch.", ""), "reps": reps, "seconds": secs,
                        "tflops": tflops, "rel_err_vs_fp32": rel})
    if not bool(torch.isfinite(c).all()) or rel > 2e-2:
        raise AssertionError(f"matmul result off: rel err {rel:.3g} vs float32")
    where = (f"{info.get('device')} (cc {info.get('capability')}, {info.get('total_memory_gib')} GiB, "
             f"{info.get('sms')} SMs), NCCL {info.get('nccl')}" if dev == "cuda" else "CPU (dry run)")
    return (f"torch {torch.__version__} CUDA {torch.version.cuda}, transformers {pk['transformers']}, "
            f"trl {pk['trl']}; {where}; {info['matmul']['dtype']} {n}^3 matmul {tflops:.1f} TFLOP/s "
            f"(rel err {rel:.1e})", info)


def nccl_worker(result: str, cpu: bool) -> None:
    """Inside torchrun: one rank's collectives on CUDA tensors (gloo on CPU tensors in the dry run)."""
    import torch
    import torch.distributed as dist

    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dev = torch.device("cpu")
        dist.init_process_group("gloo")
    info = {"backend": dist.get_backend(), "world_size": world, "device": str(dev)}
    t = torch.full((1024,), float(rank + 1), device=dev)
    dist.all_reduce(t)
    info["all_reduce_ok"] = bool((t == world * (world + 1) / 2).all())
    out = [torch.empty(4, device=dev) for _ in range(world)]
    dist.all_gather(out, torch.full((4,), float(rank), device=dev))
    info["all_gather_ok"] = all(bool((o == r).all()) for r, o in enumerate(out))
    b = torch.full((8,), 42.0 if rank == 0 else -1.0, device=dev)
    dist.broadcast(b, src=0)
    info["broadcast_ok"] = bool((b == 42.0).all())
    big = torch.ones(64 * 2**20, dtype=torch.bfloat16 if use_cuda else torch.float32, device=dev)  # 128 MiB bf16
    for _ in range(2):
        dist.all_reduce(big)
    if use_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    reps = 10
    for _ in range(reps):
        dist.all_reduce(big)
    if use_cuda:
        torch.cuda.synchronize()
    secs = (time.perf_counter() - t0) / reps
    info["big_all_reduce"] = {"mib": big.numel() * big.element_size() / 2**20, "ms": secs * 1e3,
                              "algbw_gb_s": big.numel() * big.element_size() / secs / 1e9}
    dist.barrier()
    if use_cuda:
        info["nccl_version"] = nccl_version()
    dist.destroy_process_group()
    if rank == 0:
        Path(result).write_text(json.dumps(info))


def step_nccl(args, work: Path) -> tuple[str, dict]:
    res = work / "nccl_result.json"
    res.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           str(Path(__file__).resolve()), "--nccl-worker", str(res)] + (["--cpu-dry-run"] if args.cpu_dry_run else [])
    r = subprocess.run(cmd, env=child_env({"NCCL_DEBUG": "INFO", "OMP_NUM_THREADS": "1"}))
    if r.returncode != 0 or not res.exists():
        raise AssertionError(f"torchrun exited {r.returncode}" + ("" if res.exists() else ", no result"))
    info = json.loads(res.read_text())
    info["note"] = "world size 1: one GPU here, and NCCL refuses two ranks on the same GPU"
    ok = info["all_reduce_ok"] and info["all_gather_ok"] and info["broadcast_ok"]
    if gpu_mode(args) and info["backend"] != "nccl":
        ok = False
    summary = (f"backend {info['backend']} {info.get('nccl_version', '')} world {info['world_size']} on "
               f"{info['device']}: all_reduce {info['all_reduce_ok']}, all_gather {info['all_gather_ok']}, "
               f"broadcast {info['broadcast_ok']}; {info['big_all_reduce']['mib']:.0f} MiB all_reduce "
               f"{info['big_all_reduce']['ms']:.2f} ms (world 1: no traffic)")
    if not ok:
        raise AssertionError(summary)
    return summary, info


def step_prep(args, work: Path) -> tuple[str, dict]:
    import pyarrow as pa
    import yaml

    from act_pipeline.config import load_config
    from act_pipeline.data.store import read_parquet, write_parquet_atomic
    from act_pipeline.models import build_tiny_random, count_parameters, load_model

    p = work_paths(work)
    data = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    gpu = gpu_mode(args)
    data["act"].update(max_steps=3, per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
                       probe_every=2, probe_pairs=2, bf16=gpu)
    data["il"].update(max_steps=3, per_device_train_batch_size=4, bf16=gpu)
    data["rl"].update(max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
                      bf16=gpu)
    data["model"]["inference_dtype"] = "bfloat16" if gpu else "float32"
    p["profile"].write_text(yaml.safe_dump(data))
    cfg = load_config(p["profile"])
    tok_dir = TOKENIZER_DIR
    if not (tok_dir / "tokenizer.json").exists():
        if gpu:
            raise AssertionError(f"{tok_dir} is missing: carry .gpu_model (scripts/gpu_wheels.sh builds it)")
        from act_pipeline.models import resolve_base_model  # here: the project's own cache

        tok_dir = Path(resolve_base_model(cfg.model, cfg.seed))
    build_tiny_random(tok_dir, p["tiny"], cfg.model, cfg.seed)
    model, tok = load_model(str(p["tiny"]))
    write_parquet_atomic(pa.Table.from_pylist(rows_for_check()), p["rows"])
    n_rows = read_parquet(p["rows"]).num_rows
    info = {"tiny": str(p["tiny"]), "parameters": count_parameters(model), "vocab": len(tok), "rows": n_rows,
            "files": sorted(f.name for f in p["tiny"].iterdir()), "tokenizer_from": str(tok_dir)}
    return (f"tiny Llama h{cfg.model.hidden_size} l{cfg.model.num_layers}: {info['parameters']:,} parameters, "
            f"vocab {info['vocab']}; {n_rows} rows Parquet", info)


def _inproc(stage: str):
    def step(args, work: Path) -> tuple[str, dict]:
        import torch

        from act_pipeline.training.launch import run_job

        name = f"{stage}_inproc"
        job = job_for(work, stage, name, None)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        res = run_job(job, log=lambda m: print(m, flush=True))
        extra = {"peak_gpu_mem_mib": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}
        summary, info = summarize_training(res, job, work, args, extra)
        if stage == "act" and len(info.get("judgement_curve") or []) < 2:
            raise AssertionError(f"the judgement probe ran {len(info.get('judgement_curve') or [])} times, expected >= 2")
        return summary, info

    return step


def _launched(config_gpu: str, config_cpu: str, deepspeed: bool):
    def step(args, work: Path) -> tuple[str, dict]:
        from act_pipeline.files import write_json

        if deepspeed and importlib.util.find_spec("deepspeed") is None:
            raise Skip("deepspeed is not importable (carry the wheel scripts/gpu_wheels.sh builds)")
        conf = config_gpu if gpu_mode(args) else config_cpu
        name = "deepspeed_act" if deepspeed else "accelerate_act"
        job = job_for(work, "act", name, conf)
        job_path = work / f"{name}_job.json"
        write_json(job_path, job)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / conf),
               "--num_processes", "1", "--main_process_port", str(free_port()),
               "-m", "act_pipeline.assets.pipes_entry", str(job_path)]
        print("$ " + " ".join(cmd), flush=True)
        extra_env = {"OMP_NUM_THREADS": "1"} if args.cpu_dry_run else {}
        if deepspeed and gpu_mode(args):
            extra_env["DS_ACCELERATOR"] = "cuda"
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=child_env(extra_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - t0
        print(r.stdout, flush=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{") and '"global_step"' in ln]
        if r.returncode != 0 or not lines:
            tail = " | ".join(r.stdout.strip().splitlines()[-3:])
            raise AssertionError(f"accelerate launch exited {r.returncode}; {tail[-400:]}")
        res = json.loads(lines[-1])
        summary, info = summarize_training(res, job, work, args, {"launch_wall_s": wall, "config": conf})
        if deepspeed and (info["zero_stage"] != 3 or info["distributed_type"] != "DEEPSPEED"):
            raise AssertionError(f"expected DeepSpeed ZeRO-3, got {info['distributed_type']} zero {info['zero_stage']}")
        return f"{summary}; launch {wall:.0f}s wall", info

    return step


def step_sampler(args, work: Path) -> tuple[str, dict]:
    import torch

    from act_pipeline.act.prompts import State, agent_prompt
    from act_pipeline.config import load_config
    from act_pipeline.sampling.backends import make_sampler
    from act_pipeline.sampling.base import SamplingParams
    from act_pipeline.sampling.hf import TransformersSampler

    p = work_paths(work)
    cfg = load_config(p["profile"])
    sampler, tok = make_sampler(cfg, str(p["tiny"]), stop_strings=["</action>"])
    model = sampler.model
    rows = rows_for_check()
    prompts = [agent_prompt(tok, State.from_row(r), cfg.alfworld.history_len) for r in rows]
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=0)
    sampler.generate(prompts[:2], params)  # warm-up (CUDA context, kernels)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = sampler.generate(prompts, params)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    again = sampler.generate(prompts, params)
    # greedy, one per prompt: batched left-padded generate (the GPU default) vs each prompt encoded alone
    # and its cache left-padded (ragged_prefill, the CPU default); equal unless bf16 rounding differs
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=12, seed=0)
    g_default = sampler.generate(prompts, greedy)
    other = TransformersSampler(model, tok, batch_size=cfg.sampling.batch_size, stop_strings=["</action>"],
                                ragged_prefill=not sampler.ragged_prefill)
    g_other = other.generate(prompts, greedy)
    ok_shape = len(out) == len(prompts) and all(len(c) == params.n for c in out)
    info = {"device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""), "prompts": len(prompts),
            "n": params.n, "max_new_tokens": params.max_new_tokens, "seconds": secs,
            "completions_per_s": len(prompts) * params.n / secs, "shape_ok": ok_shape,
            "same_seed_same_samples": out == again, "greedy_ragged_prefill_agrees": g_default == g_other,
            "truncated": sum(c.truncated for cs in out for c in cs), "example": out[0][0][:80],
            "ragged_prefill": sampler.ragged_prefill}
    want = "cuda" if gpu_mode(args) else "cpu"
    if not ok_shape:
        raise AssertionError(f"expected {len(prompts)} x {params.n} completions")
    if model.device.type != want:
        raise AssertionError(f"sampler model on {model.device}, expected {want}")
    if gpu_mode(args) and model.dtype != torch.bfloat16:
        raise AssertionError(f"sampler model in {model.dtype}, expected bfloat16 (model.inference_dtype)")
    return (f"{len(prompts)} prompts x {params.n} on {info['device']} {info['dtype']} in {secs:.2f}s "
            f"({info['completions_per_s']:.0f} completions/s); same seed same samples {info['same_seed_same_samples']}; "
            f"greedy ragged-prefill == batched prefill {info['greedy_ragged_prefill_agrees']}", info)


def step_vllm(args, work: Path) -> tuple[str, dict]:
    import act_pipeline.sampling.vllm as vm  # the module itself never imports vllm

    from act_pipeline.config import load_config

    p = work_paths(work)
    info = {"module_imports_without_vllm": "vllm" not in sys.modules}
    if importlib.util.find_spec("vllm") is None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(p["tiny"]))
        try:
            vm.VLLMSampler(str(p["tiny"]), tok)
            info["missing_vllm_error"] = None
        except ImportError as e:
            info["missing_vllm_error"] = str(e)
        if not info["missing_vllm_error"] or "act-pipeline[gpu]" not in info["missing_vllm_error"]:
            raise AssertionError(f"VLLMSampler without vllm: expected the install hint, got {info['missing_vllm_error']!r}")
        info["reason"] = VLLM_NOTE
        raise Skip(f"{VLLM_NOTE}; act_pipeline.sampling.vllm imports without it and VLLMSampler says "
                   f"{info['missing_vllm_error']!r}", info)
    from act_pipeline.act.prompts import State, agent_prompt
    from act_pipeline.sampling.backends import make_sampler
    from act_pipeline.sampling.base import SamplingParams

    cfg = load_config(p["profile"])
    cfg.sampling.backend = "vllm"
    cfg.sampling.gpu_memory_utilization = 0.3
    sampler, tok = make_sampler(cfg, str(p["tiny"]), stop_strings=["</action>"])
    prompts = [agent_prompt(tok, State.from_row(r), cfg.alfworld.history_len) for r in rows_for_check()]
    t0 = time.perf_counter()
    out = sampler.generate(prompts, SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=0))
    secs = time.perf_counter() - t0
    info.update(seconds=secs, prompts=len(prompts), example=out[0][0][:80])
    if len(out) != len(prompts) or any(len(c) != 4 for c in out):
        raise AssertionError("wrong completion counts from vLLM")
    return f"vLLM {len(prompts)} prompts x 4 in {secs:.2f}s", info


STEP_FNS = {
    "env": step_env,
    "nccl": step_nccl,
    "prep": step_prep,
    "act_inproc": _inproc("act"),
    "il_inproc": _inproc("il"),
    "sampler": step_sampler,
    "accelerate_act": _launched("configs/accelerate/single_gpu.yaml", "configs/accelerate/cpu.yaml", False),
    "deepspeed_act": _launched("configs/accelerate/deepspeed_zero3.yaml", "configs/accelerate/deepspeed_zero3_cpu.yaml",
                               True),
    "rl_inproc": _inproc("rl"),
    "vllm": step_vllm,
}


def run_step_here(args) -> int:
    """Child process: run one step, write its result JSON."""
    work = Path(args.work)
    t0 = time.perf_counter()
    try:
        summary, info = STEP_FNS[args.step](args, work)
        status = "PASS"
    except Skip as e:
        status, summary = "SKIP", str(e.args[0])
        info = e.args[1] if len(e.args) > 1 else {}
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the others
        traceback.print_exc()
        status, summary, info = "FAIL", f"{type(e).__name__}: {e}"[:1500], {}
    Path(args.result).write_text(json.dumps({"status": status, "summary": summary, "info": info,
                                             "step_seconds": time.perf_counter() - t0}, default=str))
    return 0


# --------------------------------------------------------------------------- orchestrator


def run_all(args) -> int:
    out = Path(args.out or os.environ.get("OUT") or "/tmp/gpu_check_out")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or "/tmp/gpu_check_work")
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    logf = open(out / "gpu_check.log", "a", buffering=1)
    summary_path = out / "gpu_check.json"
    t_start = time.perf_counter()
    deadline = t_start + args.budget
    names = [s.strip() for s in args.steps.split(",")] if args.steps else list(STEPS)
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise SystemExit(f"unknown steps {unknown} (known: {', '.join(STEPS)})")
    if "prep" not in names and any(STEPS[n][1] for n in names):  # before the first step that needs it
        names.insert(next(i for i, n in enumerate(names) if STEPS[n][1]), "prep")
    report = {"mode": "cpu-dry-run" if args.cpu_dry_run else "gpu", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "host": socket.gethostname(), "budget_s": args.budget, "steps": {}}

    def say(line: str) -> None:
        print(line, flush=True)
        logf.write(line + "\n")

    def save() -> None:
        report["wall_s"] = time.perf_counter() - t_start
        report["totals"] = {s: sum(r["status"] == s for r in report["steps"].values()) for s in ("PASS", "FAIL", "SKIP")}
        summary_path.write_text(json.dumps(report, indent=2, default=str))

    say(f"=== gpu_check ({report['mode']}) {report['started']} budget {args.budget}s; steps: {', '.join(names)}")
    for name in names:
        timeout, needs_prep = STEPS[name]
        left = deadline - time.perf_counter()
        if needs_prep and report["steps"].get("prep", {}).get("status") != "PASS":
            rec = {"status": "SKIP", "summary": "prep did not pass", "seconds": 0.0}
        elif left < 20:
            rec = {"status": "SKIP", "summary": f"global budget ({args.budget}s) spent", "seconds": 0.0}
        else:
            limit = int(min(timeout, left - 5))
            res_path = work / f"_{name}.result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--work", str(work),
                   "--result", str(res_path)] + (["--cpu-dry-run"] if args.cpu_dry_run else [])
            logf.write(f"\n----- step {name} (timeout {limit}s): {' '.join(cmd)}\n")
            log_at = logf.tell()
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=child_env(), cwd=REPO,
                                    start_new_session=True)
            timed_out = False
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            else:  # the step's own children (accelerate, torchrun) go with it
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            secs = time.perf_counter() - t0
            if res_path.exists():
                rec = json.loads(res_path.read_text())
            else:
                rec = {"status": "FAIL", "summary": f"step process exited {rc} without a result", "info": {}}
            if timed_out:
                had = f" (it had reported {rec['status']}: {rec['summary'][:300]})" if res_path.exists() else ""
                rec = {"status": "FAIL", "summary": f"timed out after {limit}s{had}", "info": rec.get("info", {})}
            rec.update(seconds=secs, rc=rc, timeout_s=limit)
            if rec["status"] == "FAIL":  # the step's last lines, on the console too
                logf.flush()
                with open(out / "gpu_check.log", encoding="utf-8", errors="replace") as f:
                    f.seek(log_at)
                    tail = f.read().splitlines()[-25:]
                rec["log_tail"] = tail
                print("\n".join("    | " + ln for ln in tail), flush=True)
        report["steps"][name] = rec
        say(f"{rec['status']} {name} ({rec['seconds']:.1f}s): {rec['summary']}")
        save()
    save()
    t = report["totals"]
    say(f"=== gpu_check done in {report['wall_s']:.0f}s: {t['PASS']} PASS, {t['FAIL']} FAIL, {t['SKIP']} SKIP "
        f"-> {summary_path}")
    logf.close()
    return 1 if t["FAIL"] else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-dry-run", action="store_true", help="run the steps on the CPU (script logic only)")
    ap.add_argument("--steps", help=f"comma-separated subset of: {','.join(STEPS)}")
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for all steps together")
    ap.add_argument("--out", help="where gpu_check.json/.log go (default $OUT, else /tmp/gpu_check_out)")
    ap.add_argument("--work", help="scratch folder (default /tmp/gpu_check_work; emptied first)")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--nccl-worker", metavar="RESULT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nccl_worker:
        nccl_worker(args.nccl_worker, args.cpu_dry_run)
        return 0
    if args.step:
        return run_step_here(args)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
