"""Constrained alternatives: pi_0's own distribution restricted to the admissible actions.

A small model sampled freely at T = 1 almost never names an admissible action (SmolLM2-135M: 1 of
368 kept alternatives was its own, the rest random fills), so ACT would learn "expert vs a random
action" instead of "expert vs the model's own plausible mistake". Here every admissible action
``a`` of a state is scored by pi_0's log-likelihood of the text ``a</action>`` right after the
agent prompt (which ends with the pre-filled ``<action>``), as the mean token log-likelihood
(length-normalised). The summed log-likelihood, log pi_0(a | prompt), is available with
``reduce="sum"``; at 135M it puts most of the mass on the shortest actions (``look``) and ranks the
expert's action at chance, where the mean ranks it first 27.5 % of the time (chance 4 %); but the
mean's softmax is nearly flat, so the draws use a temperature of their own,
``sampling.constrained_temperature`` (docs/evidence/constrained_alternatives.md). The prompt is encoded
once per state (``use_cache=True``) and all candidates are scored in one forward over their token
tree after that KV cache (a token that candidates begin with alike encoded once, a 4-D mask, the
LM head only where a next token is scored; :func:`score_continuations`).

K alternatives are then drawn without replacement with probabilities proportional to
``p ** (1 / T)``, where ``p`` is the softmax of the scores over the admissible actions (``T`` =
``sampling.constrained_temperature``, else ``sampling.temperature``; ``T <= 0`` takes the top-scored ones), the expert's action excluded,
seeded per state (an exponential race, the Gumbel-top-k trick: drawing the k smallest of
``log E_i - s_i / T`` with ``E_i ~ Exp(1)`` is sequential sampling without replacement).

Scoring always uses the non-thinking agent prompt: the candidate is the answer itself, not
reasoning before it. Nothing here imports dagster.

On a CPU the scoring can be spread over processes (:class:`ScoringProcesses`, ``sampling.workers``):
each spawned process loads the model from the same folder in the same dtype, with one torch thread,
and scores a share of the states. A state's scores depend on that state alone, computed the same
way in any process, so they are bit-identical to scoring in one process (with one torch thread).
"""

from __future__ import annotations

import copy
import inspect
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from act_pipeline.envs.actions import normalize_action
from act_pipeline.act.prompts import State, agent_prompt

ORIGIN = "model_constrained"
# what a score is: part of the score cache's key (change it when the definition changes)
SCORER_ID = "mean-token-loglik(action</action>)|agent-prompt(thinking=False)|v1"


def continuation(action: str) -> str:
    """The text whose likelihood scores an admissible action (the prompt pre-fills ``<action>``)."""
    return f"{action}</action>"


def scoring_prompt(tokenizer, state: dict, history_len: int = 3) -> str:
    """The agent prompt of a state row (trajectory schema), without thinking: it ends with ``<action>``."""
    return agent_prompt(tokenizer, State.from_row(state), history_len, thinking=False)


def model_of(sampler):
    """The transformers model behind a sampler (``TransformersSampler.model``), or a clear error."""
    model = getattr(sampler, "model", None)
    if model is None or not callable(model):
        raise ValueError(
            f"the constrained sampling policies score the admissible actions with a transformers model; "
            f"the {getattr(sampler, 'name', type(sampler).__name__)} sampler has none "
            f"(use sampling.backend: transformers, or sampling.policy: free / free+random_fill)")
    return model


def _cache_kwarg(model) -> str:
    # transformers renamed `past_key_values` to `cache` (5.x); use whichever this one takes
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def score_continuations(model, tokenizer, prompt: str, candidates: Sequence[str],
                        batch_size: int = 64, reduce: str = "mean", tree: bool = True) -> list:
    """Log-likelihood of each candidate text right after ``prompt`` (its tokens as the prompt's own
    tokenization followed by the candidate's, ``add_special_tokens=False``): summed over its tokens
    (``reduce="sum"``, log pi_0(candidate | prompt)), their mean (``"mean"``), or both as
    ``(sum, mean)`` tuples (``"both"``).

    One prefill of the prompt (all but its last token) with ``use_cache=True``; then the
    candidates, ``batch_size`` at a time, each sequence being [last prompt token] + its tokens.
    With ``tree`` (the default) a chunk is one forward over its token tree (:func:`token_tree`):
    a token shared by candidates that begin alike (``go to drawer 1`` / ``go to drawer 2``) is
    encoded once, every node attending the prompt's cache and its own ancestors (a 4-D mask), at
    the position its depth gives, and the LM head runs only on the nodes whose next token is
    scored; nothing is padded and the prompt's cache is not copied per candidate (where the
    model's attention takes the mask as given, :func:`tree_masks_apply`). Without ``tree``: a
    right-padded batch over copies of the prompt's cache, the LM head at every position (the way
    before; the benchmarks' comparison). Both equal a full forward pass per candidate to
    float rounding (tests/test_constrained.py). Log-probabilities are taken in float32 whatever the
    model's dtype.
    """
    import torch
    from transformers import DynamicCache

    if not candidates:
        return []
    device = model.device
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("empty prompt: nothing to condition the candidates on")
    conts = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in candidates]
    if any(not c for c in conts):
        raise ValueError("a candidate tokenizes to nothing")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    key = _cache_kwarg(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            past = len(ids) - 1
            prefix = None
            if past:
                prefix = DynamicCache(config=model.config)
                model(input_ids=torch.tensor([ids[:-1]], device=device), use_cache=True, logits_to_keep=1,
                      **{key: prefix})
            score = _score_tree if tree and tree_masks_apply(model) else _score_padded
            pairs: list[tuple[float, float]] = []
            for start in range(0, len(conts), max(1, batch_size)):
                chunk = conts[start:start + max(1, batch_size)]
                pairs += score(model, key, prefix, past, ids[-1], chunk, pad)
            pick = {"sum": lambda sm, mn: sm, "mean": lambda sm, mn: mn, "both": lambda sm, mn: (sm, mn)}[reduce]
            scores = [pick(sm, mn) for sm, mn in pairs]
    finally:
        if was_training:
            model.train()
    return scores


def tree_masks_apply(model) -> bool:
    """Whether the token tree's 4-D mask is what the model's attention uses as given: sdpa or eager
    attention (flash-attention kernels take no custom mask), every layer full attention (a sliding
    window would not be applied to a custom mask).

    >>> from types import SimpleNamespace as NS
    >>> [tree_masks_apply(NS(config=NS(**c))) for c in ({"_attn_implementation": "sdpa"},
    ...  {"_attn_implementation": "flash_attention_2"}, {"layer_types": ["full_attention", "sliding_attention"]},
    ...  {"sliding_window": 4096}, {"sliding_window": 4096, "use_sliding_window": False})]
    [True, False, False, False, True]
    """
    cfg = model.config
    full = all(t == "full_attention" for t in (getattr(cfg, "layer_types", None) or ["full_attention"]))
    window = getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True)
    return getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager") and full and not window


def token_tree(seqs: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """The prefix tree of token sequences: (token, parent, depth) of each node, parents before their
    children, and each sequence's path of node indices; a parent of -1 is a root.

    >>> tokens, parent, depth, paths = token_tree([[7, 1, 2], [7, 1, 3], [7, 4]])
    >>> tokens, parent, depth
    ([7, 1, 2, 3, 4], [-1, 0, 1, 1, 0], [0, 1, 2, 2, 1])
    >>> paths
    [[0, 1, 2], [0, 1, 3], [0, 4]]
    """
    tokens: list[int] = []
    parent: list[int] = []
    depth: list[int] = []
    child: dict[tuple[int, int], int] = {}
    paths = []
    for seq in seqs:
        at, path = -1, []
        for t in seq:
            node = child.get((at, int(t)))
            if node is None:
                node = child[(at, int(t))] = len(tokens)
                tokens.append(int(t))
                parent.append(at)
                depth.append(depth[at] + 1 if at >= 0 else 0)
            path.append(node)
            at = node
        paths.append(path)
    return tokens, parent, depth, paths


def _score_tree(model, key: str, prefix, past: int, last: int, chunk: list[list[int]], pad: int):
    """(sum, mean) log-likelihood of each candidate of ``chunk`` after the cached prompt: one forward
    over the token tree of [last prompt token] + each candidate."""
    import torch

    device = model.device
    tokens, parent, depth, paths = token_tree([[last] + c for c in chunk])
    n = len(tokens)
    seen = torch.zeros((n, n), dtype=torch.bool)  # node i attends node j: j is i or one of its ancestors
    for i, p in enumerate(parent):
        if p >= 0:
            seen[i] = seen[p]
        seen[i, i] = True
    seen = torch.cat([torch.ones((n, past), dtype=torch.bool), seen], dim=1)
    dtype = model.dtype if model.dtype.is_floating_point else torch.float32
    mask = torch.zeros(seen.shape, dtype=dtype).masked_fill_(~seen, torch.finfo(dtype).min)
    scored = sorted({p for path in paths for p in path[:-1]})  # the nodes whose next token is scored
    row = {node: r for r, node in enumerate(scored)}
    kwargs = {key: copy.deepcopy(prefix)} if prefix is not None else {}  # the forward appends to it
    logits = model(input_ids=torch.tensor([tokens], device=device), attention_mask=mask[None, None].to(device),
                   position_ids=torch.tensor([[past + d for d in depth]], device=device), use_cache=prefix is not None,
                   logits_to_keep=torch.tensor(scored, device=device), **kwargs).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    out = []
    for c, path in zip(chunk, paths):
        rows = torch.tensor([row[p] for p in path[:-1]], device=device)
        sm = float(logp[rows, torch.tensor(c, device=device)].sum())
        out.append((sm, sm / len(c)))
    return out


def _score_padded(model, key: str, prefix, past: int, last: int, chunk: list[list[int]], pad: int):
    """(sum, mean) log-likelihood of each candidate of ``chunk``: a right-padded batch over copies of
    the prompt's cache, the LM head at every position (``score_continuations(tree=False)``)."""
    import torch

    device = model.device
    n, width = len(chunk), max(len(c) for c in chunk) + 1
    inp = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, c in enumerate(chunk):
        inp[r, :len(c) + 1] = torch.tensor([last] + c)
        mask[r, :len(c) + 1] = 1
    kwargs = {}
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(n)
        kwargs[key] = cache
        mask = torch.cat([torch.ones((n, past), dtype=torch.long), mask], dim=1)
    pos = torch.arange(past, past + width).unsqueeze(0).expand(n, -1)
    logits = model(input_ids=inp.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                   use_cache=prefix is not None, **kwargs).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # position t predicts token t + 1
    target = inp[:, 1:].to(device)
    tok_lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    valid = mask[:, -width + 1:].to(device).bool()  # the candidate's own tokens
    sums = (tok_lp * valid).sum(-1)
    means = sums / valid.sum(-1)
    return [(float(sm), float(mn)) for sm, mn in zip(sums.cpu().tolist(), means.cpu().tolist())]


def score_admissible(model, tokenizer, states: Sequence[dict], history_len: int = 3, batch_size: int = 64,
                     progress: Callable[[int, int], None] | None = None, reduce: str = "mean") -> dict[str, list]:
    """``state_id`` -> the score (log-likelihood of ``action</action>`` after the state's agent prompt,
    ``reduce`` as in :func:`score_continuations`) of each of its admissible actions, in
    ``state["admissible"]`` order."""
    if reduce not in ("sum", "mean", "both"):
        raise ValueError(f"reduce must be sum, mean or both, got {reduce!r}")
    out: dict[str, list] = {}
    for i, s in enumerate(states):
        out[s["state_id"]] = score_continuations(
            model, tokenizer, scoring_prompt(tokenizer, s, history_len),
            [continuation(a) for a in s["admissible"]], batch_size, reduce)
        if progress:
            progress(i + 1, len(states))
    return out


@dataclass(frozen=True)
class ScoringProcesses:
    """Score in ``workers`` spawned processes, each loading the model at ``model_path`` (as
    :func:`act_pipeline.models.load_model` does: ``dtype``, ``trust_remote_code``, on the CPU)
    with ``threads`` torch threads; they take ``share`` states at a time."""
    model_path: str
    dtype: str = "float32"
    trust_remote_code: bool = False
    workers: int = 2
    threads: int = 1
    share: int = 8


_WORKER: dict = {}  # in a scoring process: its model and tokenizer


def _init_scoring_process(model_path: str, dtype: str, trust_remote_code: bool, threads: int) -> None:
    import torch

    from act_pipeline.machine import tune_malloc
    from act_pipeline.models import load_model

    tune_malloc()
    torch.set_num_threads(threads)
    _WORKER["model"], _WORKER["tokenizer"] = load_model(model_path, trust_remote_code, dtype, inference=True)


def _score_share(states: list[dict], history_len: int, batch_size: int, reduce: str) -> dict[str, list]:
    return score_admissible(_WORKER["model"], _WORKER["tokenizer"], states, history_len, batch_size, None, reduce)


def score_admissible_in_processes(procs: ScoringProcesses, states: Sequence[dict], history_len: int = 3,
                                  batch_size: int = 64, progress: Callable[[int, int], None] | None = None,
                                  reduce: str = "mean") -> dict[str, list]:
    """:func:`score_admissible` with the states split over ``procs.workers`` spawned processes, in
    shares of at most ``procs.share`` states (the processes take the next share when they finish one;
    ``progress`` as shares come back). The same scores as :func:`score_admissible` in one process.
    The processes are spawned: a script calling this needs the ``if __name__ == "__main__":``
    guard (Dagster's and pytest's entry points have it)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    import multiprocessing

    if reduce not in ("sum", "mean", "both"):
        raise ValueError(f"reduce must be sum, mean or both, got {reduce!r}")
    states = list(states)
    if not states:
        return {}
    workers = max(1, min(procs.workers, len(states)))
    size = max(1, min(procs.share, math.ceil(len(states) / workers)))
    shares = [states[i:i + size] for i in range(0, len(states), size)]
    out: dict[str, list] = {}
    ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_scoring_process,
                             initargs=(procs.model_path, procs.dtype, procs.trust_remote_code, procs.threads))
    try:
        pending = {ex.submit(_score_share, sh, history_len, batch_size, reduce) for sh in shares}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                out.update(f.result())
            if progress:
                progress(len(out), len(states))
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    return {s["state_id"]: out[s["state_id"]] for s in states}


def restricted_distribution(scores: Sequence[float], temperature: float = 1.0) -> list[float]:
    """``p ** (1 / T)`` normalised, where ``p`` = softmax(scores): i.e. softmax(scores / T).

    >>> [round(x, 3) for x in restricted_distribution([0.0, math.log(3.0)])]
    [0.25, 0.75]
    >>> restricted_distribution([0.0, 1.0], 0.0)
    [0.0, 1.0]
    """
    if not scores:
        return []
    if temperature <= 0:
        best = max(scores)
        top = [float(s == best) for s in scores]
        return [t / sum(top) for t in top]
    z = [s / temperature for s in scores]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def draw_constrained(state: dict, scores: Sequence[float], k: int, temperature: float, seed: int,
                     exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
    """Up to ``k`` admissible actions of ``state`` (``state_id``, ``admissible``, ``expert_action``),
    drawn without replacement with probability proportional to ``exp(score / T)`` (= ``p ** (1/T)``),
    never the expert's action nor one in ``exclude`` (after normalisation), each action once.
    Returns (action in the environment's spelling, its score), in draw order. Seeded by
    ``(seed, state_id)``: the same state draws the same actions whatever else is sampled.

    >>> s = {"state_id": "s", "admissible": ["a", "b", "c", "d"], "expert_action": "a"}
    >>> [a for a, _ in draw_constrained(s, [0.0, -1.0, -5.0, -0.5], 2, 0.0, 0)]
    ['d', 'b']
    """
    actions = list(state["admissible"])
    if len(scores) != len(actions):
        raise ValueError(f"state {state['state_id']}: {len(scores)} scores for {len(actions)} admissible actions")
    taken = {normalize_action(state["expert_action"])} | {normalize_action(a) for a in exclude}
    pool: list[tuple[str, float]] = []
    for a, s in zip(actions, scores):
        n = normalize_action(a)
        if n not in taken:
            taken.add(n)  # one entry per normalised action
            pool.append((a, float(s)))
    if k <= 0 or not pool:
        return []
    if temperature <= 0:
        order = sorted(range(len(pool)), key=lambda i: -pool[i][1])
    else:
        rng = random.Random(f"{seed}|{state['state_id']}")
        keys = [math.log(max(rng.expovariate(1.0), 1e-300)) - s / temperature for _, s in pool]
        order = sorted(range(len(pool)), key=lambda i: keys[i])
    return [pool[i] for i in order[:k]]
