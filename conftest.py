"""Test-wide environment: offline hub, the smoke profile (assets read it at import time)."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ACT_PROFILE", str(Path(__file__).resolve().parent / "configs" / "smoke.yaml"))
