"""The evaluation report: JSON (machine-readable), Markdown (people) and a PNG plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from act_pipeline.evaluation.metrics import Metric
from act_pipeline.training.common import write_json

# (metric name, split) -> column title; the order of the report's table
COLUMNS = [
    ("judgement_accuracy", "valid_unseen", "Judgement acc. (held-out pairs)"),
    ("next_action_accuracy", "valid_unseen", "Next-action acc. (held-out states)"),
    ("success_rate", "valid_seen", "ALFWorld success, valid_seen (ID)"),
    ("success_rate", "valid_unseen", "ALFWorld success, valid_unseen (OOD)"),
]
ARM_TITLES = {
    "base": "Prompt (base model, no thinking)",
    "il_baseline": "IL (SFT from base)",
    "act_checkpoint": "ACT only",
    "il_policy": "IL w/ ACT",
}
PAPER_QWEN3_8B = {  # ALFWorld ID / OOD success, %, from the paper's Table 1 (Qwen3-8B)
    "base": (35.71, 27.61), "act_checkpoint": (72.86, 72.39), "il_baseline": (85.71, 82.84),
    "il_policy": (91.43, 87.31),
}


def _cell(m: Metric | None) -> str:
    if m is None:
        return "—"
    return f"{100 * m.value:.1f}% (N={m.n})"


def _index(results: Mapping[str, list[Metric]]) -> dict[str, dict[tuple[str, str], Metric]]:
    return {arm: {(m.name, m.split): m for m in ms} for arm, ms in results.items()}


def plot(results: Mapping[str, list[Metric]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = _index(results)
    arms = list(results)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(COLUMNS)
    for j, (name, split, label) in enumerate(COLUMNS):
        vals = [100 * idx[a][(name, split)].value if (name, split) in idx[a] else 0 for a in arms]
        xs = [i + (j - (len(COLUMNS) - 1) / 2) * width for i in range(len(arms))]
        bars = ax.bar(xs, vals, width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(arms)), [ARM_TITLES.get(a, a) for a in arms], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    out_dir: str | Path, results: Mapping[str, list[Metric]], meta: dict,
    traces: Mapping[str, list[dict]] | None = None,
) -> dict[str, Path]:
    """Write report.json, report.md and report.png into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    idx = _index(results)
    seed = meta.get("seed")
    png = plot(results, out / "report.png", f"ACT pipeline — profile {meta.get('profile')}, "
               f"model {meta.get('model_name')}, seed {seed}")
    lines = [
        f"# ACT evaluation report — profile `{meta.get('profile')}`",
        "",
        f"Base model: `{meta.get('model_name')}` (hash `{str(meta.get('base_model_hash'))[:12]}`). "
        f"Evaluation seed: {seed}; decoding: greedy. Each cell: value (N = items evaluated).",
        "",
        "| Arm | " + " | ".join(c[2] for c in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for arm in results:
        lines.append(f"| {ARM_TITLES.get(arm, arm)} | "
                     + " | ".join(_cell(idx[arm].get((n, s))) for n, s, _ in COLUMNS) + " |")
    lines += ["", "Details (counts behind each cell):", ""]
    for arm, ms in results.items():
        lines.append(f"- {ARM_TITLES.get(arm, arm)}: " + "; ".join(
            f"{m.name}[{m.split}] " + ", ".join(f"{k}={v}" for k, v in m.detail.items() if not isinstance(v, dict))
            for m in ms))
    lines += [
        "",
        "Splits: held-out pairs and held-out expert states come from `valid_unseen` games, which "
        "no training data touches; success rates are over the first N games (sorted by id) of "
        f"each split, max {meta.get('max_steps')} steps per episode.",
        "",
        "## The paper, for reference (not our numbers)",
        "",
        "Qwen3-8B, ALFWorld success % (valid_seen ID / valid_unseen OOD), arXiv 2603.08706 Table 1:",
        "",
        "| Arm | ID | OOD |",
        "|---|---|---|",
    ]
    for arm, (i, o) in PAPER_QWEN3_8B.items():
        lines.append(f"| {ARM_TITLES[arm]} | {i:.2f} | {o:.2f} |")
    lines += ["", "![results](report.png)", ""]
    if traces:
        lines += ["## Example episodes (first game of valid_unseen)", ""]
        for arm, trace in traces.items():
            lines.append(f"**{ARM_TITLES.get(arm, arm)}** — won: {trace[0]['won'] if trace else '—'}")
            lines.append("")
            lines.append("```")
            for t in (trace[0]["trace"][:8] if trace else []):
                lines.append(f"> {t[0]}\n{t[1][:160]}")
            lines.append("```")
            lines.append("")
    lines += ["## Run", "", "```json", json.dumps(meta, indent=2, default=str, sort_keys=True), "```", ""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    js = out / "report.json"
    write_json(js, {"meta": meta, "results": {a: [m.to_dict() for m in ms] for a, ms in results.items()}})
    return {"json": js, "markdown": md, "png": png}
