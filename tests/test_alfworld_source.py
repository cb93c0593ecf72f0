"""Where the tests' ALFWorld games come from (tests/alfworld_source.py): the official data when it is
there, required under CI, games generated offline otherwise; ACT_TEST_NO_OFFICIAL_DATA=1 hides the
official data and is refused under CI. Real folders, the real decision; nothing is generated here
(the generated source is what the ALFWorld tests play whenever the official data is absent)."""

import os
from pathlib import Path

import pytest

from . import alfworld_source as src

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout with nothing beside it; the test's environment without CI, ALFWORLD_DATA, the override."""
    for name in ("CI", "ALFWORLD_DATA", src.NO_OFFICIAL):
        monkeypatch.delenv(name, raising=False)
    repo = tmp_path / "clone" / "act-pipeline"
    repo.mkdir(parents=True)
    return repo


def _official(root):
    (root / "json_2.1.1" / "train").mkdir(parents=True)
    return root


def test_a_fresh_clone_has_no_official_data(checkout):
    assert src.official_data(checkout) is None


def test_the_official_data_beside_the_checkout_or_in_alfworld_data(checkout, tmp_path, monkeypatch):
    beside = _official(checkout.parent / "shared" / "alfworld")
    assert src.official_data(checkout) == beside
    chosen = _official(tmp_path / "mine")
    monkeypatch.setenv("ALFWORLD_DATA", str(chosen))  # ALFWORLD_DATA comes first
    assert src.official_data(checkout) == chosen
    source = src.decide(checkout, tmp_path_factory=None)  # official: nothing to generate
    assert source == src.GamesSource(chosen, official=True)
    assert src.expected_games(source, "valid_seen") == 140 and src.expected_games(source, "valid_unseen") == 134


def test_an_alfworld_data_without_games_is_an_error_not_a_fallback(checkout, tmp_path, monkeypatch):
    _official(checkout.parent / "shared" / "alfworld")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "empty"))
    with pytest.raises(pytest.fail.Exception, match=r"ALFWORLD_DATA=.*empty holds no json_2.1.1/"):
        src.official_data(checkout)


def test_under_ci_missing_official_data_fails(checkout, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="official ALFWorld games are required under CI"):
        src.decide(checkout, tmp_path_factory=None)  # fails before anything would be generated


@pytest.mark.parametrize("ci,under", [("", False), ("0", False), ("false", False), ("1", True), ("true", True)])
def test_what_counts_as_ci(checkout, monkeypatch, ci, under):
    monkeypatch.setenv("CI", ci)
    assert src.under_ci() is under


def test_the_override_hides_the_official_data(checkout, tmp_path, monkeypatch):
    _official(checkout.parent / "shared" / "alfworld")
    monkeypatch.setenv("ALFWORLD_DATA", str(_official(tmp_path / "mine")))
    monkeypatch.setenv(src.NO_OFFICIAL, "1")
    assert src.official_data(checkout) is None
    src.configure()  # what the session start does: the tests that read ALFWORLD_DATA see none either
    assert "ALFWORLD_DATA" not in os.environ
    monkeypatch.setenv(src.NO_OFFICIAL, "0")
    assert src.official_data(checkout) == checkout.parent / "shared" / "alfworld"


@pytest.mark.parametrize("ci,value,needle", [
    ("1", "1", "refused under CI"),
    ("", "yes", "expected 1"),
])
def test_the_override_is_refused_under_ci_and_when_misspelt(checkout, monkeypatch, ci, value, needle):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv(src.NO_OFFICIAL, value)
    with pytest.raises(pytest.UsageError, match=needle):
        src.configure()
    with pytest.raises(pytest.UsageError, match=needle):
        src.official_data(checkout)


IMPORT_THEN_RESOLVE = """
import os, sys
from act_pipeline.envs import alfworld as aw
aw.game_logic()  # imports alfworld (alfworld/info.py), as building a game does
from act_pipeline.envs.alfworld_gen.tables import _constants
_constants()
assert "alfworld" in sys.modules
print(repr(os.environ.get("ALFWORLD_DATA")), aw.resolve_data_root(None))
"""


@pytest.mark.parametrize("value", [None, "official"])
def test_importing_alfworld_leaves_alfworld_data_as_it_was(tmp_path, value):
    """alfworld's import sets ALFWORLD_DATA to its own (empty) cache folder when it is unset: after
    it, an unset variable must still read as unset (games generated offline, not "a folder without
    the data"), and a set one keep its value. A fresh process, since this one has imported alfworld."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ALFWORLD_DATA"}
    if value:
        for split in ("train", "valid_seen", "valid_unseen"):
            (tmp_path / "json_2.1.1" / split).mkdir(parents=True)
        env["ALFWORLD_DATA"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", IMPORT_THEN_RESOLVE], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = f"{str(tmp_path)!r} {tmp_path}" if value else "None None"
    assert out.stdout.strip() == expected
