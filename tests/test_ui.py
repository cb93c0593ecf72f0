"""`dagster dev` from the repo root serves the asset graph on 127.0.0.1 (checked over GraphQL)."""

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import REPO, SMOKE

ARMS = ("act_checkpoint", "il_policy", "il_baseline", "rl_policy", "rl_baseline", "early_experience")
# the smoke profile trains every arm of Table 1: Early Experience brings its two data assets
CHAIN = ("games", "expert_trajectories", "sampled_alternatives", "contrast_pairs", "alternative_outcomes",
         "reflections", *ARMS, "evaluation")
ALFWORLD = {"alfworld/" + a for a in (*CHAIN, "imported_expert_steps")}
EXPECTED = {"base_model", *ALFWORLD, "eval_report"}
SCIENCEWORLD = {"scienceworld/" + a for a in CHAIN}
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
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_graph_has_every_asset_dependency_and_check(webserver):
    _, nodes = webserver
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert set(by_key) == EXPECTED | SCIENCEWORLD  # the smoke profile enables ScienceWorld
    deps = {k: {"/".join(d["path"]) for d in n["dependencyKeys"]} for k, n in by_key.items()}
    assert deps["alfworld/act_checkpoint"] == {"base_model", "alfworld/contrast_pairs"}
    assert deps["alfworld/il_policy"] == {"alfworld/act_checkpoint", "alfworld/expert_trajectories"}
    assert deps["alfworld/il_baseline"] == {"base_model", "alfworld/expert_trajectories"}
    assert deps["alfworld/rl_policy"] == {"alfworld/act_checkpoint", "alfworld/expert_trajectories"}
    assert deps["alfworld/rl_baseline"] == {"base_model", "alfworld/expert_trajectories"}
    assert deps["alfworld/expert_trajectories"] == {"alfworld/games", "alfworld/imported_expert_steps"}
    # Early Experience: alternatives executed in the games, the base model's reflections, SFT from the base
    assert deps["alfworld/alternative_outcomes"] == {"alfworld/games", "alfworld/expert_trajectories",
                                                     "alfworld/sampled_alternatives"}
    assert deps["alfworld/reflections"] == {"base_model", "alfworld/expert_trajectories", "alfworld/alternative_outcomes"}
    assert deps["alfworld/early_experience"] == {"base_model", "alfworld/reflections"}
    # each benchmark's evaluation: the base model, its games, held-out steps and pairs, every arm
    for b in ("alfworld", "scienceworld"):
        assert deps[f"{b}/evaluation"] == {"base_model", *(f"{b}/{a}" for a in (
            "games", "expert_trajectories", "contrast_pairs", *ARMS))}, b
    assert deps["eval_report"] == {"alfworld/evaluation", "scienceworld/evaluation"}
    # ScienceWorld's chain: its own pairs and checkpoints, the one base model
    assert deps["scienceworld/act_checkpoint"] == {"base_model", "scienceworld/contrast_pairs"}
    assert deps["scienceworld/il_policy"] == {"scienceworld/act_checkpoint", "scienceworld/expert_trajectories"}
    # groups: one per benchmark, the shared base model and the report apart
    groups = {k: n["groupName"] for k, n in by_key.items()}
    assert groups == {k: ("model" if k == "base_model" else "evaluation" if k == "eval_report" else k.split("/")[0])
                      for k in by_key}, groups
    sw_checks = {c["name"] for c in by_key["scienceworld/contrast_pairs"]["assetChecksOrError"]["checks"]}
    assert "no_eval_state_in_training" in sw_checks
    checks = {c["name"]: c["blocking"] for c in by_key["alfworld/contrast_pairs"]["assetChecksOrError"]["checks"]}
    assert checks and all(checks.values())


def _listening_on(port: int) -> set[str]:
    """The addresses of the sockets listening on TCP ``port`` (any process; the kernel's socket table)."""
    import psutil

    return {c.laddr.ip for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}


def _loopback(ip: str) -> bool:
    a = ipaddress.ip_address(ip.split("%")[0])
    return a.is_loopback or (a.version == 6 and a.ipv4_mapped is not None and a.ipv4_mapped.is_loopback)


def test_webserver_listens_on_loopback_only(webserver):
    # the server's own listening sockets, not connection attempts to the host's other addresses (there
    # may be none: a hostname that resolves to 127.0.0.1 left the old loop empty)
    port, _ = webserver
    addrs = _listening_on(port)
    assert addrs, f"nothing listens on port {port}"
    assert all(_loopback(a) for a in addrs), f"port {port} listens on {sorted(addrs)}"


def test_the_listening_check_sees_a_socket_bound_to_every_address():
    for host, loopback in (("0.0.0.0", False), ("127.0.0.1", True)):
        with socket.socket() as s:
            s.bind((host, 0))
            s.listen()
            addrs = _listening_on(s.getsockname()[1])
        assert addrs == {host} and all(_loopback(a) for a in addrs) is loopback, (host, addrs)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1600,1000", "--virtual-time-budget=20000"]


def _chromium() -> str:
    """Debian's `chromium`; without it the test skips, or fails under CI."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):  # .ci/run exports CI=1
            pytest.fail("chromium is not installed (scripts/setup.sh installs Debian's chromium when run as root)")
        pytest.skip("chromium is not installed")
    return browser


def _headless(port: int, path: str, *args: str, stdout=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    import tempfile

    browser = _chromium()
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
                               f"http://127.0.0.1:{port}{path}"], check=True, timeout=180,
                              stdout=stdout, stderr=subprocess.DEVNULL)


def screenshot(port: int, out: Path, path: str = "/asset-groups") -> Path:
    """A headless Chromium (Debian's `chromium`) screenshot of a page of the UI."""
    _headless(port, path, f"--screenshot={out}")
    return out


def page_dom(port: int, path: str) -> str:
    """The page's DOM after its scripts ran (the same browser, flags and window as the screenshot)."""
    return _headless(port, path, "--dump-dom", stdout=subprocess.PIPE).stdout.decode()


class _Text(HTMLParser):
    """The page's text, one string per text node (scripts and styles left out), and the names its
    asset-graph nodes show (the elements of class AssetNode_assetName*)."""

    def __init__(self, dom: str):
        super().__init__()
        self.text, self.names, self._skip, self._name = [], [], 0, 0
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")
        cls = dict(attrs).get("class") or ""
        if self._name or any(c.startswith("AssetNode_assetName") for c in cls.split()):
            self._name += 1

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0
        self._name -= self._name > 0

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.text.append(data.strip())
            if self._name:
                self.names.append(data.strip())


def _shows(shown: str, name: str) -> bool:
    """``shown`` is ``name`` or the UI's middle-truncation of it (``expe…_trajectories``)."""
    head, sep, tail = shown.partition("…")
    return shown == name or bool(sep) and name.startswith(head) and name.endswith(tail) and len(name) > len(shown)


def test_without_chromium_screenshots_fail_under_ci_and_skip_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium on it
    for ci, outcome in (("1", pytest.fail.Exception), ("", pytest.skip.Exception)):
        monkeypatch.setenv("CI", ci)
        with pytest.raises(BaseException) as e:  # (a skip or a failure escaping here would end this test as one)
            screenshot(1, tmp_path / "x.png")
        assert e.type is outcome and "chromium is not installed" in str(e.value), (ci, e.type)


def _groups(nodes) -> dict[str, list[str]]:
    """{group: [asset keys]} of the graph the webserver serves (over GraphQL)."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        out.setdefault(n["groupName"], []).append("/".join(n["assetKey"]["path"]))
    return out


def _check_lineage_page(text: list[str], names: list[str], groups: dict[str, list[str]]) -> None:
    """The global lineage shows every group, collapsed, with the number of its assets (Dagster's
    group node labels it "11 assets" while it fetches statuses, then the number alone in a status badge)."""
    for g, keys in groups.items():
        count = f"{len(keys)} asset{'s' if len(keys) > 1 else ''}"
        assert any(a == g and (b.startswith(count) or b == str(len(keys))) for a, b in zip(text, text[1:])), \
            f"group {g!r} with {count!r} not on the page; its text: {' | '.join(text)}"


def _check_group_page(text: list[str], names: list[str], groups: dict[str, list[str]], group: str) -> None:
    """A group's page draws its assets (and their neighbours in other groups) by name. The graph view
    renders the nodes inside its window only (9 of alfworld's 11 at 1600x1000), so: every name drawn
    is an asset of the graph, and most of the group is drawn."""
    every = {k.rsplit("/", 1)[-1] for keys in groups.values() for k in keys}
    mine = {k.rsplit("/", 1)[-1] for k in groups[group]}
    assert names and all(any(_shows(s, n) for n in every) for s in names), names
    drawn = {n for n in mine if any(_shows(s, n) for s in names)}
    assert len(drawn) >= len(mine) - 3, (sorted(mine - drawn), names)
    assert group in text


@pytest.mark.parametrize("page,name", [("/asset-groups", "ui-lineage.png"),
                                       # README.md shows it as docs/ui-data-group.png (the group was `data`)
                                       ("/locations/act_pipeline/asset-groups/alfworld", "ui-data-group.png")])
def test_asset_graph_screenshot(webserver, tmp_path, page, name):
    port, nodes = webserver
    # dismiss the first-visit "join the community" dialog, as a person would click Skip
    assert _graphql(port, "mutation { setNuxSeen }")["data"]["setNuxSeen"] is True
    data = screenshot(port, tmp_path / name, page).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one
    # what the page shows, read from its DOM: the assets the webserver serves (a blank page, an error
    # page or an empty graph renders a PNG too)
    dom = _Text(page_dom(port, page))
    groups = _groups(nodes)
    if page == "/asset-groups":
        _check_lineage_page(dom.text, dom.names, groups)
    else:
        _check_group_page(dom.text, dom.names, groups, page.rsplit("/", 1)[-1])
    if os.environ.get("ACT_SCREENSHOT_DIR"):  # keep them, e.g. for the README (docs/)
        Path(os.environ["ACT_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["ACT_SCREENSHOT_DIR"]) / name).write_bytes(data)


def test_the_page_checks_tell_a_drawn_graph_from_one_without_its_assets():
    """The DOM checks against what the pages showed (text as chromium's DOM gives it), and against
    the same pages with an asset or a group missing."""
    # the page as it was recorded before Early Experience: alfworld's 11 assets
    early = {"alternative_outcomes", "reflections", "early_experience"}
    groups = {"model": ["base_model"], "evaluation": ["eval_report"],
              "alfworld": [f"alfworld/{a}" for a in (*CHAIN, "imported_expert_steps") if a not in early]}
    lineage = ["Global asset lineage", "alfworld", "evaluation", "model", "model", "1 asset (fetching statuses)",
               "alfworld", "11 assets (fetching statuses)", "evaluation", "1 asset (fetching statuses)"]
    _check_lineage_page(lineage, [], groups)
    for broken in (lineage[:-2], [t.replace("11 assets", "10 assets") for t in lineage]):
        with pytest.raises(AssertionError):
            _check_lineage_page(broken, [], groups)
    # the page with the smoke profile's 14 alfworld assets: each group's count alone beside its name
    groups14 = {**groups, "alfworld": [f"alfworld/{a}" for a in (*CHAIN, "imported_expert_steps")]}
    lineage14 = ["Global asset lineage", "Reload definitions", "alfworld", "alfworld", "evaluation", "evaluation",
                 "model", "model", "model", "1", "alfworld", "14", "evaluation", "1", "⌥O"]
    _check_lineage_page(lineage14, [], groups14)
    for broken in (lineage14[:-3], [t.replace("14", "13") for t in lineage14], lineage):
        with pytest.raises(AssertionError):
            _check_lineage_page(broken, [], groups14)
    drawn = ["act_checkpoint", "contrast_pairs", "evaluation", "expe…_trajectories", "il_baseline", "il_policy",
             "imported_ex…_steps", "rl_baseline", "samp…_alternatives", "base_model", "eval_report"]
    text = ["alfworld", "Asset Group in", *drawn]
    _check_group_page(text, drawn, groups, "alfworld")
    for broken in ([], drawn[:6], [*drawn, "somethi…_else"], ["exp…_tra"]):
        with pytest.raises(AssertionError):
            _check_group_page(text, broken, groups, "alfworld")
