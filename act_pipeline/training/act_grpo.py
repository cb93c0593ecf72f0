"""Stage 2, ACT: GRPO on the critic prompt with TRL's ``GRPOTrainer``.

The dataset's ``prompt`` is the chat-templated critic prompt ending in the pre-filled
``<answer>``; its ``expert_slot`` column reaches the reward function as a keyword argument.
The reward is the only supervision: no reasoning targets.
"""

from __future__ import annotations

from pathlib import Path

from act_pipeline.act.prompts import State, choice_token_ids, critic_prompt
from act_pipeline.act.rewards import make_judgement_reward
from act_pipeline.config import ACTConfig, TrainingConfig
from act_pipeline.training.common import (Log, checkpoint_args, labelled_positions_only, progress_callback,
                                          resume_saves, run_info, saved_dtype, train_and_save, trainer_extras, use_cpu)
from act_pipeline.models import effective_bf16, load_model


def critic_dataset(rows: list[dict], tokenizer, history_len: int, thinking: bool = False):
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": critic_prompt(tokenizer, State.from_row(r), r["action_1"], r["action_2"],
                                    history_len, thinking),
            "expert_slot": int(r["expert_slot"]),
            "action_1": r["action_1"],  # the reward maps an answer that names a candidate's text to its slot
            "action_2": r["action_2"],
        }
        for r in rows
    ])


def train_act(
    base_model: str,
    pairs: list[dict],
    out_dir: str | Path,
    cfg: ACTConfig,
    history_len: int = 3,
    thinking: bool = False,
    trust_remote_code: bool = False,
    log: Log = print,
    card: dict | None = None,
    work_dir: str | Path | None = None,
    training: TrainingConfig | None = None,
    heldout: list[dict] | None = None,
) -> dict:
    """Train the critic; write an HF folder (safetensors) to ``out_dir`` atomically.

    ``training`` (the profile's `training:` section) adds gradient checkpointing and TRL's vLLM
    generation (GPU only); None or its defaults leave the CPU run as it was."""
    if not pairs:
        raise ValueError("ACT needs at least one contrast pair")
    choice = cfg.answer == "choice"
    if choice and thinking:
        raise ValueError("act.answer: choice answers with one token and cannot think (model.thinking: false)")
    probes: list = []

    def callbacks(tok) -> list:
        if heldout and cfg.probe_every > 0:
            probes.append(judgement_probe(tok, heldout[: cfg.probe_pairs], history_len, thinking, cfg.probe_every,
                                          cfg.max_steps, cfg.seed, log, cfg.probe_max_new_tokens,
                                          "choice" if choice else "generate"))
        return probes

    res = train_grpo(base_model, lambda tok: critic_dataset(pairs, tok, history_len, thinking),
                     make_judgement_reward(cfg.unparsable_penalty, stop_token_ids(base_model, trust_remote_code),
                                           thinking, one_token_choice=choice), out_dir, cfg, trust_remote_code, log,
                     card, work_dir, training, "ACT GRPO", "pairs", callbacks,
                     restrict=choice_token_ids if choice else None)
    return {**res, "answer": cfg.answer, "judgement_curve": probes[0].curve if probes else []}


def restricted_generation(allowed: list[int], vocab_size: int, vllm: bool) -> dict:
    """TRL ``GRPOConfig.generation_kwargs`` that let a completion's tokens be only ``allowed``: vLLM's
    ``SamplingParams(allowed_token_ids=...)``, or transformers' ``GenerationConfig(suppress_tokens=...)``
    over the rest of the vocabulary (the logits' width). Sampling then draws from the model's own
    distribution renormalised over ``allowed``; the trainer's log-probabilities stay the full softmax's.

    >>> restricted_generation([1, 3], 5, vllm=False)
    {'suppress_tokens': [0, 2, 4]}
    >>> restricted_generation([1, 3], 5, vllm=True)
    {'allowed_token_ids': [1, 3]}
    """
    if vllm:
        return {"allowed_token_ids": list(allowed)}
    keep = set(allowed)
    return {"suppress_tokens": [i for i in range(vocab_size) if i not in keep]}


def train_grpo(init_model: str, make_dataset, reward_func, out_dir: str | Path, cfg, trust_remote_code: bool,
               log: Log, card: dict | None, work_dir: str | Path | None, training: TrainingConfig | None,
               what: str, unit: str, callbacks=lambda tok: [], restrict=None, shared_prompts: bool = True,
               compact_head: bool = True) -> dict:
    """TRL ``GRPOTrainer`` from ``init_model`` on ``make_dataset(tokenizer)`` (a ``prompt`` column plus
    the reward's columns) with ``reward_func``; ``cfg`` is a stage section (ACT or RL) with the GRPO
    fields. Resumes from ``work_dir``; writes the HF folder (safetensors) to ``out_dir`` atomically.

    ``restrict(tokenizer)`` (optional) gives the token ids a completion may be: each completion is
    then one token drawn from the model's distribution restricted to them (:func:`restricted_generation`),
    and the trainer runs each distinct prompt of a batch once in its training forward. In generation
    each distinct prompt is encoded once whatever the completions' length
    (:class:`SharedPromptGRPOTrainer`; ``shared_prompts=False``: TRL's trainer, which encodes each of
    a prompt's ``num_generations`` copies, and runs one forward per completion, for comparison).

    ``compact_head``: on a CPU TRL's fused LM head scores the completion's positions only, not the
    prompt's (:func:`~act_pipeline.training.common.labelled_positions_only`; False: every position,
    TRL's CPU default)."""
    from trl import GRPOConfig, GRPOTrainer

    from act_pipeline.training.grpo_shared import SharedPromptGRPOTrainer

    model, tok = load_model(init_model, trust_remote_code)
    ds = make_dataset(tok)
    generation: dict = {}
    completion_length = cfg.max_completion_length
    if restrict is not None:
        vocab = int(model.get_output_embeddings().weight.shape[0])
        generation = {"generation_kwargs": restricted_generation(restrict(tok), vocab, bool(vllm_args(training)))}
        completion_length = 1
    out_dir = Path(out_dir)
    # trainer checkpoints live in work_dir; pass the same one again to resume an interrupted run
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".trainer")
    args = GRPOConfig(
        **checkpoint_args(work, cfg.save_steps, cfg.save_every_s),
        **trainer_extras(training),
        **vllm_args(training),
        use_cpu=use_cpu(),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        num_generations=cfg.num_generations,
        max_completion_length=completion_length,
        **generation,
        temperature=cfg.temperature,
        beta=cfg.beta,
        seed=cfg.seed,
        bf16=effective_bf16(cfg.bf16, log),
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    progress = progress_callback(log, cfg.max_steps)
    trainer_cls = SharedPromptGRPOTrainer if shared_prompts else GRPOTrainer
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward_func,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[progress, resume_saves(cfg.save_every_s), *callbacks(tok)],
    )
    log(f"{what}: {len(ds)} {unit}, {cfg.max_steps} steps, {cfg.num_generations} generations/prompt from {init_model}")
    with labelled_positions_only(compact_head):
        result, resumed = train_and_save(trainer, tok, out_dir, work, progress, card, log, what,
                                         saved_dtype(init_model, trust_remote_code))
    rewards = [h["reward"] for h in progress.history if "reward" in h]
    return {
        "global_step": result.global_step,
        "resumed_from": resumed,
        "train_runtime_s": result.metrics.get("train_runtime"),
        unit: len(ds),
        "mean_reward_first": rewards[0] if rewards else None,
        "mean_reward_last": rewards[-1] if rewards else None,
        **learning_signal(progress.history),
        **run_info(trainer),
        "log_history": progress.history,
    }


def learning_signal(history: list[dict]) -> dict:
    """Whether GRPO had anything to learn from, from TRL's per-step logs: the mean share of groups
    whose rewards were all equal (``frac_reward_zero_std``: zero advantage, no gradient), the steps
    on which every group was so, and the share of completions cut at the token limit.

    >>> learning_signal([{"frac_reward_zero_std": 1.0, "completions/clipped_ratio": 0.5},
    ...                  {"frac_reward_zero_std": 0.5, "completions/clipped_ratio": 0.0}])
    {'frac_groups_equal_reward': 0.75, 'steps_all_groups_equal': 1, 'steps_logged': 2, 'truncated_share': 0.25}
    >>> learning_signal([])["frac_groups_equal_reward"] is None
    True
    """
    zero = [h["frac_reward_zero_std"] for h in history if isinstance(h.get("frac_reward_zero_std"), (int, float))]
    clipped = [h["completions/clipped_ratio"] for h in history
               if isinstance(h.get("completions/clipped_ratio"), (int, float))]
    return {"frac_groups_equal_reward": sum(zero) / len(zero) if zero else None,
            "steps_all_groups_equal": sum(z >= 1.0 for z in zero), "steps_logged": len(zero),
            "truncated_share": sum(clipped) / len(clipped) if clipped else None}


def stop_token_ids(model_path: str, trust_remote_code: bool = False) -> list[int]:
    """The ids that end a completion in TRL's ``GRPOTrainer`` (its ``eos_token_ids``: the generation
    config's EOS ids and the tokenizer's EOS, plus the pad id, as TRL's ``clipped_ratio`` counts
    them): a completion whose ids end otherwise hit ``max_completion_length``. The rewards use
    them to give a cut-off answer the malformed penalty."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except (OSError, ValueError):  # no generation_config.json: generate() derives it from the config
        eos = getattr(AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code), "eos_token_id", None)
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    # load_model sets pad = eos when the tokenizer has no pad token
    ids += [t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None]
    return sorted({int(t) for t in ids})


def vllm_args(training: TrainingConfig | None) -> dict:
    """TRL's GRPOConfig vLLM options from the profile (empty unless `training.vllm.use_vllm`).

    >>> from act_pipeline.config import TrainingConfig, VLLMTrainConfig
    >>> vllm_args(TrainingConfig())
    {}
    >>> sorted(vllm_args(TrainingConfig(vllm=VLLMTrainConfig(use_vllm=True))).items())
    [('use_vllm', True), ('vllm_gpu_memory_utilization', 0.3), ('vllm_mode', 'colocate'), ('vllm_tensor_parallel_size', 1)]
    >>> vllm_args(TrainingConfig(vllm=VLLMTrainConfig(use_vllm=True, mode="server", server_base_url="http://h:8000")))
    {'use_vllm': True, 'vllm_mode': 'server', 'vllm_server_base_url': 'http://h:8000'}
    """
    if training is None or not training.vllm.use_vllm:
        return {}
    v = training.vllm
    if v.mode == "colocate":
        return {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": v.gpu_memory_utilization,
                "vllm_tensor_parallel_size": v.tensor_parallel_size}
    args = {"use_vllm": True, "vllm_mode": "server"}
    if v.server_base_url:
        args["vllm_server_base_url"] = v.server_base_url
    return args


def judgement_probe(tokenizer, pairs: list[dict], history_len: int, thinking: bool, every: int, total: int,
                    seed: int, log: Log, max_new_tokens: int = 8, judgement: str = "generate"):
    """A TrainerCallback that measures judgement accuracy on held-out pairs (greedy, at most
    ``max_new_tokens``: room for a thinking model's reasoning; or, with ``judgement="choice"``, the
    more likely answer token) before training and every ``every`` steps: the curve of what ACT
    learns, kept in ``.curve``.

    It runs in every process of a distributed run (under ZeRO-3 generation needs all ranks; with
    plain data parallelism each rank holds the whole model) and the main process logs and keeps it."""
    from transformers import TrainerCallback

    from act_pipeline.evaluation.metrics import judgement_accuracy
    from act_pipeline.sampling.hf import TransformersSampler

    class _Probe(TrainerCallback):
        def __init__(self):
            self.curve: list[dict] = []
            self.main = True

        def _run(self, step: int, model) -> None:
            if model is None or getattr(model, "generate", None) is None:
                return
            was_training = model.training
            model.eval()
            sampler = TransformersSampler(model, tokenizer, 16, stop_strings=["</answer>"])
            split = pairs[0]["split"] if pairs else "held-out"  # the held-out split they come from (valid_unseen, ScienceWorld's test)
            m = judgement_accuracy(sampler, tokenizer, pairs, split, seed, history_len, thinking, max_new_tokens,
                                   judgement=judgement)
            if was_training:
                model.train()
            if not self.main:
                return
            origins = sorted({r.get("origin", "model") for r in pairs})
            self.curve.append({"step": step, "judgement_accuracy": m.value, "n": m.n, "split": m.split,
                               "seed": seed, "parsed": m.detail["parsed"], "origins": origins,
                               "truncation_rate": m.detail.get("truncation_rate"),
                               "expert_prob": m.detail.get("expert_prob")})
            log(f"probe at step {step}: judgement accuracy {m.value:.3f} on {m.n} held-out {split} pairs "
                f"({'/'.join(origins)})")

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.main = args.process_index == 0
            if state.global_step == 0:
                self._run(0, model)

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % every == 0 or state.global_step == total:
                self._run(state.global_step, model)

    return _Probe()
