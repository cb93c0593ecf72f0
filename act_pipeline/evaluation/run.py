"""The evaluation of every arm of a benchmark: which items, which arms, which metrics.

The plan (:func:`eval_plan`) is the paper's Table 1: the base model prompted without and with
thinking, then each trained checkpoint. Every arm is scored on the same held-out items
(:func:`heldout_items`): judgement accuracy on held-out pairs (model-driven alternatives as
``judgement_accuracy``, random fills apart as ``judgement_accuracy_random_fill``), next-action
accuracy on held-out expert states, and, where the benchmark plays games, success rates from
roll-outs (:func:`rollouts`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path

from act_pipeline.act.pairs import MODEL_DRIVEN
from act_pipeline.config import EvalConfig, ModelConfig
from act_pipeline.evaluation.metrics import (Metric, judgement_accuracy, next_action_accuracy, rollout_success,
                                             split_by_origin)

Log = Callable[[str], None]
# rollouts(arm, sampler, tokenizer, thinking, new_tokens) -> (metrics, trace)
Rollouts = Callable[..., tuple[list[Metric], list[dict]]]
# arms trained to reason before their action whatever the profile's thinking setting (Early Experience's
# reflection): their actions are asked for with the thinking prompt; as critics they answer as the profile says
REASONS_FIRST = ("early_experience",)


def eval_plan(model: ModelConfig, e: EvalConfig, base_model: dict, arms: Mapping[str, dict]) -> list[tuple[str, dict, bool]]:
    """(arm, checkpoint manifest, thinking) for every Table-1 arm: the base model prompted (the
    paper's "prompt w/o thinking" and, with ``eval.thinking_arm``, "prompt w/ thinking"), named by
    the thinking setting it really runs with, then each trained checkpoint with the profile's setting
    (an arm in :data:`REASONS_FIRST` always thinks).

    >>> from act_pipeline.config import EvalConfig, ModelConfig
    >>> [(a, t) for a, _, t in eval_plan(ModelConfig(), EvalConfig(), {"uri": "b"}, {"act_checkpoint": {"uri": "c"},
    ...                                                                              "early_experience": {"uri": "d"}})]
    [('prompt_no_thinking', False), ('prompt_thinking', True), ('act_checkpoint', False), ('early_experience', True)]
    """
    th = model.thinking
    settings = [th, not th] if e.thinking_arm else [th]
    plan = [("prompt_thinking" if t else "prompt_no_thinking", base_model, t) for t in sorted(settings)]
    return plan + [(a, m, th or a in REASONS_FIRST) for a, m in arms.items()]


def heldout_items(pair_rows: list[dict], state_rows: list[dict], heldout_split: str,
                  e: EvalConfig) -> tuple[dict[str, list[dict]], list[dict]]:
    """The held-out pairs (``eval.heldout_pairs`` of the model-driven ones, and as many random
    fills, each a seeded sample) and the held-out expert states of won games (``eval.heldout_states``)."""
    rng = random.Random(e.seed)
    heldout = [r for r in pair_rows if r["split"] == heldout_split]
    pairs = {}
    for group, rows in (("model_driven", [r for r in heldout if r["origin"] in MODEL_DRIVEN]),
                        ("random_fill", [r for r in heldout if r["origin"] not in MODEL_DRIVEN])):
        pairs[group] = rng.sample(rows, min(e.heldout_pairs, len(rows)))
    states = [r for r in state_rows if r["split"] == heldout_split and r["won"]]
    return pairs, rng.sample(states, min(e.heldout_states, len(states)))


def rollouts(games_by_split: Mapping[str, list[dict]], open_envs, e: EvalConfig, history_len: int, retries: int,
             trace_split: str, log: Log = print) -> Rollouts:
    """Success rates from playing ``games_by_split`` (split → games) with each arm;
    ``open_envs()`` is a context manager giving ``make_env(gamefile)``. The trace shown in the
    report is the first episode of ``trace_split``."""

    def play(arm, sampler, tok, thinks, new_tokens):
        ms, trace = [], []
        for split, gs in games_by_split.items():
            with open_envs() as make_env:
                m, eps = rollout_success(sampler, tok, gs, split, e.seed, e.max_steps, make_env, history_len, thinks,
                                         new_tokens, log=log, retries=retries, temperature=e.temperature,
                                         samples=e.samples)
            ms.append(m)
            if split == trace_split:
                trace = [{"game_id": ep.game_id, "won": ep.won, "trace": ep.trace} for ep in eps[:1]]
        return ms, trace

    return play


class EvalCache:
    """An arm's metrics and trace, kept under ``root`` by what defines them: the checkpoint's
    content hash, the thinking setting, the items (ids, in order), the eval settings and the
    evaluation's code version. The base model, scored in every training seed's evaluation, is
    scored once; a second process asking for the same key waits for the first (a file lock), after
    scoring its other arms (``entry(key, wait=False)``)."""

    def __init__(self, root: Path, code_version: str | None, extra: dict | None = None):
        # extra: whatever else defines the scores (e.g. the hashes of the games played)
        self.root, self.code_version, self.extra = Path(root), code_version, extra or {}

    def key(self, manifest: dict, thinking: bool, pairs: Mapping[str, list[dict]], states: list[dict],
            e: EvalConfig, metrics: tuple[str, ...] = (), new_tokens: int | None = None) -> str:
        import hashlib

        h = hashlib.sha256()  # the items as they are scored (a pair's slot order included)
        for rows in (*pairs.values(), states):
            h.update(json.dumps(rows, sort_keys=True, default=str).encode())
        return hashlib.sha256(json.dumps(
            {"model": manifest["hash"], "thinking": thinking, "items": h.hexdigest(), "eval": e.model_dump(),
             "metrics": list(metrics), **({"new_tokens": new_tokens} if new_tokens is not None else {}),
             "code": self.code_version, **self.extra}, sort_keys=True, default=str).encode()).hexdigest()[:24]

    @contextlib.contextmanager
    def entry(self, key: str, wait: bool = True):
        """Hold the key's lock; yields (path, cached doc or None). ``wait=False``: yields None at once
        when another process holds the lock (it is scoring that key now)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{key}.json"
        with open(self.root / f"{key}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield None
                return
            try:
                yield path, (json.loads(path.read_text()) if path.exists() else None)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def evaluate_arms(plan: list[tuple[str, dict, bool]], pairs: Mapping[str, list[dict]], states: list[dict],
                  heldout_split: str, history_len: int, model: ModelConfig, e: EvalConfig, benchmark: str,
                  rollouts: Rollouts | None = None, log: Log = print,
                  cache: EvalCache | None = None,
                  new_tokens: Mapping[str, int] | None = None) -> tuple[dict[str, list[Metric]], dict]:
    """Every arm of ``plan`` on the same items, decoded as ``eval.temperature`` / ``eval.samples``
    say. Returns (arm → metrics, arm → roll-out trace). With ``cache``, an arm scored before on
    the same items with the same settings and code is read back. ``new_tokens``: arm → its token
    budget for an action (its reasoning included), where it is not the eval section's."""
    budgets = dict(new_tokens or {})
    from act_pipeline.files import write_json

    results, traces = {}, {}

    def score(i: int, arm: str, manifest: dict, thinks: bool, wait: bool) -> bool:
        """Score (or read back) one arm; False, doing nothing, when ``wait`` is off and another
        process holds the arm's cache entry."""
        trace = None
        if cache is None or "hash" not in manifest:
            results[arm], trace = _evaluate_arm(i, plan, pairs, states, heldout_split, history_len, model, e,
                                                benchmark, rollouts, log, budgets.get(arm))
        else:
            key = cache.key(manifest, thinks, pairs, states, e, arm_metrics(arm, e), budgets.get(arm))
            with cache.entry(key, wait=wait) as held:
                if held is None:
                    log(f"{benchmark}: arm {i}/{len(plan)} {arm}: another process is scoring it; the other arms first")
                    return False
                path, doc = held
                if doc is not None:
                    log(f"{benchmark}: arm {i}/{len(plan)} {arm}: scored before on the same items ({path.name})")
                    results[arm], trace = [Metric.from_dict(m) for m in doc["metrics"]], doc["trace"]
                else:
                    results[arm], trace = _evaluate_arm(i, plan, pairs, states, heldout_split, history_len, model, e,
                                                        benchmark, rollouts, log, budgets.get(arm))
                    write_json(path, {"metrics": [m.to_dict() for m in results[arm]], "trace": trace})
        if trace is not None:
            traces[arm] = trace
        return True

    # an arm another process is scoring now (the base model, in another seed's evaluation) is left
    # for a second pass that waits for it and reads it back: no core idles on the lock meanwhile
    pending = list(enumerate(plan, 1))
    for wait in (False, True):
        pending = [(i, p) for i, p in pending if not score(i, *p, wait=wait)]
    order = [arm for arm, _, _ in plan]  # the plan's order, whatever order they were scored in
    return ({a: results[a] for a in order}, {a: traces[a] for a in order if a in traces})


PROMPTED = ("prompt_no_thinking", "prompt_thinking")


def arm_metrics(arm: str, e: EvalConfig) -> tuple[str, ...]:
    """The metrics an arm is scored on (``eval.metrics``).

    >>> from act_pipeline.config import EvalConfig
    >>> arm_metrics("il_policy", EvalConfig()), arm_metrics("il_policy", EvalConfig(metrics="paired"))
    (('judgement', 'next_action'), ('next_action',))
    >>> arm_metrics("act_checkpoint", EvalConfig(metrics="paired")), arm_metrics("prompt_no_thinking", EvalConfig(metrics="paired"))
    (('judgement',), ('judgement', 'next_action'))
    """
    if e.metrics == "all" or arm in PROMPTED:
        return ("judgement", "next_action")
    return ("judgement",) if arm == "act_checkpoint" else ("next_action",)


def _evaluate_arm(i: int, plan, pairs, states, heldout_split, history_len, model, e, benchmark, rollouts, log,
                  budget: int | None = None):
    from act_pipeline.models import inference_device, load_model
    from act_pipeline.sampling.hf import TransformersSampler

    arm, manifest, thinks = plan[i - 1]
    decoding = {"temperature": e.temperature, "samples": e.samples}
    trace = None
    log(f"{benchmark}: evaluating arm {i}/{len(plan)} {arm} ({manifest['uri']}{', thinking' if thinks else ''})")
    mdl, tok = load_model(manifest["uri"], model.trust_remote_code, model.inference_dtype, inference_device())
    stops = TransformersSampler(mdl, tok, e.batch_size, stop_strings=["</answer>"])
    sampler = TransformersSampler(mdl, tok, e.batch_size, stop_strings=["</action>"])
    new_tokens = budget or (e.thinking_max_new_tokens if thinks else e.max_new_tokens)
    # an arm that reasons first only for its actions judges as the profile says
    judge_thinks = model.thinking if arm in REASONS_FIRST else thinks
    judge_tokens = e.thinking_max_new_tokens if judge_thinks else 8
    what = arm_metrics(arm, e)
    ms = []
    for name, group in (("judgement_accuracy", pairs["model_driven"]),
                        ("judgement_accuracy_random_fill", pairs["random_fill"])):
        if "judgement" in what and (group or name == "judgement_accuracy"):
            m = judgement_accuracy(stops, tok, group, heldout_split, e.seed, history_len, judge_thinks, judge_tokens,
                                   **decoding, judgement=e.judgement)
            m.name = name
            m.detail["thinking"] = judge_thinks
            m.detail["by_origin"] = split_by_origin(m, group)
            ms.append(m)
    if "next_action" in what:
        ms.append(next_action_accuracy(sampler, tok, states, heldout_split, e.seed, history_len, thinks, new_tokens,
                                       **decoding))
    if rollouts:
        more, trace = rollouts(arm, sampler, tok, thinks, new_tokens)
        ms += more
    for m in ms:
        m.detail.setdefault("thinking", thinks)
    log(f"{benchmark} {arm}: " + ", ".join(f"{m.name}[{m.split}]={m.value:.3f} (N={m.n})" for m in ms))
    return ms, trace


def method_meta(cfg, origins: dict | None, arms: Mapping[str, dict]) -> dict:
    """What the report's footnotes say about the method: pair origins, decoding, learning signal."""
    e = cfg.eval
    return {"pair_origins": origins, "sampling_policy": cfg.sampling.policy,
            "judgement": e.judgement, "act_answer": cfg.act.answer,
            "decoding": {"temperature": e.temperature, "samples": e.samples, "max_new_tokens": e.max_new_tokens,
                         "thinking_max_new_tokens": e.thinking_max_new_tokens},
            "thinking": cfg.model.thinking,
            "learning_signal": {a: m["learning_signal"] for a, m in arms.items() if m.get("learning_signal")}}


