"""Reasoning transfer (the paper's Table 2): MATH-500 and GPQA-Diamond accuracy of a checkpoint.

The sets come from the profile's ``transfer`` section: a JSONL or Parquet file (a relative path is
inside the data root), or ``hf:<repo id>`` loaded with the ``datasets`` library where a hub is
reachable. The columns follow the public Hugging Face sets:

* **MATH-500** (``HuggingFaceH4/MATH-500``, split ``test``): ``problem`` and ``answer`` (LaTeX)
  required, non-empty strings; ``unique_id`` (string, unique; else the line number), ``subject``
  (string) and ``level`` (integer) optional; other columns (``solution``) are ignored.
* **GPQA-Diamond** (``Idavidrein/gpqa``, config ``gpqa_diamond``, split ``train``): ``Question``,
  ``Correct Answer``, ``Incorrect Answer 1``, ``Incorrect Answer 2``, ``Incorrect Answer 3``
  required, non-empty strings; ``Record ID`` (string, unique; else a hash of the question) and
  ``High-level domain`` (string) optional; other columns are ignored.

A bad row is a one-line :class:`TransferDataError` naming the file, the line (in a Parquet file or
a hub set: the row, 1-based) and the field; a set the profile names that is not there is a
:class:`~act_pipeline.config.ConfigError` naming the setting (``transfer.math500``).

Scoring. A prompt goes through the model's chat template (:func:`act_pipeline.act.prompts.render`;
with thinking, ``<think>`` pre-filled and ``enable_thinking`` passed). The answer is the text after
the reasoning: a ``<think>`` block must be closed, and a completion cut by the token limit has no
answer (the rules of :mod:`act_pipeline.act.parsing`). MATH: the answer must hold a ``\\boxed{}``;
it is read with math-verify's ``parse`` and compared with the gold answer by its ``verify``
(equivalent forms count: ``1/2``, ``0.5``, ``\\frac{1}{2}``). GPQA: the four options are shuffled
by a permutation seeded by (run seed, question id), labelled A–D, and the answer's last non-empty
line must be ``Answer: <letter>`` (bold and a parenthesised letter tolerated, nothing else).

Each set is scored ``runs`` times (run r: seed ``seed + r``) at the profile's temperature; the
:class:`~act_pipeline.evaluation.metrics.Metric` holds the mean over runs as its value, every
run's accuracy and their standard deviation in its detail, and per item the share of runs it was
right. Greedy decoding gives the same MATH completions in every run (they are generated once);
GPQA's runs still differ by their option order.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import statistics
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from act_pipeline.act.parsing import _THINK_CLOSE, _THINK_OPEN
from act_pipeline.act.prompts import render
from act_pipeline.config import ConfigError, EvalConfig, ModelConfig, TransferConfig
from act_pipeline.evaluation.metrics import Metric
from act_pipeline.files import (MAX_LINE_BYTES, InputError, PathEscapeError, parse_json, read_lines, safe_join,
                                sha256_json, shown, where)
from act_pipeline.sampling.base import Sampler, SamplingParams, is_truncated

Log = Callable[[str], None]

MATH500, GPQA = "math500", "gpqa_diamond"
SETS = (MATH500, GPQA)
TITLES = {MATH500: "MATH-500", GPQA: "GPQA-Diamond"}
# set -> (the datasets config, split) of its public Hugging Face copy
HUB = {MATH500: (None, "test"), GPQA: ("gpqa_diamond", "train")}
FORMATS = (".jsonl", ".parquet")
MAX_SET_BYTES = 256 << 20  # a Parquet file (MATH-500's is ~0.4 MB, GPQA-Diamond's ~1 MB)
LETTERS = "ABCD"

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
GPQA_TEMPLATE = ("Answer the following multiple choice question. The last line of your response should be of the "
                 "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by "
                 "step before answering.\n\n{question}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}")


class TransferDataError(ValueError):
    """A row of a transfer set refused; the message names the file, the line and the field."""


@dataclass(frozen=True)
class MathProblem:
    id: str
    problem: str
    answer: str  # LaTeX, as MATH-500 writes it
    subject: str = ""
    level: int | None = None


@dataclass(frozen=True)
class GPQAQuestion:
    id: str
    question: str
    correct: str
    incorrect: tuple[str, str, str]
    domain: str = ""


# ---- the sets ------------------------------------------------------------------------------------

def resolve_sets(t: TransferConfig, data_root: str | Path, source: str = "") -> dict[str, str]:
    """Set name → where it is read from (a file path, or ``hf:<repo id>``), for the sets the profile
    names. A relative path is inside ``data_root`` (a ``..`` or a link out of it is refused); a file
    that is not there, or not ``.jsonl`` / ``.parquet``, is a :class:`ConfigError` naming the setting.

    >>> resolve_sets(TransferConfig(math500="hf:HuggingFaceH4/MATH-500"), "/data")
    {'math500': 'hf:HuggingFaceH4/MATH-500'}
    >>> resolve_sets(TransferConfig(gpqa_diamond="../gpqa.jsonl"), "/data", "p.yaml")
    Traceback (most recent call last):
    ...
    act_pipeline.config.ConfigError: p.yaml: `transfer.gpqa_diamond` '../gpqa.jsonl' would leave /data
    """
    head = f"{source}: " if source else ""
    out = {}
    for name in SETS:
        value = getattr(t, name)
        if value is None:
            continue
        if value.startswith("hf:"):
            out[name] = value
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            try:
                path = safe_join(Path(data_root), value, what=f"`transfer.{name}`")
            except PathEscapeError as e:
                raise ConfigError(f"{head}{e}") from None
        if path.suffix not in FORMATS:
            raise ConfigError(f"{head}`transfer.{name}` must be a .jsonl or .parquet file (or hf:<repo id>), "
                              f"got {shown(value)}")
        if not path.is_file():
            raise ConfigError(f"{head}`transfer.{name}` names {shown(value)}, but {path} does not exist (put "
                              f"{TITLES[name]} there, or set `transfer.{name}: null` to leave it out)")
        out[name] = str(path)
    return out


def _rows(name: str, spec: str) -> Iterator[tuple[int, dict]]:
    """(line or row number, 1-based; the row) of a set: JSONL line by line (at most 4 MiB a line),
    Parquet whole (at most ``MAX_SET_BYTES``), a hub set through ``datasets``."""
    if spec.startswith("hf:"):
        yield from enumerate(_hub_rows(name, spec[3:]), 1)
        return
    path = Path(spec)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        if path.stat().st_size > MAX_SET_BYTES:
            raise TransferDataError(f"{path}: larger than {MAX_SET_BYTES >> 20} MiB (the limit)")
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow's errors for a file that is not Parquet
            raise TransferDataError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())[:120]})") from None
        yield from enumerate(table.to_pylist(), 1)
        return
    with open(path, "rb") as f:
        try:
            for n, offset, raw in read_lines(f, MAX_LINE_BYTES):
                if not raw.strip():
                    continue
                try:
                    obj = parse_json(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    raise TransferDataError(f"{where(path, n)}: not UTF-8 (byte {raw[e.start]:#x} at offset "
                                            f"{offset + e.start})") from None
                except json.JSONDecodeError as e:
                    raise TransferDataError(f"{where(path, n)}: not valid JSON: {e.msg} at column {e.colno}") from None
                if not isinstance(obj, dict):
                    raise TransferDataError(f"{where(path, n)}: expected a JSON object, got {type(obj).__name__}")
                yield n, obj
        except InputError as e:  # a line past the limit, JSON nested past it
            raise TransferDataError(e.at(path)) from None


def _hub_rows(name: str, repo: str) -> list[dict]:
    config, split = HUB[name]
    try:
        from datasets import load_dataset

        return load_dataset(repo, config, split=split).to_list()
    except Exception as e:  # offline, gated, not found: say which setting and what to do instead
        raise TransferDataError(
            f"`transfer.{name}`: hf:{repo} could not be loaded with the datasets library "
            f"({type(e).__name__}: {' '.join(str(e).split())[:160]}); download {TITLES[name]} and name the "
            "JSONL/Parquet file instead") from None


def _field(src: str, n: int, row: dict, key: str, kind: type = str, required: bool = True):
    """``row[key]`` checked: a non-empty string (or an integer); None when optional and absent/null."""
    value = row.get(key)
    if value is None:
        if required:
            raise TransferDataError(f"{where(src, n, key)}: missing")
        return None
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TransferDataError(f"{where(src, n, key)}: must be an integer, got {shown(value)}")
        return value
    if not isinstance(value, str) or (required and not value.strip()):
        raise TransferDataError(f"{where(src, n, key)}: must be a non-empty string, got {shown(value)}")
    return value


def _unique(src: str, n: int, key: str, value: str, seen: dict[str, int]) -> str:
    if value in seen:
        raise TransferDataError(f"{where(src, n, key)}: duplicate id {shown(value)} (first on line {seen[value]})")
    seen[value] = n
    return value


def load_math500(spec: str, limit: int = 0) -> list[MathProblem]:
    """The MATH-500 problems of a file (or ``hf:<repo id>``), every row checked; the first
    ``limit`` (0 = all)."""
    out, seen = [], {}
    for n, row in _rows(MATH500, spec):
        uid = _field(spec, n, row, "unique_id", required=False)
        out.append(MathProblem(
            id=_unique(spec, n, "unique_id", uid if uid is not None else f"line {n}", seen),
            problem=_field(spec, n, row, "problem"), answer=_field(spec, n, row, "answer").strip(),
            subject=_field(spec, n, row, "subject", required=False) or "",
            level=_field(spec, n, row, "level", int, required=False)))
    return _nonempty(out, spec)[: limit or None]


GPQA_OPTIONS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def load_gpqa(spec: str, limit: int = 0) -> list[GPQAQuestion]:
    """The GPQA-Diamond questions of a file (or ``hf:<repo id>``), every row checked; options are
    stripped of surrounding whitespace (the public set has trailing newlines); the first ``limit``."""
    out, seen = [], {}
    for n, row in _rows(GPQA, spec):
        question = _field(spec, n, row, "Question")
        options = [_field(spec, n, row, k).strip() for k in GPQA_OPTIONS]
        rid = _field(spec, n, row, "Record ID", required=False)
        qid = rid if rid is not None else hashlib.sha256(question.encode()).hexdigest()[:12]
        out.append(GPQAQuestion(id=_unique(spec, n, "Record ID", qid, seen), question=question.strip(),
                                correct=options[0], incorrect=tuple(options[1:]),
                                domain=_field(spec, n, row, "High-level domain", required=False) or ""))
    return _nonempty(out, spec)[: limit or None]


def _nonempty(items: list, spec: str) -> list:
    if not items:
        raise TransferDataError(f"{spec}: empty (expected one row per item)")
    return items


def load_sets(t: TransferConfig, data_root: str | Path, source: str = "") -> dict[str, list]:
    """Every set the profile names, loaded and checked (``transfer.limit`` items of each)."""
    loaders = {MATH500: load_math500, GPQA: load_gpqa}
    return {name: loaders[name](spec, t.limit) for name, spec in resolve_sets(t, data_root, source).items()}


# ---- prompts and answers -------------------------------------------------------------------------

def math_prompt(tokenizer, p: MathProblem, thinking: bool = False) -> str:
    return render(tokenizer, [{"role": "user", "content": f"{p.problem}\n\n{MATH_INSTRUCTION}"}], "", thinking)


def gpqa_options(q: GPQAQuestion, seed: int) -> tuple[list[str], str]:
    """The four options in the order shown (a permutation seeded by ``seed`` and the question's id)
    and the letter of the correct one.

    >>> q = GPQAQuestion("q1", "?", "right", ("w1", "w2", "w3"))
    >>> opts, letter = gpqa_options(q, 0); opts[LETTERS.index(letter)]
    'right'
    >>> gpqa_options(q, 0) == gpqa_options(q, 0)
    True
    """
    options = [q.correct, *q.incorrect]
    digest = hashlib.sha256(f"{seed}:{q.id}".encode()).digest()
    order = list(range(4))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return [options[i] for i in order], LETTERS[order.index(0)]


def gpqa_prompt(tokenizer, q: GPQAQuestion, seed: int, thinking: bool = False) -> tuple[str, str]:
    """The prompt (options in their seeded order) and the correct letter."""
    options, letter = gpqa_options(q, seed)
    text = GPQA_TEMPLATE.format(question=q.question, **dict(zip(LETTERS, options)))
    return render(tokenizer, [{"role": "user", "content": text}], "", thinking), letter


def answer_text(completion, thinking: bool = False) -> str | None:
    """The part of a completion that answers: after the last ``</think>``; None when the reasoning
    was never closed (with ``thinking`` the prompt opened it) or the completion hit the token limit.

    >>> answer_text("x = 2, so \\\\boxed{2}")
    'x = 2, so \\\\boxed{2}'
    >>> answer_text("hmm</think>\\nAnswer: B", thinking=True)
    '\\nAnswer: B'
    >>> answer_text("still thinking... Answer: B", thinking=True) is None
    True
    """
    if is_truncated(completion):
        return None
    text = str(completion)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    elif thinking or _THINK_OPEN.search(text):
        return None
    return None if _THINK_OPEN.search(text) else text


def _timeout() -> int | None:
    """math-verify's time limit uses signal.alarm, which only the main thread may set."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def math_gold(answer: str) -> list:
    """A MATH answer (LaTeX) as math-verify reads it."""
    from math_verify import parse

    return parse("\\boxed{" + answer + "}", parsing_timeout=_timeout())


def math_answer(completion, thinking: bool = False) -> list:
    """What the completion's ``\\boxed{}`` holds, as math-verify's ``parse`` reads it; ``[]`` when
    there is no answer (no box, reasoning unclosed, cut off)."""
    from math_verify import LatexExtractionConfig, parse

    text = answer_text(completion, thinking)
    if text is None or "\\boxed" not in text:
        return []
    return parse(text, extraction_config=[LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)],
                 fallback_mode="no_fallback", extraction_mode="first_match", parsing_timeout=_timeout())


def math_correct(gold: list, completion, thinking: bool = False) -> tuple[str | None, bool]:
    """(the answer as read, or None; whether math-verify finds it equal to ``gold``)."""
    from math_verify import verify

    pred = math_answer(completion, thinking)
    if not pred:
        return None, False
    return str(pred[-1]), bool(gold) and verify(gold, pred, timeout_seconds=_timeout())


# the last non-empty line: "Answer: C", "**Answer:** (C)", "Answer: C." — the letter upper case
_ANSWER_LINE = re.compile(r"[\s*_#>]*(?i:answer)\s*:\s*[*_]*\s*\(?([ABCD])\)?[\s.*_]*")


def gpqa_letter(completion, thinking: bool = False) -> str | None:
    """The letter of the answer's last non-empty line when that line is ``Answer: <A-D>``.

    >>> gpqa_letter("The charge is conserved.\\nAnswer: C"), gpqa_letter("**Answer:** (b)")
    ('C', None)
    >>> gpqa_letter("Answer: C\\nor maybe D"), gpqa_letter("Answer: A or B")
    (None, None)
    """
    text = answer_text(completion, thinking)
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    m = _ANSWER_LINE.fullmatch(lines[-1]) if lines else None
    return m.group(1) if m else None


# ---- the metrics ---------------------------------------------------------------------------------

def _runs_metric(name: str, ids: Sequence[str], groups: Sequence[str], prompts_for: Callable[[int], list[str]],
                 judge: Callable[[int, int, str], tuple[str | None, bool]], sampler: Sampler, seed: int, runs: int,
                 temperature: float, max_new_tokens: int, same_prompts: bool, log: Log) -> Metric:
    """``runs`` runs over the items: run r decodes ``prompts_for(seed + r)`` at ``temperature`` with
    seed ``seed + r`` and ``judge(run seed, item, completion)`` says (answer, right). Greedy runs of
    the same prompts decode once."""
    n = len(ids)
    right: list[list[bool]] = [[] for _ in range(n)]
    per_run, examples = [], []
    completions = parsed = cut = 0
    outs = None
    for r in range(runs):
        s = seed + r
        prompts = prompts_for(s)
        if outs is None or temperature > 0 or not same_prompts:
            outs = sampler.generate(prompts, SamplingParams(n=1, temperature=max(0.0, float(temperature)),
                                                            max_new_tokens=max_new_tokens, seed=s))
        hits = 0
        for i, out in enumerate(outs):
            answer, ok = judge(s, i, out[0])
            right[i].append(ok)
            hits += ok
            completions += 1
            parsed += answer is not None
            cut += is_truncated(out[0])
            if r == 0 and i < 2:
                examples.append({"item": ids[i], "completion": str(out[0])[-600:], "truncated": is_truncated(out[0]),
                                 "answer": answer, "right": ok})
        per_run.append(hits / n if n else float("nan"))
        log(f"{name}: run {r + 1}/{runs} (seed {s}): {hits}/{n} right")
    detail = {"runs": per_run, "run_seeds": [seed + r for r in range(runs)],
              "std": statistics.stdev(per_run) if runs > 1 and n else None,
              "completions": completions, "parsed": parsed, "truncated": cut,
              "truncation_rate": round(cut / completions, 4) if completions else 0.0,
              "temperature": temperature, "max_new_tokens": max_new_tokens,
              "decoded_once": runs > 1 and same_prompts and temperature <= 0,
              "examples": examples}
    outcomes = [sum(r) / len(r) for r in right]
    return Metric(f"{name}_accuracy", sum(per_run) / runs if n else float("nan"), name, n, seed, detail, outcomes,
                  list(groups), list(ids), list(ids))


def math500_accuracy(sampler: Sampler, tokenizer, problems: Sequence[MathProblem], seed: int, runs: int = 3,
                     temperature: float = 0.0, max_new_tokens: int = 1024, thinking: bool = False,
                     log: Log = print) -> Metric:
    """MATH-500 accuracy: the completion's ``\\boxed{}`` against the gold answer (math-verify)."""
    prompts = [math_prompt(tokenizer, p, thinking) for p in problems]
    golds = [math_gold(p.answer) for p in problems]
    m = _runs_metric(MATH500, [p.id for p in problems], [p.subject for p in problems], lambda s: prompts,
                     lambda s, i, c: math_correct(golds[i], c, thinking), sampler, seed, runs, temperature,
                     max_new_tokens, True, log)
    m.detail["gold_unparsable"] = [p.id for p, g in zip(problems, golds) if not g]
    return m


def gpqa_accuracy(sampler: Sampler, tokenizer, questions: Sequence[GPQAQuestion], seed: int, runs: int = 3,
                  temperature: float = 0.0, max_new_tokens: int = 1024, thinking: bool = False,
                  log: Log = print) -> Metric:
    """GPQA-Diamond accuracy: the answer's letter against the correct option's, options in a seeded
    order per run and question."""
    keys: dict[int, list[str]] = {}
    picked = {x: 0 for x in (*LETTERS, "none")}  # how often each letter was answered (a position bias shows)

    def prompts_for(s: int) -> list[str]:
        made = [gpqa_prompt(tokenizer, q, s, thinking) for q in questions]
        keys[s] = [letter for _, letter in made]
        return [p for p, _ in made]

    def judge(s: int, i: int, completion) -> tuple[str | None, bool]:
        letter = gpqa_letter(completion, thinking)
        picked[letter or "none"] += 1
        return letter, letter == keys[s][i]

    m = _runs_metric(GPQA, [q.id for q in questions], [q.domain for q in questions], prompts_for, judge, sampler,
                     seed, runs, temperature, max_new_tokens, False, log)
    m.detail.update(picked=picked, correct_letters={x: sum(k.count(x) for k in keys.values()) for x in LETTERS})
    return m


METRICS = {MATH500: math500_accuracy, GPQA: gpqa_accuracy}


def evaluate_sampler(sampler: Sampler, tokenizer, sets: Mapping[str, list], seed: int, t: TransferConfig,
                     temperature: float, thinking: bool, log: Log = print) -> list[Metric]:
    """Every set's metric for one model (its ``sampler``); the metrics' detail say whether it thought."""
    out = []
    for name, items in sets.items():
        m = METRICS[name](sampler, tokenizer, items, seed, t.runs, temperature, t.max_new_tokens, thinking, log)
        m.detail["thinking"] = thinking
        out.append(m)
    return out


def cache_key(manifest: dict, thinking: bool, sets: Mapping[str, list], t: TransferConfig, e: EvalConfig,
              code: str) -> str:
    """What defines an arm's transfer scores: the checkpoint, thinking, the items, the settings, the code."""
    items = sha256_json({k: [vars(x) for x in v] for k, v in sets.items()})
    return sha256_json({"model": manifest["hash"], "thinking": thinking, "items": items, "runs": t.runs,
                        "max_new_tokens": t.max_new_tokens, "temperature": e.temperature, "seed": e.seed,
                        "code": code})[:24]


def evaluate_arms(plan: list[tuple[str, dict, bool]], sets: Mapping[str, list], t: TransferConfig, e: EvalConfig,
                  model: ModelConfig, log: Log = print, cache=None, code: str = "") -> dict[str, list[Metric]]:
    """Every arm of ``plan`` ((arm, checkpoint manifest, thinking), as the evaluation's
    :func:`~act_pipeline.evaluation.run.eval_plan`) on every set. With ``cache`` (an
    :class:`~act_pipeline.evaluation.run.EvalCache`), an arm scored before on the same items with the
    same settings and ``code`` is read back (the base model, in every training seed's evaluation)."""
    from act_pipeline.files import write_json

    results = {}
    for i, (arm, manifest, thinks) in enumerate(plan, 1):
        head = f"transfer: arm {i}/{len(plan)} {arm}"
        if cache is None:
            results[arm] = _evaluate_arm(head, manifest, thinks, sets, t, e, model, log)
            continue
        with cache.entry(cache_key(manifest, thinks, sets, t, e, code)) as (path, doc):
            if doc is not None:
                log(f"{head}: scored before on the same items ({path.name})")
                results[arm] = [Metric.from_dict(m) for m in doc["metrics"]]
            else:
                results[arm] = _evaluate_arm(head, manifest, thinks, sets, t, e, model, log)
                write_json(path, {"metrics": [m.to_dict() for m in results[arm]]})
    return results


def _evaluate_arm(head: str, manifest: dict, thinks: bool, sets: Mapping[str, list], t: TransferConfig,
                  e: EvalConfig, model: ModelConfig, log: Log) -> list[Metric]:
    from act_pipeline.models import inference_device, load_model
    from act_pipeline.sampling.hf import TransformersSampler

    log(f"{head} ({manifest['uri']}{', thinking' if thinks else ''})")
    mdl, tok = load_model(manifest["uri"], model.trust_remote_code, model.inference_dtype, inference_device(),
                          inference=True)
    ms = evaluate_sampler(TransformersSampler(mdl, tok, e.batch_size), tok, sets, e.seed, t, e.temperature, thinks,
                          log=lambda m: log(f"{head}: {m}"))
    log(f"{head}: " + ", ".join(f"{m.name}={m.value:.3f}" + (f" ± {m.detail['std']:.3f}" if m.detail["std"] is not None
                                                            else "") + f" (N={m.n}, {t.runs} runs)" for m in ms))
    return ms
