"""The console and the log file of ``act-pipeline run`` (Dagster layer).

A person following a run sees one line per stage (asset step) as it starts and as it ends (with
its duration), the assets' own progress lines (``context.log.info``: training "step i/n",
sampling "sampled i/n", ...), warnings, errors and failed asset checks (a passing check says
nothing), and the CLI's summary. Everything else goes to a log file for the run: Dagster's full
event stream (its DEBUG events), every Python warning (with the line of our code that triggered
it) and the transformers logger's lines.

Two parts:

* ``act_console_logger``: a Dagster logger. The job must know it (``LOGGERS``, registered with
  ``Definitions(loggers=LOGGERS)``, or by ``with_loggers(defs)``); ``run_config(log_file)`` turns it
  on for one run. A run launched without that run config (from the UI, by a schedule) gets
  Dagster's default console logger, as before.
* ``RunLog``: the set-up of this process around a run: the log file opened, Python warnings and
  the ``transformers`` logger routed to it, library progress bars off.

Public Dagster APIs only. The logger reads the step key and the Dagster event that Dagster sets
on each log record (attributes ``dagster_meta`` / ``dagster_event``, as Dagster's own
``JsonLogFormatter`` does); where they are absent it falls back to the plain message.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

LOGGER_KEY = "act_console"
FILE_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"  # Dagster's own layout, minus "dagster"
_META_ATTR, _EVENT_ATTR = "dagster_meta", "dagster_event"  # set by Dagster on every record it logs

# Lines a person follows: a step starts, ends, fails; our own messages at INFO and above.
_STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED,
                dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.ASSET_CHECK_EVALUATION}

_files: dict[str, logging.FileHandler] = {}
_starts: dict[tuple, float] = {}  # (run id, step key) -> when the step started (this process)
_written: dict[tuple, int] = {}  # (run id, step key) -> bytes written so far when the step started (this process)
_open_logs: list[RunLog] = []  # the RunLogs open in this process (entered, not yet exited)


def file_handler(path: str | os.PathLike) -> logging.FileHandler:
    """The one handler (per process) appending to a run's log file."""
    key = str(Path(path).resolve())
    if key not in _files:
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        h = logging.FileHandler(key, mode="a", encoding="utf-8")
        h.setFormatter(logging.Formatter(FILE_FORMAT))
        h.setLevel(logging.DEBUG)
        _files[key] = h
    return _files[key]


def close_file(path: str | os.PathLike) -> None:
    h = _files.pop(str(Path(path).resolve()), None)
    if h is not None:
        h.close()


def bytes_written() -> int | None:
    """Bytes this process and the child processes it has waited for caused to be written to storage
    (Linux's per-task I/O accounting, the ``write_bytes`` of ``/proc/<pid>/io``, which ``getrusage``
    reports as 512-byte ``ru_oublock`` blocks, children included once reaped). None off Linux, where
    ``ru_oublock`` counts operations, not blocks. Writes to a file removed before they reached the
    disk are counted too (the kernel's ``cancelled_write_bytes`` is not subtracted): what a step
    asked the disk to take.

    >>> import tempfile
    >>> before = bytes_written()
    >>> with tempfile.NamedTemporaryFile(dir=".") as f:
    ...     _ = f.write(b"x" * 1_000_000); f.flush(); os.fsync(f.fileno())
    ...     grew = bytes_written() - before
    >>> before is None or grew >= 1_000_000
    True
    """
    if not sys.platform.startswith("linux"):
        return None
    import resource

    return 512 * sum(resource.getrusage(who).ru_oublock for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def megabytes(n: int) -> str:
    """``n`` bytes, for a person: ``2.31 GB``, ``541.6 MB``, ``0.0 MB`` (decimal units, as ``du --si``).

    >>> megabytes(538_090_408), megabytes(2_312_000_000), megabytes(12_000)
    ('538.1 MB', '2.31 GB', '0.0 MB')
    """
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def step_label(step_key: str | None) -> str:
    """An asset step's key as its asset key reads (Dagster names an asset's op ``a__b`` for ``a/b``)."""
    return (step_key or "").replace("__", "/")


def _root_error(data) -> str:
    """The innermost error of a failure event, one line: ``ValueError: ...``."""
    err = getattr(data, "error", None)
    while getattr(err, "cause", None) is not None:
        err = err.cause
    if err is None:
        return ""
    msg = (getattr(err, "message", "") or "").strip().splitlines()
    return msg[-1] if msg else getattr(err, "cls_name", "") or ""


class ConsoleHandler(logging.Handler):
    """Writes the lines a person follows to ``sys.stdout`` (looked up at each line, so tests
    capturing stdout see them), in the order they happen."""

    def __init__(self, level: int = logging.INFO, log_file: str | None = None, check_steps=(), prefix: str = ""):
        super().__init__(logging.DEBUG)
        self.threshold = level
        self.prefix = prefix  # before each step's name: runs printing side by side (training seeds)
        self.log_file = log_file
        self.check_steps = set(check_steps)  # steps that only run asset checks: a line only if one fails

    def line(self, record: logging.LogRecord) -> str | None:
        meta = getattr(record, _META_ATTR, None) or {}
        event = getattr(record, _EVENT_ATTR, None) or meta.get("dagster_event")
        label = step_label(meta.get("step_key"))
        label = f"{self.prefix}{label}" if label else label
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        if event is not None and event.event_type in _STEP_EVENTS:
            key = (meta.get("run_id"), event.step_key)
            data = event.event_specific_data
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                if getattr(data, "passed", True) is not False:
                    return None
                sev = getattr(getattr(data, "severity", None), "value", "")
                asset = getattr(getattr(data, "asset_key", None), "to_user_string", lambda: "?")()
                return f"{stamp}  {asset}: check {getattr(data, 'check_name', '?')} FAILED ({sev})"
            if event.step_key in self.check_steps and (event.is_step_start or event.is_step_success):
                return None
            if event.is_step_start:
                _starts[key] = record.created
                _written[key] = bytes_written()
                return f"{stamp}  {label}: started"
            retry = event.is_step_up_for_retry
            started = _starts.pop(key, None) if not retry else _starts.get(key)
            was = _written.pop(key, None) if not retry else _written.get(key)
            took = getattr(data, "duration_ms", None)
            took = took / 1000 if took is not None else (record.created - started if started else None)
            dur = f" in {took:.1f} s" if took is not None else ""
            if event.is_step_success:
                # the step's bytes written, where its start was seen in this process (a step process
                # logs its own start and end; a run in one process logs every step's)
                now = bytes_written()
                wrote = f", wrote {megabytes(now - was)}" if was is not None and now is not None else ""
                return f"{stamp}  {label}: done{dur}{wrote}"
            if event.is_step_failure:
                where = f" (traceback in {self.log_file})" if self.log_file else ""
                return f"{stamp}  {label}: FAILED{dur}: {_root_error(data)}{where}"
            if event.is_step_skipped:
                return f"{stamp}  {label}: skipped (an upstream step failed)"
            return f"{stamp}  {label}: failed, will retry: {_root_error(data)}"
        if record.levelno < self.threshold:
            return None
        if event is not None and record.levelno < logging.WARNING:
            return None  # engine events at INFO: the file has them
        msg = meta.get("orig_message", record.getMessage()) if meta else record.getMessage()
        if event is not None and record.levelno >= logging.ERROR:
            err = _root_error(event.event_specific_data)
            msg = f"{msg}: {err}" if err and err not in msg else msg
        level = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
        return f"{stamp}  {label + ': ' if label else ''}{level}{msg}"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.line(record)
            if text is not None:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
        except Exception:
            self.handleError(record)


@dg.logger(
    config_schema={
        "log_file": dg.Field(str, is_required=False, description="Append the full event stream (DEBUG) here."),
        "console_level": dg.Field(str, default_value="INFO",
                                  description="Messages at this level and above appear on the console "
                                              "(besides one line per step start and end)."),
        "check_steps": dg.Field([str], default_value=[],
                                description="Steps that only run asset checks: no start and end lines, "
                                            "a line when a check fails."),
        "prefix": dg.Field(str, default_value="", description="Printed before each step's name (e.g. the "
                                                               "training seed of runs printing side by side)."),
    },
    description="act-pipeline's console: a line per step start and end, the assets' own messages; "
                "the full event stream to a log file.",
)
def act_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    cfg = init_context.logger_config
    log = logging.Logger(f"act_pipeline.run.{init_context.run_id}", level=logging.DEBUG)  # not in the tree
    log.addHandler(ConsoleHandler(logging.getLevelName(cfg["console_level"].upper()), cfg.get("log_file"),
                                  cfg["check_steps"], cfg["prefix"]))
    if cfg.get("log_file"):
        log.addHandler(file_handler(cfg["log_file"]))
    return log


LOGGERS = {LOGGER_KEY: act_console_logger}


def with_loggers(defs: dg.Definitions) -> dg.Definitions:
    """``defs`` with ``LOGGERS`` as its jobs' default loggers (unchanged if it has them already)."""
    if LOGGER_KEY in (defs.loggers or {}):
        return defs
    return dg.Definitions.merge(defs, dg.Definitions(loggers=LOGGERS))


def check_steps(defs: dg.Definitions) -> list[str]:
    """The steps (op names) of ``defs``'s asset checks that run apart from their asset."""
    return sorted({a.node_def.name for a in defs.asset_checks or []
                   if isinstance(a, dg.AssetsDefinition) and not a.keys})


def run_config(log_file: str | os.PathLike | None, console_level: str = "INFO", checks=(), prefix: str = "") -> dict:
    """Run config turning the console logger on for one run (merge into the job's run config);
    ``checks``: ``check_steps(defs)``; ``prefix``: before each step's name."""
    cfg = {"console_level": console_level, "check_steps": list(checks), "prefix": prefix}
    if log_file is not None:
        cfg["log_file"] = str(log_file)
    return {"loggers": {LOGGER_KEY: {"config": cfg}}}


# --------------------------------------------------------------------------- warnings, libraries


@dataclass(frozen=True)
class Quiet:
    """A known warning that goes to the log file only: category, where it is attributed
    (a regex on the file's path) and its message (a regex); ``why`` says whose it is."""

    category: type[Warning]
    where: str
    message: str
    why: str

    def matches(self, category, filename: str, message: str) -> bool:
        return (issubclass(category, self.category) and re.search(self.where, filename.replace(os.sep, "/"))
                is not None and re.search(self.message, message) is not None)


# Each is a library's notice about an API it is changing, triggered by the pipeline's (or TRL's)
# use of it; the log file keeps every occurrence with the line of our code that triggered it.
QUIET: tuple[Quiet, ...] = (
    Quiet(dg.BetaWarning, r"/act_pipeline/", r"^Parameter `data_version` of initializer `Output\.__init__`",
          "Dagster marks Output(data_version=...) beta; the assets record content hashes with it"),
    Quiet(FutureWarning, r"/transformers/(training_args|modeling_utils)\.py$",
          r"`(gradient_checkpointing|gradient_checkpointing_enable|gradient_checkpointing_disable|"
          r"is_gradient_checkpointing)` is deprecated and will be removed in v6",
          "transformers 5 renames gradient checkpointing; TRL and the training args use the old names"),
)


def _trigger() -> str | None:
    """The innermost frame of act_pipeline's own code on the stack (who triggered the warning)."""
    me = os.path.abspath(__file__)
    package = os.path.dirname(me)
    frame = inspect.currentframe()
    while frame is not None:
        f = os.path.abspath(frame.f_code.co_filename)
        if f.startswith(package + os.sep) and f != me:
            return f"{os.path.relpath(f, os.path.dirname(package))}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class RunLog:
    """This process around one run: the log file open, Python warnings written to it (one not
    in ``QUIET`` also appears on the console, as Python shows it), library progress bars off; and,
    by ``libraries()`` (it imports transformers: call it once the run is to happen), the
    transformers logger written to the file too. A context manager; it restores what it changed,
    except that library progress bars stay off in this process."""

    PROGRESS_BAR_VARIABLES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")

    def __init__(self, path: str | os.PathLike, quiet: tuple[Quiet, ...] = QUIET):
        self.path = Path(path)
        self.quiet = quiet
        self.log = logging.Logger("act_pipeline.run.process", level=logging.DEBUG)  # not in the tree
        self.counts = {"warnings": 0, "warnings_on_console": 0}
        self._undo: list = []

    def _showwarning(self, message, category, filename, lineno, file=None, line=None):
        self.counts["warnings"] += 1
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
        trigger = _trigger()
        self.log.warning("%s%s", text, f"\n  (triggered at {trigger})" if trigger else "")
        if not any(q.matches(category, filename, str(message)) for q in self.quiet):
            self.counts["warnings_on_console"] += 1
            try:  # as Python shows a warning (written here: a caller's replacement may record it instead)
                (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))
            except OSError:
                pass

    def __enter__(self) -> RunLog:
        _open_logs.append(self)
        self._undo.append(lambda: _open_logs.remove(self))
        self.handler = file_handler(self.path)
        self.log.addHandler(self.handler)
        orig = warnings.showwarning
        warnings.showwarning = self._showwarning
        self._undo.append(lambda: setattr(warnings, "showwarning", orig))
        # progress bars off, here and in the processes the run starts (they inherit the variables)
        saved = {v: os.environ.get(v) for v in self.PROGRESS_BAR_VARIABLES}
        for v in self.PROGRESS_BAR_VARIABLES:
            os.environ.setdefault(v, "1")
        self._undo.append(lambda: [os.environ.pop(v, None) if old is None else os.environ.__setitem__(v, old)
                                   for v, old in saved.items()])
        return self

    def libraries(self) -> None:
        """transformers' and datasets' progress bars off (in case they were imported before the
        variables were set); transformers' log lines to the file, its errors still on the console."""
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
        try:
            from transformers.utils import logging as tlog
        except ImportError:
            return
        tlog.disable_progress_bar()  # for the rest of this process (turning them on again warns)
        errors = logging.StreamHandler(sys.stderr)
        errors.setLevel(logging.ERROR)
        errors.setFormatter(logging.Formatter("[transformers] %(levelname)s: %(message)s"))
        tlog.disable_default_handler()
        tlog.add_handler(errors)
        tlog.add_handler(self.handler)

        def undo():
            tlog.remove_handler(errors)
            tlog.remove_handler(self.handler)
            tlog.enable_default_handler()
        self._undo.append(undo)

    def __exit__(self, *exc) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self.log.removeHandler(self.handler)
        close_file(self.path)


def step_process(log_file: str | os.PathLike) -> None:
    """The set-up of ``RunLog`` (warnings and the transformers logger into the run's log file,
    progress bars off) for the rest of this process, when it is a step's process of a multiprocess
    run (Dagster's multiprocess executor starts one per step); nothing where a ``RunLog`` is open
    already (the process that runs ``act-pipeline run``)."""
    if _open_logs:
        return
    RunLog(log_file).__enter__().libraries()  # never exited: the process ends with its step
