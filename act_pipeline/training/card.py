"""Model cards: what made a checkpoint, written inside the checkpoint folder (JSON + Markdown)."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

from act_pipeline.config import REPO_ROOT

ENV_PACKAGES = ("torch", "transformers", "trl", "alfworld", "textworld", "scienceworld", "dagster", "duckdb")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in ENV_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def write_model_card(folder: Path, card: dict) -> None:
    card = {**card, "packages": package_versions(), "git_commit": git_commit()}
    (folder / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    lines = [f"# {card.get('asset', 'checkpoint')}", "", card.get("description", ""), "",
             "| field | value |", "|---|---|"]
    for k, v in card.items():
        if k in ("description", "config"):
            continue
        lines.append(f"| {k} | `{json.dumps(v, default=str, sort_keys=True)}` |")
    lines += ["", "## Config", "", "```json", json.dumps(card.get("config", {}), indent=2, sort_keys=True), "```", ""]
    (folder / "README.md").write_text("\n".join(lines))
