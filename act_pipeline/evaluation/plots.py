"""Small plots written beside artifacts (the report's own figures are in ``report.py``)."""

from __future__ import annotations

from pathlib import Path


def training_curve_png(out: Path, history: list[dict]) -> Path:
    """The training curve (reward for GRPO, loss for SFT) of ``history`` (the trainer's log) as
    ``out``, a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "reward" if any("reward" in h for h in history) else "loss"
    pts = [(h["step"], h[key]) for h in history if key in h and isinstance(h[key], (int, float))]
    fig, ax = plt.subplots(figsize=(5, 2.6))
    if pts:
        ax.plot(*zip(*pts), marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
