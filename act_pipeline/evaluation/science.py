"""The science result: the arms compared on the same held-out items over several training seeds,
with intervals and paired tests (:mod:`act_pipeline.evaluation.stats`), as JSON, a short Markdown
report and three plots.

:func:`science_result` turns one benchmark's evaluations (one per training seed) into a JSON-able
dict; :func:`write_science` writes it. The base model (``prompt_no_thinking``) does not depend on
the training seed: it is taken once, and its outcomes must be the same in every seed's evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from act_pipeline.evaluation.stats import clustered_mean, paired_difference
from act_pipeline.files import atomic_write, write_json

ARMS = {"base": "prompt_no_thinking", "act": "act_checkpoint", "il": "il_baseline", "il_act": "il_policy"}
TITLES = {"base": "Base", "act": "ACT", "il": "IL", "il_act": "IL w/ ACT"}
SEED_INDEPENDENT = "base"
# section -> (metric name, paired differences (A, B) as A − B)
SECTIONS = {
    "judgement_model_only": ("judgement_accuracy", [("act", "base")]),
    "judgement_random_fill": ("judgement_accuracy_random_fill", [("act", "base")]),
    "next_action": ("next_action_accuracy", [("il_act", "il"), ("il", "base")]),
}
SUCCESS = ("success_rate", [("il_act", "il"), ("il", "base")])  # one section per roll-out split
LABELS = {"judgement_model_only": "Judgement acc. (model-driven pairs)",
          "judgement_random_fill": "Judgement acc. (random-fill pairs)",
          "next_action": "Next-action acc.", "success": "Success rate"}
REQUIRED_META = ("commit", "machine", "load", "wall_minutes", "profile", "tuning")
TARGETS = {
    "act_judgement_ge_0_75": "ACT's mean judgement accuracy on model-driven held-out pairs is at least 75 %",
    "act_ci_above_base": "the 95 % CI of the paired difference ACT − base (judgement, model-driven) lies above 0",
    "il_act_minus_il_ci_excludes_0": "the 95 % CI of the paired difference IL w/ ACT − IL (next-action) excludes 0",
    "act_ci_above_chance": "the 95 % CI of ACT's judgement accuracy (model-driven) lies above 50 %, what a constant "
                           "or a random answer scores on pairs shown in random order",
}
CHANCE = 0.5  # a constant answer ("always 1") or a coin flip, on pairs whose order is random
ONE_SLOT = 0.95  # a share of parsed answers naming one slot at or beyond this (or 1 − it): a position bias
METHOD = ("Each arm's mean is the mean over training seeds of its per-seed item mean; the base model is one "
          "seed-independent evaluation. 95 % intervals: two-stage percentile bootstrap drawing training seeds and "
          "held-out games (clusters) with replacement, all items of a drawn game. Differences are paired item by "
          "item and by seed (the base broadcast to every seed); p: two-sided permutation test flipping the sign of "
          "each game's seed-averaged difference (exact when all patterns fit the budget); McNemar: exact, per seed, "
          "on 0/1 outcomes. p values are not corrected for multiple comparisons.")


def tuning_notes(text: str) -> list[str]:
    r"""The items of a tuning notes file (``<profile>.tuning.md``): each Markdown list item whole,
    its continuation lines joined, its emphasis kept; headings and other text are not items.

    >>> tuning_notes("# Tried\n\n- **lr 1e-5**: chance,\n  one slot.\n* lr 3e-5\n\n## Next\n- more steps\n")
    ['**lr 1e-5**: chance, one slot.', 'lr 3e-5', 'more steps']
    """
    items: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("- ", "* ")):
            items.append(s[2:].strip())
        elif s and items and line[:1] in (" ", "\t"):  # an item's continuation line
            items[-1] += " " + s
    return items


def _diff_key(a: str, b: str) -> str:
    return f"diff_{a}_minus_{b}"


class _Outcomes:
    """Per (metric, split): each arm's outcomes by seed, the shared item ids and clusters, checked."""

    def __init__(self, evals: Sequence[dict]):
        self.evals = sorted(evals, key=lambda e: e["seed"])
        if not self.evals:
            raise ValueError("no evaluations")
        self.seeds = [e["seed"] for e in self.evals]
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"a training seed appears twice: {self.seeds}")
        # seed -> arm -> (name, split) -> metric dict
        self.index = {e["seed"]: {arm: {(m["name"], m["split"]): m for m in ms} for arm, ms in e["results"].items()}
                      for e in self.evals}

    def splits(self, name: str) -> list[str]:
        return sorted({s for by_arm in self.index.values() for ms in by_arm.values() for n, s in ms if n == name})

    def get(self, name: str, split: str) -> tuple[dict, list[str], list[str]] | None:
        """(arm key → {seed: outcomes}, items, clusters) for the arms that have the metric, or None."""
        out, ref = {}, None
        for key, arm in ARMS.items():
            present = {s: self.index[s].get(arm, {}).get((name, split)) for s in self.seeds}
            have = [s for s, m in present.items() if m is not None]
            if not have:
                continue
            if len(have) != len(self.seeds):
                missing = [s for s in self.seeds if present[s] is None]
                raise ValueError(f"{name}[{split}]: arm {arm} is missing for seed(s) {missing}")
            if key == SEED_INDEPENDENT:
                self._same_everywhere(arm, name, split, present)
                present = {"-": present[have[0]]}
            for s, m in present.items():
                items = _items(m)
                if ref is None:
                    ref = (arm, s, items, _clusters(m, items))
                elif items != ref[2]:
                    raise ValueError(f"{name}[{split}]: arm {arm} seed {s} has items that differ from arm {ref[0]} "
                                     f"seed {ref[1]} ({_first_difference(items, ref[2])}); arms are compared on "
                                     "the same items in the same order")
            out[key] = {s: list(m["outcomes"]) for s, m in present.items()}
        return (out, ref[2], ref[3]) if out else None

    def _same_everywhere(self, arm: str, name: str, split: str, by_seed: dict) -> None:
        (s0, m0), *rest = by_seed.items()
        for s, m in rest:
            if _items(m) != _items(m0) or list(m["outcomes"]) != list(m0["outcomes"]):
                diff = sum(a != b for a, b in zip(m["outcomes"], m0["outcomes"]))
                raise ValueError(f"{name}[{split}]: arm {arm} (the base model) differs between seed {s0} and seed {s} "
                                 f"({diff} of {len(m0['outcomes'])} outcomes, items "
                                 f"{'same' if _items(m) == _items(m0) else 'different'}); its evaluation must not "
                                 "depend on the training seed — is decoding deterministic?")


def _items(m: dict) -> list[str]:
    return list(m.get("items") or [str(i) for i in range(len(m["outcomes"]))])


def _clusters(m: dict, items: list[str]) -> list[str]:
    return list(m.get("clusters") or items)


def _first_difference(a: list[str], b: list[str]) -> str:
    """Where two item lists part.

    >>> _first_difference(["x", "y"], ["x", "z"]), _first_difference(["x"], ["x", "z"])
    ('2 vs 2 items, first difference at position 1: y vs z', '1 vs 2 items, first difference at position 1: - vs z')
    """
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    get = lambda v: v[i] if i < len(v) else "-"  # noqa: E731
    return f"{len(a)} vs {len(b)} items, first difference at position {i}: {get(a)} vs {get(b)}"


def _section(data: _Outcomes, name: str, split: str, diffs, resamples: int, permutations: int,
             seed: int) -> dict | None:
    got = data.get(name, split)
    if got is None:
        return None
    by_arm, items, clusters = got
    if not items:  # a metric over no items (e.g. no games played) has no value: left out
        return None
    out = {"metric": name, "split": split}
    for key, by_seed in by_arm.items():
        out[key] = clustered_mean(by_seed, clusters, resamples, seed)
    for a, b in diffs:
        if a in by_arm and b in by_arm:
            out[_diff_key(a, b)] = paired_difference(by_arm[a], by_arm[b], clusters, resamples, permutations, seed)
    return out


def _by_origin(data: _Outcomes) -> dict:
    """Per arm and origin of the alternatives: value and N pooled over seeds (the base: one seed)."""
    out = {}
    for key, arm in ARMS.items():
        pooled: dict[str, list[float]] = {}
        for s in data.seeds[:1] if key == SEED_INDEPENDENT else data.seeds:
            for (name, _), m in data.index[s].get(arm, {}).items():
                if name.startswith("judgement_accuracy"):
                    for origin, v in (m.get("detail") or {}).get("by_origin", {}).items():
                        acc = pooled.setdefault(origin, [0.0, 0, 0])
                        acc[0] += v["value"] * v["n"]
                        acc[1] += v["n"]
                        acc[2] += 1
        if pooled:
            out[key] = {o: {"value": t / n if n else None, "n": n, "seeds": k}
                        for o, (t, n, k) in sorted(pooled.items())}
    return out


def _answer_bias(data: _Outcomes, name: str = "judgement_accuracy") -> dict:
    """Per arm key and seed, how the critic answered the model-driven pairs: the share of answers
    that parsed and, of those, the share naming slot 1. An arm that names one slot whatever the
    pair (``one_slot``) scores what chance does on pairs in random order, however often it is right.

    >>> d = _Outcomes([{"seed": 0, "results": {"act_checkpoint": [{"name": "judgement_accuracy", "split": "s",
    ...     "value": 0.5, "n": 4, "outcomes": [1, 0, 1, 0],
    ...     "detail": {"completions": 4, "parsed": 4, "picked_slot_1": 0}}]}}])
    >>> _answer_bias(d)["act"]["0"]
    {'completions': 4, 'parsed_share': 1.0, 'slot_1_share': 0.0, 'one_slot': True}
    """
    out: dict = {}
    for key, arm in ARMS.items():
        for s in data.seeds[:1] if key == SEED_INDEPENDENT else data.seeds:
            m = next((m for (n, _), m in data.index[s].get(arm, {}).items() if n == name), None)
            det = (m or {}).get("detail") or {}
            if "picked_slot_1" not in det or not det.get("completions"):
                continue
            parsed, total = det.get("parsed", 0), det["completions"]
            share = det["picked_slot_1"] / parsed if parsed else None
            out.setdefault(key, {})[str(s)] = {
                "completions": total, "parsed_share": parsed / total, "slot_1_share": share,
                "one_slot": None if share is None else bool(share >= ONE_SLOT or share <= 1 - ONE_SLOT)}
    return out


def _per_seed(data: _Outcomes) -> dict:
    """seed → arm key → metric (``name``, or ``name[split]`` where the name has several splits) → value, N."""
    names = {n for by_arm in data.index.values() for ms in by_arm.values() for n, _ in ms}
    several = {n for n in names if len(data.splits(n)) > 1}
    return {s: {key: {(f"{n}[{sp}]" if n in several else n): {"value": m["value"], "n": m["n"]}
                      for (n, sp), m in sorted(data.index[s][arm].items())}
                for key, arm in ARMS.items() if arm in data.index[s]}
            for s in data.seeds}


def _excludes_0(d: dict | None, above: bool = False) -> bool | None:
    if not d:
        return None
    lo, hi = d["ci"]
    return bool(lo > 0 if above else (lo > 0 or hi < 0))


def science_result(evals: Sequence[dict], curves: Mapping, meta: Mapping, resamples: int = 10000,
                   permutations: int = 10000, seed: int = 0) -> dict:
    """The science result of one benchmark: ``evals`` (one ``{"seed", "results": {arm: [metric
    dict]}}`` per training seed, metric dicts from :meth:`Metric.to_dict`), ``curves`` (seed → the
    held-out judgement accuracy over ACT steps) and ``meta`` (commit, machine, load, wall_minutes,
    profile, tuning, and anything else, copied under ``meta``).

    Raises ValueError when the base model's outcomes differ across seeds, when an arm's items for
    a metric differ from another's (or another seed's), or when an arm is missing for some seeds."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"meta lacks {missing}")
    data = _Outcomes(evals)
    out = {k: meta[k] for k in REQUIRED_META}
    out.update(meta=dict(meta), seeds=data.seeds, arms=dict(ARMS), method=METHOD, resamples=resamples,
               permutations=permutations, curves=dict(curves), target_definitions=dict(TARGETS))
    for key, (name, diffs) in SECTIONS.items():
        splits = data.splits(name)
        if len(splits) > 1:
            raise ValueError(f"{name} has several splits {splits}; pass one benchmark's held-out evaluation")
        section = _section(data, name, splits[0], diffs, resamples, permutations, seed) if splits else None
        if section is not None:
            out[key] = section
    if "judgement_model_only" not in out:
        raise ValueError("no judgement_accuracy in the evaluations")
    success = {sp: _section(data, SUCCESS[0], sp, SUCCESS[1], resamples, permutations, seed)
               for sp in data.splits(SUCCESS[0])}
    if success:
        out["success"] = success
    out["judgement_by_origin"] = _by_origin(data)
    out["per_seed"] = _per_seed(data)
    out["answer_bias"] = _answer_bias(data)
    out["chance"] = CHANCE
    j = out["judgement_model_only"]
    out["target"] = {
        "act_judgement_ge_0_75": bool(j["act"]["mean"] >= 0.75) if "act" in j else None,
        "act_ci_above_base": _excludes_0(j.get(_diff_key("act", "base")), above=True),
        "il_act_minus_il_ci_excludes_0": _excludes_0(out.get("next_action", {}).get(_diff_key("il_act", "il"))),
        "act_ci_above_chance": bool(j["act"]["ci"][0] > CHANCE) if "act" in j else None,
    }
    return out


# ---- writing ------------------------------------------------------------------------------------

def _rounded(v):
    """Floats to 4 decimals (a small nonzero one to 4 significant digits, so a p never reads 0);
    keys as strings.

    >>> _rounded({1: [0.123456, 2 * 0.5 ** 20, 3], "x": {"y": 1 / 3}})
    {'1': [0.1235, 1.907e-06, 3], 'x': {'y': 0.3333}}
    """
    if isinstance(v, float):
        if not math.isfinite(v):
            return v
        return float(f"{v:.4g}") if 0 < abs(v) < 1e-3 else round(v, 4)
    if isinstance(v, Mapping):
        return {str(k): _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def _sections(result: dict) -> list[tuple[str, str, dict]]:
    """(key, label, section) of every metric section present, in report order."""
    out = [(k, f"{LABELS[k]}, {result[k]['split']}", result[k]) for k in SECTIONS if k in result]
    out += [(f"success/{sp}", f"{LABELS['success']}, {sp}", s) for sp, s in (result.get("success") or {}).items() if s]
    return out


def _diffs(result: dict) -> list[tuple[str, str, dict]]:
    """(comparison, metric label, difference) of every paired difference present."""
    out = []
    for _, label, sec in _sections(result):
        for k, d in sec.items():
            if k.startswith("diff_"):
                a, b = k.removeprefix("diff_").split("_minus_")
                out.append((f"{TITLES[a]} − {TITLES[b]}", label, d))
    return out


def _pct(x: float | None) -> str:
    """A fraction as a percentage; no value (a metric over no items) as a dash.

    >>> _pct(0.25), _pct(None), _pct(float("nan"))
    ('25.0', '—', '—')
    """
    return "—" if x is None or x != x else f"{100 * x:.1f}"


def _cell(m: dict | None) -> str:
    if not m:
        return "—"
    lo, hi = m["ci"]
    return f"{_pct(m['mean'])}% [{_pct(lo)}, {_pct(hi)}] N={m['n']}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _meaning(result: dict) -> tuple[list[str], list[str]]:
    """What the numbers mean, and what they do not, as sentences built from them."""
    means, nots = [], []
    for comp, label, d in _diffs(result):
        lo, hi = d["ci"]
        span = f"{_pct(d['mean'])} pp, 95 % CI [{_pct(lo)}, {_pct(hi)}], p = {_p(d['p'])}"
        if lo == hi == d["mean"] == 0:
            means.append(f"{comp} on {label}: identical outcomes on every item and seed — no effect detected.")
        elif lo > 0:
            means.append(f"{comp} on {label}: higher ({span}) — an effect detected over {d['n_clusters']} held-out "
                         f"games and {d['n_seeds']} seed(s).")
        elif hi < 0:
            means.append(f"{comp} on {label}: lower ({span}) — an effect detected, in the unfavourable direction.")
        else:
            means.append(f"{comp} on {label}: no effect detected ({span}; the CI includes 0). This is not evidence "
                         f"of no effect: differences from {_pct(lo)} to {_pct(hi)} pp fit the data.")
    t, j = result["target"], result["judgement_model_only"]
    if t["act_judgement_ge_0_75"] is not None:
        means.append(f"ACT's judgement accuracy on model-driven pairs is {_pct(j['act']['mean'])}%: the 75 % target "
                     f"is {'met' if t['act_judgement_ge_0_75'] else 'not met'} (by the point estimate; its CI is "
                     f"[{_pct(j['act']['ci'][0])}, {_pct(j['act']['ci'][1])}]).")
    if "act" in j:
        lo, hi = j["act"]["ci"]
        means.append(f"Against chance ({_pct(result.get('chance', CHANCE))}%: a constant or random answer on pairs in "
                     f"random order), ACT's CI [{_pct(lo)}, {_pct(hi)}] "
                     + ("lies above it." if lo > result.get("chance", CHANCE) else
                        "lies below it." if hi < result.get("chance", CHANCE) else "includes it: no judgement detected."))
    for key, by_seed in (result.get("answer_bias") or {}).items():
        biased = {s: b for s, b in by_seed.items() if b.get("one_slot")}
        if biased:
            means.append(f"{TITLES[key]} names one slot whatever the pair in seed(s) " + ", ".join(
                f"{s} (slot 1 in {_pct(b['slot_1_share'])}% of {b['completions']} answers)" for s, b in biased.items())
                + ": a position bias, not a judgement of the actions.")
        elif by_seed and all(b["parsed_share"] < 0.05 for b in by_seed.values()):
            means.append(f"{TITLES[key]}'s answers almost never parse (" + ", ".join(
                f"{_pct(b['parsed_share'])}%" for b in by_seed.values()) + " parsed): its accuracy measures the "
                "answer format, not judgement.")
    seeds = len(result["seeds"])
    nots.append(f"{seeds} training seed(s): the seed-to-seed spread is estimated from {seeds} draw(s), so the "
                "intervals may still be too narrow." if seeds < 5 else
                f"{seeds} training seeds; other seeds could still differ.")
    nots.append(f"The items come from {j['base' if 'base' in j else 'act']['n_clusters']} held-out games of split "
                f"`{j['split']}` of one benchmark, one model size and profile `{result['profile']}`; nothing here "
                "speaks for other benchmarks, models or budgets.")
    nots.append(f"{len(_diffs(result))} comparison(s), p values not corrected for multiplicity; a lone p near 0.05 "
                "is weak evidence.")
    if "success" not in result:
        nots.append("No roll-outs: task success was not measured; judgement and next-action accuracy are proxies.")
    return means, nots


def _markdown(result: dict, names: dict[str, str]) -> str:
    wall = result["wall_minutes"] or {}
    stages = ", ".join(f"{k} {v:.1f}" for k, v in wall.items() if k != "total")
    lines = ["# Science result", "",
             f"Commit `{result['commit']}` · machine: {result['machine']} · load: {result['load']} · "
             f"profile: `{result['profile']}` · training seeds: {', '.join(map(str, result['seeds']))}", "",
             f"Wall minutes: {stages}{'; ' if stages else ''}**total {wall.get('total', float('nan')):.1f}**", "",
             result["method"], "", "## Results (%, mean [95 % CI], N items)", "",
             "| metric | " + " | ".join(TITLES.values()) + " |", "|---" * (len(TITLES) + 1) + "|"]
    for _, label, sec in _sections(result):
        lines.append(f"| {label} | " + " | ".join(_cell(sec.get(k)) for k in TITLES) + " |")
    lines += ["", "## Paired differences (percentage points)", "",
              "| comparison | metric | difference | 95 % CI | p | N (games, seeds) |", "|---|---|---|---|---|---|"]
    for comp, label, d in _diffs(result):
        lines.append(f"| {comp} | {label} | {_pct(d['mean'])} | [{_pct(d['ci'][0])}, {_pct(d['ci'][1])}] | "
                     f"{_p(d['p'])} | {d['n']} ({d['n_clusters']}, {d['n_seeds']}) |")
    metrics = sorted({m for by_arm in result["per_seed"].values() for ms in by_arm.values() for m in ms})
    lines += ["", "## Per seed (%, N)", "", "| seed | arm | " + " | ".join(metrics) + " |",
              "|---" * (len(metrics) + 2) + "|"]
    for s, by_arm in result["per_seed"].items():
        for key, ms in by_arm.items():
            lines.append(f"| {s} | {TITLES[key]} | " + " | ".join(
                f"{_pct(ms[m]['value'])} ({ms[m]['n']})" if m in ms else "—" for m in metrics) + " |")
    if result.get("judgement_by_origin"):
        lines += ["", "Judgement accuracy by origin of the alternative (pooled over seeds): " + "; ".join(
            f"{TITLES[k]}: " + ", ".join(f"`{o}` {_pct(v['value'])}% (N={v['n']})" for o, v in by.items())
            for k, by in result["judgement_by_origin"].items())]
    if result.get("answer_bias"):
        lines += ["", "How the critic answered the model-driven pairs (per seed: answers that parsed; of those, "
                  "the share naming slot 1 — near 0 or 100 % is a position bias):", "",
                  "| arm | seed | parsed | slot 1 of parsed |", "|---|---|---|---|"]
        for key, by_seed in result["answer_bias"].items():
            for s, b in by_seed.items():
                lines.append(f"| {TITLES[key]} | {s} | {_pct(b['parsed_share'])}% of {b['completions']} | "
                             f"{_pct(b['slot_1_share'])}% |")
    lines += ["", "## Plots", "", f"![paired differences]({names['forest']})", "",
              f"![held-out judgement accuracy over ACT training]({names['curves']})", "",
              f"![arms]({names['arms']})", ""]
    means, nots = _meaning(result)
    t = result["target"]
    lines += ["## What this means", ""] + [f"- {m}" for m in means]
    lines += ["", "Targets: " + "; ".join(f"{TARGETS[k]}: **{'n/a' if v is None else 'yes' if v else 'no'}**"
                                          for k, v in t.items()) + ".", "", "## What it does not mean", ""]
    lines += [f"- {m}" for m in nots]
    tuning = result["tuning"]
    lines += ["", "## Tuning (validation split only)", ""]
    lines += [f"- {x}" for x in (tuning if isinstance(tuning, list) else [tuning])] if tuning else ["- none"]
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _forest(result: dict, path: Path) -> Path:
    plt = _plt()
    rows = _diffs(result)[::-1]  # first comparison on top
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.3))
    for y, (_, _, d) in enumerate(rows):
        lo, hi = (100 * c for c in d["ci"])
        ax.errorbar(100 * d["mean"], y, xerr=[[100 * d["mean"] - lo], [hi - 100 * d["mean"]]], fmt="o", capsize=3,
                    color="tab:blue" if lo > 0 or hi < 0 else "tab:gray")
        ax.text(1.01, y, f"p={_p(d['p'])}", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.axvline(0, color="k", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [f"{c}\n{label}" for c, label, _ in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("paired difference, percentage points (95 % CI)")
    ax.set_title("Paired differences on the same held-out items", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _curves(result: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for s, pts in sorted(result["curves"].items(), key=lambda kv: str(kv[0])):
        pts = sorted(pts, key=lambda p: p["step"])
        ax.plot([p["step"] for p in pts], [100 * p["judgement_accuracy"] for p in pts], marker=".",
                label=f"ACT seed {s}")
    base = result["judgement_model_only"].get("base")
    if base:
        ax.axhline(100 * base["mean"], color="k", ls="--", lw=1, label=f"base model ({_pct(base['mean'])}%)")
    ax.axhline(100 * result.get("chance", CHANCE), color="tab:red", ls=":", lw=1,
               label=f"chance ({_pct(result.get('chance', CHANCE))}%: constant or random answer)")
    ax.set_xlabel("ACT training step")
    ax.set_ylabel("held-out judgement accuracy, %")
    ax.set_ylim(-2, 102)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Held-out judgement accuracy (model-driven pairs) over ACT training", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _arms(result: dict, path: Path) -> Path:
    plt = _plt()
    secs = _sections(result)
    fig, axes = plt.subplots(len(secs), 1, figsize=(7, 1.9 * len(secs) + 0.4), squeeze=False)
    for ax, (key, label, sec) in zip(axes[:, 0], secs):
        keys = [k for k in TITLES if k in sec][::-1]  # base on top
        means = [100 * sec[k]["mean"] for k in keys]
        err = [[m - 100 * sec[k]["ci"][0] for m, k in zip(means, keys)],
               [100 * sec[k]["ci"][1] - m for m, k in zip(means, keys)]]
        ax.barh(range(len(keys)), means, xerr=err, capsize=3, color="tab:blue", alpha=0.75)
        ax.set_yticks(range(len(keys)), [TITLES[k] for k in keys], fontsize=8)
        for y, (m, k) in enumerate(zip(means, keys)):  # the value right of its whisker
            ax.text(100 * sec[k]["ci"][1] + 1.5, y, f"{m:.1f}", va="center", fontsize=7)
        if key.startswith("judgement"):
            ax.axvline(100 * result.get("chance", CHANCE), color="tab:red", ls=":", lw=1)
        ax.set_xlim(0, 112)
        ax.set_title(label + (" (dotted: chance)" if key.startswith("judgement") else ""), fontsize=9)
    axes[-1, 0].set_xlabel("%, mean over seeds (95 % CI: seeds × games)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_science(out_dir: Path, result: dict) -> dict[str, Path]:
    """``latest.json`` (keys sorted, indent 1, floats rounded), ``latest.md`` and the plots
    ``forest.png``, ``judgement_curves.png``, ``arms.png`` in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {"forest": "forest.png", "curves": "judgement_curves.png", "arms": "arms.png"}
    paths = {"json": write_json(out_dir / "latest.json", _rounded(result), indent=1),
             "forest": _forest(result, out_dir / names["forest"]),
             "curves": _curves(result, out_dir / names["curves"]),
             "arms": _arms(result, out_dir / names["arms"])}
    paths["markdown"] = atomic_write(out_dir / "latest.md", _markdown(result, names))
    return paths
