"""The CLI's console and log file (``act_pipeline/console.py``) on a tiny real Dagster job, set up
exactly as ``act-pipeline run`` does: ``RunLog`` around the run, ``with_loggers(defs)``,
``run_config(log_file)`` and the run id chosen beforehand.

The console shows a start and an end line per asset step and the assets' INFO messages, a line for
a failed check only, no DEBUG engine events; the log file has the DEBUG events and the warnings (a known one on the console no more).
"""

from __future__ import annotations

import uuid
import warnings

import dagster as dg

from act_pipeline import console


@dg.asset
def first(context):
    context.log.info("step 1/2 (first)")
    context.log.debug("a debug line of ours")
    return 1


@dg.asset(key=["grp", "second"])
def second(context, first):
    context.log.info("sampled 2/2")
    warnings.warn("a warning nobody listed", UserWarning)
    warnings.warn(dg.BetaWarning("Parameter `data_version` of initializer `Output.__init__` is beta (test)"))
    from transformers.utils import logging as tlog

    tlog.get_logger("transformers.act_test").warning("a transformers notice")
    return first + 1


@dg.asset(deps=[second])
def broken():
    raise ValueError("the reason it broke")


@dg.asset_check(asset=first)
def first_is_one(first):
    return dg.AssetCheckResult(passed=first == 1)


@dg.asset_check(asset=second, name="second_is_three")
def second_is_three(second):
    return dg.AssetCheckResult(passed=second == 3, severity=dg.AssetCheckSeverity.WARN)


def _run(tmp_path, assets, capsys, checks=()):
    job = dg.define_asset_job("j", selection=dg.AssetSelection.all())
    defs = console.with_loggers(dg.Definitions(assets=assets, asset_checks=list(checks), jobs=[job]))
    run_id = str(uuid.uuid4())
    log_file = tmp_path / "logs" / f"{run_id}.log"
    quiet = (console.Quiet(dg.BetaWarning, r".*", r"^Parameter `data_version`", "test"),)
    with dg.DagsterInstance.ephemeral() as instance, console.RunLog(log_file, quiet=quiet) as runlog:
        runlog.libraries()
        result = defs.resolve_job_def("j").execute_in_process(
            instance=instance, run_id=run_id, raise_on_error=False, run_config=console.run_config(log_file, checks=console.check_steps(defs)))
    out = capsys.readouterr()
    return result, out, log_file.read_text(), runlog


def test_console_and_log_file(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result, out, log, runlog = _run(tmp_path, [first, second], capsys, [first_is_one, second_is_three])
    assert result.success
    lines = out.out.splitlines()
    for label in ("first", "grp/second"):
        assert sum(line.endswith(f"  {label}: started") for line in lines) == 1, out.out
        assert sum(f"  {label}: done in " in line for line in lines) == 1, out.out
    assert any(line.endswith("first: step 1/2 (first)") for line in lines)
    assert any(line.endswith("grp/second: sampled 2/2") for line in lines)
    # a check step says nothing unless its check fails
    assert any(line.endswith("grp/second: check second_is_three FAILED (WARN)") for line in lines), out.out
    assert "first_is_one" not in out.out
    # nothing else: no engine events, no DEBUG
    assert len(lines) == 7, out.out
    for noise in ("DEBUG", "STEP_START", "LOADED_INPUT", "RESOURCE_INIT", "a debug line of ours", "RUN_SUCCESS",
                  "a transformers notice"):
        assert noise not in out.out + out.err
    # the unlisted warning still reaches the console (stderr, as Python shows it); the listed one does not
    assert "a warning nobody listed" in out.err and "(test)" not in out.err
    assert runlog.counts == {"warnings": 2, "warnings_on_console": 1}
    # the file: the full event stream
    for event in ("DEBUG", "RUN_START", "STEP_START", "LOADED_INPUT", "STEP_SUCCESS", "RUN_SUCCESS",
                  "a debug line of ours", "step 1/2 (first)", "sampled 2/2",
                  "a warning nobody listed", "is beta (test)", "a transformers notice", "first_is_one"):
        assert event in log, event
    assert result.run_id in log


def test_failure_line_points_to_the_log(tmp_path, capsys):
    result, out, log, _ = _run(tmp_path, [first, second, broken], capsys)
    assert not result.success
    failed = [line for line in out.out.splitlines() if "broken: FAILED" in line]
    assert len(failed) == 1 and "the reason it broke" in failed[0] and "traceback in" in failed[0], out.out
    assert "Traceback" not in out.out
    assert "ValueError" in log and "STEP_FAILURE" in log


def test_done_line_states_the_bytes_the_step_wrote(tmp_path, capsys):
    """A step that writes 3 MB itself and 2 MB in a child process it waits for: its end line says at
    least 5.0 MB; a step that writes nothing says well under 1 MB (the log file's lines)."""
    import os
    import subprocess
    import sys

    import pytest

    if console.bytes_written() is None:
        pytest.skip("per-process write accounting is Linux's")
    child = ("import os, sys\nwith open(sys.argv[1], 'wb') as f:\n"
             "    f.write(b'y' * 2_000_000); f.flush(); os.fsync(f.fileno())")

    @dg.asset
    def writer():
        with open(tmp_path / "own.bin", "wb") as f:
            f.write(b"x" * 3_000_000)
            f.flush()
            os.fsync(f.fileno())
        subprocess.run([sys.executable, "-c", child, str(tmp_path / "child.bin")], check=True)
        return 1

    result, out, _, _ = _run(tmp_path, [first, writer], capsys)
    assert result.success
    done = {line.split("  ", 1)[1].split(":")[0]: line for line in out.out.splitlines() if ": done in " in line}
    wrote = {k: float(line.rsplit("wrote ", 1)[1].split()[0]) * (1000 if line.endswith("GB") else 1)
             for k, line in done.items()}
    assert wrote["writer"] >= 5.0, done
    assert wrote["first"] < 1.0, done
