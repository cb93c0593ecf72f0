"""`dagster dev` from the repo root serves the asset graph on 127.0.0.1 (checked over GraphQL)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO, SMOKE

EXPECTED = {"base_model", "alfworld_games", "imported_expert_steps", "expert_trajectories", "sampled_alternatives", "contrast_pairs",
            "act_checkpoint", "il_policy", "il_baseline", "eval_report"}
QUERY = """{ assetNodes { assetKey { path } dependencyKeys { path } groupName
              assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    port = _free_port()
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(os.environ, DAGSTER_HOME=str(home), ACT_PROFILE=str(SMOKE),
               ACT_HOME=str(tmp_path_factory.mktemp("act_home")))
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: stop it and its children together
    try:
        deadline = time.time() + 240
        while True:
            try:
                data = _graphql(port, QUERY)
                if data.get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"dagster dev did not serve the asset graph (exit code {proc.poll()})")
            time.sleep(2)
        yield port, data["data"]["assetNodes"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_graph_has_every_asset_dependency_and_check(webserver):
    _, nodes = webserver
    by_key = {n["assetKey"]["path"][-1]: n for n in nodes}
    assert set(by_key) == EXPECTED
    deps = {k: {d["path"][-1] for d in n["dependencyKeys"]} for k, n in by_key.items()}
    assert deps["act_checkpoint"] == {"base_model", "contrast_pairs"}
    assert deps["il_policy"] == {"act_checkpoint", "expert_trajectories"}
    assert deps["il_baseline"] == {"base_model", "expert_trajectories"}
    assert deps["eval_report"] >= {"il_policy", "il_baseline", "act_checkpoint", "base_model"}
    checks = {c["name"]: c["blocking"] for c in by_key["contrast_pairs"]["assetChecksOrError"]["checks"]}
    assert checks and all(checks.values())


def test_webserver_listens_on_loopback_only(webserver):
    port, _ = webserver
    addrs = [a for a in socket.getaddrinfo(socket.gethostname(), None) if not a[4][0].startswith("127.")]
    for fam, _, _, _, sockaddr in addrs[:1]:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            assert s.connect_ex((sockaddr[0], port)) != 0  # not reachable on a non-loopback address
