"""The evaluation report: JSON (machine-readable), Markdown (people) and a PNG plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from act_pipeline.evaluation.metrics import Metric
from act_pipeline.files import write_json

# (metric name, split) -> column title; the order of the report's table
COLUMNS = [
    ("judgement_accuracy", "valid_unseen", "Judgement acc. (held-out pairs, model-driven)"),
    ("judgement_accuracy_random_fill", "valid_unseen", "Judgement acc. (held-out pairs, random fills)"),
    ("next_action_accuracy", "valid_unseen", "Next-action acc. (held-out states)"),
    ("success_rate", "valid_seen", "ALFWorld success, valid_seen (ID)"),
    ("success_rate", "valid_unseen", "ALFWorld success, valid_unseen (OOD)"),
]
# other benchmarks' grids: (metric, split, title) and the paper's Table-1 column for the first
BENCH_COLUMNS = {
    "scienceworld": [
        ("next_action_accuracy", "test", "ScienceWorld next-action acc. (held-out test-variation states)"),
        ("judgement_accuracy", "test", "Judgement acc. (held-out test pairs, model-driven)"),
        ("judgement_accuracy_random_fill", "test", "Judgement acc. (held-out test pairs, random fills)"),
    ],
}
BENCH_TITLES = {"scienceworld": "ScienceWorld"}
PAPER_COLUMN = {"scienceworld": 3}  # index into PAPER_TABLE1's rows
# arms are named by what they ran: the base model prompted without / with thinking
ARM_TITLES = {
    "prompt_no_thinking": "Prompt w/o thinking (base model)",
    "prompt_thinking": "Prompt w/ thinking (base model)",
    "act_checkpoint": "ACT only",
    "il_baseline": "IL (SFT from base)",
    "early_experience": "Early Experience (self-reflection)",
    "il_policy": "IL w/ ACT",
    "rl_baseline": "RL (GRPO from base)",
    "rl_policy": "RL w/ ACT",
}
# the paper's Table 1 (Qwen3-8B, %): ALFWorld ID, ALFWorld OOD, WebShop, ScienceWorld — its numbers, not ours
PAPER_TABLE1 = {
    "Prompt w/o thinking": (35.71, 27.61, 2.80, 28.01),
    "Prompt w/ thinking": (56.43, 50.00, 3.00, 25.21),
    "ACT only": (72.86, 72.39, 7.40, 26.71),
    "IL": (85.71, 82.84, 28.00, 42.80),
    "Early Experience (self-reflection)": (87.86, 85.82, 31.00, 45.60),
    "IL w/ ACT": (91.43, 87.31, 31.60, 48.69),
    "RL": (90.71, 84.33, 29.40, 43.04),
    "RL w/ ACT": (92.86, 88.06, 33.80, 50.34),
}
# our arm -> the paper's row
PAPER_ROW = {"prompt_no_thinking": "Prompt w/o thinking", "prompt_thinking": "Prompt w/ thinking",
             "act_checkpoint": "ACT only", "il_baseline": "IL", "early_experience": "Early Experience (self-reflection)",
             "il_policy": "IL w/ ACT", "rl_baseline": "RL", "rl_policy": "RL w/ ACT"}
PAPER_QWEN3_8B = {a: PAPER_TABLE1[r][:2] for a, r in PAPER_ROW.items()}  # ALFWorld ID / OOD
# the paper's Table 2, reasoning transfer (%, models trained on ALFWorld only): MATH-500, GPQA-Diamond — its
# numbers, not ours; and our arm -> its row (IL w/ ACT and RL w/ ACT are not in it)
PAPER_TABLE2 = {
    "Prompt w/o thinking": (78.6, 42.93),
    "Prompt w/ thinking": (86.93, 51.52),
    "IL": (87.0, 44.61),
    "Early Experience": (86.86, 51.85),
    "RL": (87.07, 52.36),
    "ACT": (87.73, 53.37),
}
PAPER_TABLE2_ROW = {"prompt_no_thinking": "Prompt w/o thinking", "prompt_thinking": "Prompt w/ thinking",
                    "il_baseline": "IL", "early_experience": "Early Experience", "rl_baseline": "RL",
                    "act_checkpoint": "ACT"}
_BENCH_NAMES = {"alfworld": "ALFWorld", **BENCH_TITLES}
TRANSFER_COLUMNS = [("math500_accuracy", "MATH-500"), ("gpqa_diamond_accuracy", "GPQA-Diamond")]


def _ordered(results: Mapping[str, list[Metric]]) -> dict[str, list[Metric]]:
    """The arms in the paper's row order (the prompt arms first), unknown arms after them by name."""
    known = list(ARM_TITLES)
    return {a: results[a] for a in sorted(results, key=lambda a: (known.index(a) if a in known else len(known), a))}


def _present(results: Mapping[str, list[Metric]], columns) -> list:
    """The columns some arm has a metric for (random-fill judgement only where there were fills)."""
    have = {(m.name, m.split) for ms in results.values() for m in ms}
    return [c for c in columns if (c[0], c[1]) in have]


def _decoding(meta: dict) -> str:
    d = meta.get("decoding") or {}
    t, n = d.get("temperature", 0.0), d.get("samples", 1)
    return "greedy" if not t else f"temperature {t}, {n} sample(s) per item (an item scores its samples' mean)"


def _method_notes(results: Mapping[str, list[Metric]], meta: dict, title: str = "") -> list[str]:
    """Footnotes: where the pairs' alternatives came from, how we decoded (and how often the token
    limit cut a completion), and whether each GRPO stage had a learning signal."""
    lines = [f"### How these numbers were made{' — ' + title if title else ''}", ""]
    origins = meta.get("pair_origins") or {}
    if origins:
        lines += [f"**Pair origins** (sampling policy `{meta.get('sampling_policy')}`): `model` = a free sample of "
                  "π₀ that was admissible; `model_constrained` = a draw from π₀'s own distribution restricted to the "
                  "admissible actions; `random_fill` = a uniformly random admissible action (Early Experience's fill). "
                  "The headline judgement accuracy is over model-driven pairs (`model` + `model_constrained`); "
                  "random fills are reported apart.", "",
                  "| split | origin | pairs | share |", "|---|---|---|---|"]
        for split, by in origins.items():
            for o, v in by.items():
                lines.append(f"| {split} | `{o}` | {v['n']} | {100 * v['share']:.1f}% |")
        lines.append("")
    lines += [f"**Decoding**: {_decoding(meta)}; thinking: "
              f"{'on for every trained arm' if meta.get('thinking') else 'off for every trained arm'} "
              "(the prompt arms are named by their setting). A completion cut by the token limit before it "
              "closed its answer is unparsable and counts as wrong; the share of such completions:", "",
              "| Arm | " + " | ".join(f"{m.name} [{m.split}]" for m in next(iter(results.values()), [])) + " |",
              "|---|" + "---|" * len(next(iter(results.values()), []))]
    for arm, ms in results.items():
        lines.append(f"| {ARM_TITLES.get(arm, arm)} | " + " | ".join(
            f"{100 * m.detail['truncation_rate']:.0f}% truncated"
            if m.n and isinstance(m.detail.get("truncation_rate"), (int, float)) else "—" for m in ms) + " |")
    lines.append("")
    for arm, ms in results.items():
        for m in ms:
            if m.detail.get("by_origin"):
                lines.append(f"- {ARM_TITLES.get(arm, arm)}, {m.name} [{m.split}] by origin: " + ", ".join(
                    f"`{o}` {100 * v['value']:.1f}% (N={v['n']})" for o, v in m.detail["by_origin"].items()))
    lines.append("")
    signal = meta.get("learning_signal") or {}
    if signal:
        lines += ["**Learning signal of the GRPO stages** (from TRL's logs): a group whose completions all got the "
                  "same reward has zero advantage and teaches nothing.", "",
                  "| Stage | groups with all-equal rewards | steps where every group was | completions truncated | "
                  "reward first → last |", "|---|---|---|---|---|"]
        for arm, sg in signal.items():
            frac = sg.get("frac_groups_equal_reward")
            none = frac is not None and frac >= 0.999
            first, last, cut = sg.get("mean_reward_first"), sg.get("mean_reward_last"), sg.get("truncated_share")
            lines.append(
                f"| {ARM_TITLES.get(arm, arm)} | {'—' if frac is None else f'{100 * frac:.0f}%'}"
                f"{' (**no learning signal**)' if none else ''} | {sg.get('steps_all_groups_equal')}"
                f" of {sg.get('steps_logged')} | "
                f"{'—' if cut is None else f'{100 * cut:.0f}%'} | "
                f"{'—' if first is None else f'{first:.3f}'} → {'—' if last is None else f'{last:.3f}'} |")
        lines.append("")
    return lines


def _cell(m: Metric | None) -> str:
    if m is None:
        return "—"
    if not m.n or m.value is None:
        return "— (N=0)"
    ci = m.ci95()
    band = f" [{100 * ci[0]:.0f}–{100 * ci[1]:.0f}]" if ci else ""
    return f"{100 * m.value:.1f}%{band} (N={m.n})"


def _index(results: Mapping[str, list[Metric]]) -> dict[str, dict[tuple[str, str], Metric]]:
    return {arm: {(m.name, m.split): m for m in ms} for arm, ms in results.items()}


def plot(results: Mapping[str, list[Metric]], path: Path, title: str, columns=COLUMNS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = _index(results)
    arms = list(results)
    columns = _present(results, columns) or columns
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(columns)
    for j, (name, split, label) in enumerate(columns):
        ms = [idx[a].get((name, split)) for a in arms]
        ms = [m if m is not None and m.n and m.value is not None else None for m in ms]  # N = 0: no bar
        vals = [100 * m.value if m else 0 for m in ms]
        cis = [m.ci95() if m else None for m in ms]
        err = [[v - 100 * c[0] if c else 0 for v, c in zip(vals, cis)],
               [100 * c[1] - v if c else 0 for v, c in zip(vals, cis)]]
        xs = [i + (j - (len(columns) - 1) / 2) * width for i in range(len(arms))]
        bars = ax.bar(xs, vals, width, label=label, yerr=err, capsize=2, error_kw={"elinewidth": 0.7})
        ax.bar_label(bars, labels=[f"{v:.0f}" if m else "N=0" for v, m in zip(vals, ms)], fontsize=6)
    import textwrap

    # arm names wrapped onto two lines, so neighbouring labels never overlap
    ax.set_xticks(range(len(arms)), [textwrap.fill(ARM_TITLES.get(a, a), 16) for a in arms], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _by_type_table(results: Mapping[str, list[Metric]], columns=COLUMNS) -> list[str]:
    idx = _index(results)
    lines = []
    for name, split, label in columns:
        types = sorted({t for arm in results for m in [idx[arm].get((name, split))] if m for t in m.by_group()})
        if not types or types == [""]:
            continue
        lines += [f"**{label}** by task type (value, N):", "", "| Arm | " + " | ".join(types) + " |",
                  "|---|" + "---|" * len(types)]
        for arm in results:
            m = idx[arm].get((name, split))
            g = m.by_group() if m else {}
            lines.append(f"| {ARM_TITLES.get(arm, arm)} | " + " | ".join(
                f"{100 * g[t]['value']:.0f}% ({g[t]['n']})" if t in g else "—" for t in types) + " |")
        lines.append("")
    return lines


def _traces_side_by_side(traces: Mapping[str, list[dict]], max_steps: int = 10) -> list[str]:
    arms = [a for a in traces if traces[a]]
    if not arms:
        return []
    game = traces[arms[0]][0]["game_id"]
    lines = [f"## Side by side: the first `valid_unseen` game (`{game}`)", "",
             "Each column is one arm's episode; a repeated action is marked ↻ (the agent loops).", "",
             "| step | " + " | ".join(f"{ARM_TITLES.get(a, a)} (won: {traces[a][0]['won']})" for a in arms) + " |",
             "|---|" + "---|" * len(arms)]
    for i in range(max_steps):
        cells, any_ = [], False
        for a in arms:
            tr = traces[a][0]["trace"]
            if i < len(tr):
                any_ = True
                act, seen = tr[i][0], {t[0] for t in tr[:i]}
                cells.append(("↻ " if act in seen else "") + act.replace("|", "/")[:60])
            else:
                cells.append("")
        if any_:
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _curve_section(out: Path, curve: list[dict] | None, bench: str = "") -> list[str]:
    """Judgement accuracy on held-out pairs over the ACT training steps (probed during training)."""
    if not curve:
        return []
    name = f"judgement_curve{'_' + bench if bench else ''}.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.8))
    ax.plot([c["step"] for c in curve], [100 * c["judgement_accuracy"] for c in curve], marker="o")
    ax.set_xlabel("ACT GRPO step")
    ax.set_ylabel("judgement acc. %")
    ax.set_ylim(0, 100)
    ax.set_title(f"held-out {curve[0]['split']} pairs, N={curve[0]['n']}, greedy "
                 f"({'/'.join(curve[0].get('origins') or ['?'])})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    c0 = curve[0]
    return [f"## Judgement accuracy over ACT training{' — ' + BENCH_TITLES.get(bench, bench) if bench else ''}", "",
            f"Probed during ACT GRPO on {c0['n']} held-out `{c0['split']}` pairs (greedy, seed {c0['seed']}).", "",
            "| step | " + " | ".join(str(c["step"]) for c in curve) + " |",
            "|---|" + "---|" * len(curve),
            "| judgement acc. | " + " | ".join(f"{100 * c['judgement_accuracy']:.1f}%" for c in curve) + " |",
            "", f"![judgement accuracy over ACT training]({name})", ""]


def _critiques(results: Mapping[str, list[Metric]]) -> list[str]:
    lines = []
    for arm, ms in results.items():
        for m in ms:
            ex = m.detail.get("examples") if m.name == "judgement_accuracy" else None
            if ex:
                lines += [f"**{ARM_TITLES.get(arm, arm)}** judging a held-out pair (expert in slot "
                          f"{ex[0]['expert_slot']}):", "", "```", ex[0]["candidates"], "--- model output ---",
                          "<answer>" + ex[0]["completion"], "```", ""]
    return (["## Critiques: each arm judging the same held-out pair (the prompt ends in `<answer>`)", ""]
            + lines) if lines else []


def _mean_std(m: Metric | None) -> str:
    """A transfer cell: mean ± std over runs (sample std), runs and N."""
    if m is None:
        return "—"
    if not m.n or m.value is None:
        return "— (N=0)"
    std = m.detail.get("std")
    runs = len(m.detail.get("runs") or [])
    return f"{100 * m.value:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "") + f"% ({runs} runs, N={m.n})"


def _transfer_section(doc: Mapping) -> list[str]:
    """Reasoning transfer: every arm's MATH-500 and GPQA-Diamond accuracy (mean ± std over runs)
    beside the paper's Table 2, which is labelled as the paper's."""
    results, meta = _ordered(doc["results"]), doc.get("meta") or {}
    idx = {arm: {m.name: m for m in ms} for arm, ms in results.items()}
    columns = [(n, t) for n, t in TRANSFER_COLUMNS if any(n in v for v in idx.values())]
    sets = meta.get("sets") or {}
    lines = ["## Reasoning transfer (MATH-500, GPQA-Diamond)", "",
             f"Models trained on {_BENCH_NAMES.get(meta.get('benchmark'), meta.get('benchmark'))} data only, scored on "
             + ", ".join(f"`{k}` ({v.get('items')} items from `{v.get('source')}`)" for k, v in sets.items())
             + f". Each cell: mean ± standard deviation over {meta.get('runs')} runs (run r: seed "
             f"{meta.get('seed')} + r) at temperature {meta.get('temperature')}, at most {meta.get('max_new_tokens')} "
             "new tokens, and N. MATH: the completion's `\\boxed{}` checked against the answer with math-verify; "
             "GPQA: options shuffled per run and question (seeded), the answer's last line `Answer: <letter>`. "
             "A completion cut by the token limit, or whose reasoning never closed, has no answer. The paper's "
             "columns are its numbers (arXiv 2603.08706, Table 2), not ours: another model at another scale, so "
             "compare the ordering of the arms, not the values.", "",
             "| Arm | " + " | ".join(t for _, t in columns) + " | "
             + " | ".join(f"{t}, paper (not ours)" for _, t in columns) + " |",
             "|---|" + "---|" * (2 * len(columns))]
    paper_cols = {"math500_accuracy": 0, "gpqa_diamond_accuracy": 1}
    for arm in results:
        paper = PAPER_TABLE2.get(PAPER_TABLE2_ROW.get(arm, ""))
        lines.append(f"| {ARM_TITLES.get(arm, arm)} | " + " | ".join(_mean_std(idx[arm].get(n)) for n, _ in columns)
                     + " | " + " | ".join(f"{paper[paper_cols[n]]:.2f}%" if paper else "—" for n, _ in columns) + " |")
    ran = {PAPER_TABLE2_ROW.get(a) for a in results}
    missing = [r for r in PAPER_TABLE2 if r not in ran]
    if missing:
        lines += ["", "Paper rows we do not run: " + "; ".join(
            f"{r} ({' / '.join(f'{v:.2f}%' for v in PAPER_TABLE2[r])})" for r in missing) + "."]
    lines += ["", "Per run and per completion:", ""]
    for arm, ms in results.items():
        lines.append(f"- {ARM_TITLES.get(arm, arm)}{' (thinking)' if any(m.detail.get('thinking') for m in ms) else ''}: "
                     + "; ".join(f"{m.split} runs " + ", ".join(f"{100 * v:.1f}%" for v in m.detail.get("runs") or [])
                                 + f", {100 * (m.detail.get('truncation_rate') or 0):.0f}% truncated, "
                                 f"{m.detail.get('parsed')}/{m.detail.get('completions')} answered"
                                 + (", letters answered " + ", ".join(f"{k} {v}" for k, v in m.detail["picked"].items())
                                    if m.detail.get("picked") else "")
                                 for m in ms))
    lines.append("")
    return lines


def _bench_section(out: Path, bench: str, results: Mapping[str, list[Metric]], meta: dict) -> tuple[list[str], Path]:
    """Another benchmark's grid (ScienceWorld): every arm, 95 % intervals, the paper's number beside
    ours, per-task-type table and a plot."""
    columns = _present(results, BENCH_COLUMNS[bench])
    title = BENCH_TITLES.get(bench, bench)
    idx = _index(results)
    png = plot(results, out / f"report_{bench}.png", f"{title} — seed {meta.get('seed')} (bars: 95% bootstrap CI)",
               columns)
    col = PAPER_COLUMN.get(bench)
    lines = [f"## {title}", "",
             f"Held-out expert states and pairs come from {title}'s test variations (no training data touches "
             f"them); tasks: {', '.join(meta.get('tasks') or []) or 'all'}; each state lists at most "
             f"{meta.get('max_admissible') or 'all'} admissible actions, the expert's among them. Decoding: "
             f"{_decoding(meta)}, seed {meta.get('seed')}. The paper's column is Qwen3-8B's next-action accuracy (Table 1), not ours.", "",
             "| Arm | " + " | ".join(c[2] for c in columns) + " | Paper, Qwen3-8B (not ours) |",
             "|---|" + "---|" * (len(columns) + 1)]
    for arm in results:
        paper = PAPER_TABLE1.get(PAPER_ROW.get(arm, ""))
        lines.append(f"| {ARM_TITLES.get(arm, arm)} | " + " | ".join(_cell(idx[arm].get((n, s))) for n, s, _ in columns)
                     + f" | {f'{paper[col]:.2f}%' if paper and col is not None else '—'} |")
    lines += ["", f"![{title}](report_{bench}.png)", ""]
    lines += _by_type_table(results, columns)
    lines += _method_notes(results, meta, title)
    return lines, png


def _grid_rows(results: Mapping[str, list[Metric]], idx, columns) -> list[str]:
    """The grid's rows: every row of the paper's Table 1 in its order, an arm the profile did not run
    said so (its ``arms``), then any other arm we ran.

    >>> m = Metric("next_action_accuracy", 0.5, "valid_unseen", 2, 0, {}, [1, 0])
    >>> rows = _grid_rows({"il_baseline": [m]}, _index({"il_baseline": [m]}), [COLUMNS[2]])
    >>> len(rows), rows[3]
    (8, '| IL (SFT from base) | 50.0% [0–100] (N=2) |')
    >>> rows[4]
    "| Early Experience (self-reflection) | not run (the profile's `arms`) |"
    """
    rows = []
    for arm in _ordered({a: [] for a in {*PAPER_ROW, *results}}):
        if arm in results:
            rows.append(f"| {ARM_TITLES.get(arm, arm)} | " + " | ".join(_cell(idx[arm].get((n, s))) for n, s, _ in columns)
                        + " |")
        else:
            rows.append(f"| {ARM_TITLES.get(arm, arm)} | " + " | ".join(
                ["not run (the profile's `arms`)" if arm not in PROMPT_ARMS else "not run (`eval.thinking_arm`)"]
                + ["—"] * (len(columns) - 1)) + " |")
    return rows


PROMPT_ARMS = ("prompt_no_thinking", "prompt_thinking")


def write_report(
    out_dir: str | Path, results: Mapping[str, list[Metric]], meta: dict,
    traces: Mapping[str, list[dict]] | None = None, judgement_curve: list[dict] | None = None,
    benchmarks: Mapping[str, dict] | None = None, transfer: Mapping | None = None,
) -> dict[str, Path]:
    """Write report.json, report.md, report.html and report.png into ``out_dir``; return their paths.

    ``results`` are ALFWorld's; ``benchmarks`` maps another benchmark (``scienceworld``) to
    ``{"results": ..., "meta": ..., "judgement_curve": ...}`` and adds its grid (and its ACT
    checkpoint's judgement curve) to the same page. ``transfer`` (``{"results": arm -> metrics,
    "meta": ...}``, the reasoning-transfer evaluation) adds its table beside the paper's Table 2.

    Every cell: the value, its 95 % bootstrap interval over items, and N; the seed and splits are
    stated above the table. The paper's numbers appear in their own table, labelled as such."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _ordered(results)
    benchmarks = {b: {**doc, "results": _ordered(doc["results"])} for b, doc in (benchmarks or {}).items()}
    idx = _index(results)
    columns = _present(results, COLUMNS)
    seed = meta.get("seed")
    png = plot(results, out / "report.png", f"ACT pipeline — profile {meta.get('profile')}, "
               f"model {meta.get('model_name')}, seed {seed} (bars: 95% bootstrap CI)")
    lines = [
        f"# ACT evaluation report — profile `{meta.get('profile')}`",
        "",
        f"Base model: `{meta.get('model_name')}` (hash `{str(meta.get('base_model_hash'))[:12]}`). "
        f"Evaluation seed: {seed}; decoding: {_decoding(meta)}. Each cell: value [95 % bootstrap interval over "
        "items, 2000 resamples] (N = items evaluated). Judgement accuracy is over held-out pairs whose "
        "alternative the model proposed (model-driven); pairs with random-fill alternatives are a column apart "
        "(see *How these numbers were made*).",
        "",
        "| Arm | " + " | ".join(c[2] for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    lines += _grid_rows(results, idx, columns)
    lines += [
        "",
        "Splits: held-out pairs and held-out expert states come from `valid_unseen` games, which "
        "no training data touches; success rates are over the first N games (task types "
        f"round-robin) of each split, max {meta.get('max_steps')} steps per episode.",
        "",
        "![results](report.png)",
        "",
    ]
    lines += _by_type_table(results, columns)
    lines += _method_notes(results, meta)
    lines += ["Details (counts behind each cell):", ""]
    for arm, ms in results.items():
        lines.append(f"- {ARM_TITLES.get(arm, arm)}: " + "; ".join(
            f"{m.name}[{m.split}] " + ", ".join(f"{k}={v}" for k, v in m.detail.items()
                                               if not isinstance(v, (dict, list)) or k == "env_failures")
            for m in ms))
    lines += [
        "",
        "## The paper's numbers, for reference (not ours)",
        "",
        "Qwen3-8B, arXiv 2603.08706 Table 1 (%). ALFWorld: success on valid_seen (ID, 140 games) / "
        "valid_unseen (OOD, 134 games); ScienceWorld: next-action accuracy. Ours above are a different "
        "model at a different scale: compare the ordering of the arms, not the values.",
        "",
        "| Arm (paper) | ALFWorld ID | ALFWorld OOD | WebShop | ScienceWorld | our arm |",
        "|---|---|---|---|---|---|",
    ]
    ours: dict[str, str] = {}
    for a, r in PAPER_ROW.items():  # the arm we ran for each paper row (else the one we could run)
        if a in results or r not in ours:
            ours[r] = a if a in results or r not in ours else ours[r]
    for row, vals in PAPER_TABLE1.items():
        mine = ours.get(row)
        lines.append(f"| {row} | " + " | ".join(f"{v:.2f}" for v in vals)
                     + f" | {'`' + mine + '`' + ('' if mine in results else ' (not run)') if mine else '—'} |")
    lines.append("")
    bench_png = {}
    for bench, doc in (benchmarks or {}).items():
        section, bench_png[bench] = _bench_section(out, bench, doc["results"], doc["meta"])
        lines += section
    if transfer:
        lines += _transfer_section(transfer)
    lines += _curve_section(out, judgement_curve)
    for bench, doc in (benchmarks or {}).items():
        lines += _curve_section(out, doc.get("judgement_curve"), bench)
    lines += _critiques(results)
    if traces:
        lines += _traces_side_by_side(traces)
    lines += ["## Run", "", "```json", json.dumps(meta, indent=2, default=str, sort_keys=True), "```", ""]
    md = out / "report.md"
    text = "\n".join(lines)
    md.write_text(text)
    html = out / "report.html"
    html.write_text(_html(text, f"ACT evaluation report — {meta.get('profile')}"))
    js = out / "report.json"
    write_json(js, {"meta": meta, "results": {a: [m.to_dict() for m in ms] for a, ms in results.items()},
                    **{bench: {"meta": doc["meta"], "results": {a: [m.to_dict() for m in ms]
                                                                for a, ms in doc["results"].items()}}
                       for bench, doc in (benchmarks or {}).items()},
                    **({"transfer": {"meta": transfer.get("meta"),
                                     "results": {a: [m.to_dict() for m in ms] for a, ms in transfer["results"].items()}},
                        "paper_table2": PAPER_TABLE2} if transfer else {}),
                    "paper_table1_qwen3_8b": PAPER_TABLE1})
    return {"json": js, "markdown": md, "png": png, "html": html, "bench_png": bench_png}


def _html(markdown_text: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "font-size:13px}pre{background:#f6f6f6;padding:8px;overflow:auto}img{max-width:100%}")
    import html as _h

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_h.escape(title)}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
