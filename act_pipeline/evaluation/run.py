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
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from act_pipeline.act.pairs import MODEL_DRIVEN
from act_pipeline.config import SPEED_FIELDS, EvalConfig, ModelConfig
from act_pipeline.evaluation.metrics import (Metric, judgement_accuracy, next_action_accuracy, rollout_success,
                                             split_by_origin)

Log = Callable[[str], None]
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


@dataclass
class Rollouts:
    """Success rates from playing ``games_by_split`` (split → games) with an arm:
    ``rollouts(arm, sampler, tokenizer, thinking, new_tokens, log) -> (metrics, trace)``.
    ``open_envs(log=...)`` is a context manager giving ``make_env(gamefile)``; with a picklable
    ``open_envs`` (a module-level function or a ``functools.partial`` of one) the whole object
    pickles, so arms can be played in worker processes (``eval.arm_workers``). The trace
    shown in the report is the first episode of ``trace_split``."""
    games_by_split: Mapping[str, list[dict]]
    open_envs: Callable
    e: EvalConfig
    history_len: int
    retries: int
    trace_split: str

    def __call__(self, arm, sampler, tok, thinks, new_tokens, log: Log = print):
        e, ms, trace = self.e, [], []
        for split, gs in self.games_by_split.items():
            with self.open_envs(log=log) as make_env:
                m, eps = rollout_success(sampler, tok, gs, split, e.seed, e.max_steps, make_env, self.history_len,
                                         thinks, new_tokens, log=log, retries=self.retries,
                                         temperature=e.temperature, samples=e.samples)
            ms.append(m)
            if split == self.trace_split:
                trace = [{"game_id": ep.game_id, "won": ep.won, "trace": ep.trace} for ep in eps[:1]]
        return ms, trace


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
            {"model": manifest["hash"], "thinking": thinking, "items": h.hexdigest(),
             "eval": e.model_dump(exclude=set(SPEED_FIELDS["eval"])),
             "metrics": list(metrics), **({"new_tokens": new_tokens} if new_tokens is not None else {}),
             "code": self.code_version, **self.extra}, sort_keys=True, default=str).encode()).hexdigest()[:24]

    @contextlib.contextmanager
    def entry(self, key: str, wait: bool = True):
        """Hold the key's lock; yields (path, cached doc or None). ``wait=False``: yields None at once
        when another process holds the lock (it is scoring that key now)."""
        from act_pipeline.files import key_lock

        path = self.root / f"{key}.json"
        with key_lock(self.root, key, wait) as held:
            yield (path, json.loads(path.read_text()) if path.exists() else None) if held else None


def evaluate_arms(plan: list[tuple[str, dict, bool]], pairs: Mapping[str, list[dict]], states: list[dict],
                  heldout_split: str, history_len: int, model: ModelConfig, e: EvalConfig, benchmark: str,
                  rollouts: Rollouts | None = None, log: Log = print,
                  cache: EvalCache | None = None,
                  new_tokens: Mapping[str, int] | None = None) -> tuple[dict[str, list[Metric]], dict]:
    """Every arm of ``plan`` on the same items, decoded as ``eval.temperature`` / ``eval.samples``
    say. Returns (arm → metrics, arm → roll-out trace). With ``cache``, an arm scored before on
    the same items with the same settings and code is read back. ``new_tokens``: arm → its token
    budget for an action (its reasoning included), where it is not the eval section's.

    ``eval.arm_workers`` > 1: the arms are scored in that many spawned processes at once (each
    with this process's torch threads, its own model and its own game workers), their log lines
    passed on here. An arm's scores depend on the arm and the items alone, so they are those of one
    process (``tests/test_eval_arm_workers.py``). A script calling this with ``arm_workers`` > 1
    needs the ``if __name__ == "__main__":`` guard."""
    from concurrent.futures import FIRST_COMPLETED, Future, wait

    from act_pipeline.files import write_json

    budgets = dict(new_tokens or {})
    results, traces = {}, {}
    jobs: dict[Future, tuple[str, Path | None, contextlib.ExitStack]] = {}
    errors: list[BaseException] = []
    workers = min(e.arm_workers, len(plan))
    pool: _ArmPool | None = None  # started at the first arm to score (none when every arm is read back)

    def finish(futures) -> None:
        """Keep (and cache) each finished arm's scores; a failed arm's error is raised once the
        arms already running have finished and been kept."""
        for fut in futures:
            arm, path, held = jobs.pop(fut)
            with held:
                try:
                    results[arm], traces[arm] = fut.result()
                except Exception as err:  # noqa: BLE001 (raised below, after the others)
                    errors.append(err)
                    continue
                if path is not None:
                    write_json(path, {"metrics": [m.to_dict() for m in results[arm]], "trace": traces[arm]})

    def submit(i: int, path: Path | None, held: contextlib.ExitStack) -> None:
        nonlocal pool
        arm = plan[i - 1][0]
        args = (i, plan, pairs, states, heldout_split, history_len, model, e, benchmark, rollouts)
        if workers > 1:
            pool = pool or _ArmPool(workers, log)
            jobs[pool.submit(*args, budgets.get(arm))] = (arm, path, held)
            return
        fut: Future = Future()
        jobs[fut] = (arm, path, held)
        try:
            fut.set_result(_evaluate_arm(*args, log, budgets.get(arm)))
        except Exception as err:  # noqa: BLE001 (finish raises it)
            fut.set_exception(err)
        finish([fut])

    def start(i: int, arm: str, manifest: dict, thinks: bool, wait_lock: bool) -> bool:
        """Read the arm back or start scoring it (its cache entry held until it is written); False,
        doing nothing, when ``wait_lock`` is off and another process holds the arm's entry."""
        if cache is None or "hash" not in manifest:
            submit(i, None, contextlib.ExitStack())
            return True
        key = cache.key(manifest, thinks, pairs, states, e, arm_metrics(arm, e), budgets.get(arm))
        held = contextlib.ExitStack()
        entry = held.enter_context(cache.entry(key, wait=wait_lock))
        if entry is None:
            held.close()
            log(f"{benchmark}: arm {i}/{len(plan)} {arm}: another process is scoring it; the other arms first")
            return False
        path, doc = entry
        if doc is not None:
            held.close()
            log(f"{benchmark}: arm {i}/{len(plan)} {arm}: scored before on the same items ({path.name})")
            results[arm], traces[arm] = [Metric.from_dict(m) for m in doc["metrics"]], doc["trace"]
            return True
        submit(i, path, held)
        return True

    try:
        # an arm another process is scoring now (the base model, in another seed's evaluation) is left
        # for a second pass that waits for it and reads it back: no core idles on the lock meanwhile
        pending = list(enumerate(plan, 1))
        for wait_lock in (False, True):
            pending = [(i, p) for i, p in pending if not errors and not start(i, *p, wait_lock=wait_lock)]
            while jobs:
                done, _ = wait(list(jobs), timeout=1.0, return_when=FIRST_COMPLETED)
                pool.pass_logs()  # (jobs wait here only when they run in the pool)
                finish(done)
            if errors:
                raise errors[0]
    finally:
        for _, _, held in jobs.values():  # interrupted: release the entries still held, nothing written
            held.close()
        if pool is not None:
            pool.close()
    order = [arm for arm, _, _ in plan]  # the plan's order, whatever order they were scored in
    return ({a: results[a] for a in order}, {a: traces[a] for a in order if traces.get(a) is not None})


_ARM: dict = {}


def _init_arm_process(threads: int, queue) -> None:
    import torch

    from act_pipeline.machine import tune_malloc

    tune_malloc()
    torch.set_num_threads(threads)
    _ARM["queue"] = queue


def _evaluate_arm_in_process(i: int, plan, *args):
    arm = plan[i - 1][0]
    *args, budget = args
    return _evaluate_arm(i, plan, *args, lambda m: _ARM["queue"].put(f"[{arm}] {m}"), budget)


class _ArmPool:
    """``workers`` spawned processes scoring one arm each at a time; their log lines come back
    through a queue (:meth:`pass_logs`)."""

    def __init__(self, workers: int, log: Log):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        import torch

        ctx = multiprocessing.get_context("spawn")
        self.log, self.queue = log, ctx.Queue()
        self.ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_arm_process,
                                      initargs=(torch.get_num_threads(), self.queue))
        log(f"scoring the arms in {workers} processes at once (eval.arm_workers)")

    def submit(self, *args):
        return self.ex.submit(_evaluate_arm_in_process, *args)

    def pass_logs(self) -> None:
        import queue

        while True:
            try:
                self.log(self.queue.get_nowait())
            except queue.Empty:
                return

    def close(self) -> None:
        self.ex.shutdown(wait=True, cancel_futures=True)
        self.pass_logs()
        self.queue.close()


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
    mdl, tok = load_model(manifest["uri"], model.trust_remote_code, model.inference_dtype, inference_device(),
                          inference=True)
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
        more, trace = rollouts(arm, sampler, tok, thinks, new_tokens, log=log)
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


