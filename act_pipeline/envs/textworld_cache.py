"""Memoized parsing and PDDL translation for TextWorld's PDDL games (ALFWorld's engine).

What an ALFWorld game spends its time on, profiled here (textworld 1.7.0, one game, 3 resets and
45 steps: 9.05 s):

* **every reset** translates the game's PDDL problem to SAS+ twice (``fast_downward.pddl2sas``,
  plain and ``optimize=True``): ~0.7 of a reset's 0.9 s, the same input giving the same output every
  time;
* **every step** words each admissible action by deriving its command template with the game's
  grammar (``textgen.ContextSensitiveGrammar.derive``), which re-parses the same few template
  strings with a TatSu parser, and parses the grammar rules' conditions
  (``textworld.logic._parse_and_convert``) each time: ~60% of a step.

:func:`install` memoizes those three functions in this process: a translation per (domain,
problem, flags), a parse per (text, rule). They are pure functions of their arguments (the
translator and the parsers hold no state between calls), so a memoized call returns what a fresh
call would. Parses are handed out as deep copies (the grammar sets each parsed symbol's context in
place); a translation is shared (``PddlState`` only reads the task it returns). Measured on that
game: **9.05 s → 2.23 s, the same observations and admissible lists** (tests/test_textworld_cache.py
plays real games both ways and compares every step). The expert's roll-outs, Early Experience's
replays and the evaluation's games all go through it (:class:`~act_pipeline.envs.alfworld.AlfworldGame`
installs it).

**Library copies reused.** ``fast_downward.load_lib`` (called by every ``PddlEnv``) copies
``libdownward.so`` (33.8 MB) into a new temporary folder and loads that copy, so each game gets
the C++ planner's global state to itself. Measured: every game opened wrote those 33.8 MB to disk
(on the smoke profile's run, 1.55 of the 1.99 GB it wrote: README, Games) and mapped one more copy of the library. A
game's state in its copy is set whole by ``load_sas`` each time the game is loaded or reset
(``PddlState``): that is how TextWorld's own reset starts a game over. So a copy whose game has
been closed (:func:`release_lib`, called by ``AlfworldGame.close``) is handed to the next game this
process opens instead of a new copy; games open at the same time still each have their own
(a worker hosts several). A new copy is written to memory (``/dev/shm``, :data:`IN_MEMORY`) rather
than to disk: the same file loaded the same way, removed once loaded as before; where that folder
is missing, full or not allowed to hold a library (``noexec``), the library's own temporary folder.
tests/test_textworld_cache.py plays games one after another on reused copies and compares every
step with fresh copies.

:func:`uninstall` puts the library's functions back (the tests play both ways in one process).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import threading
from collections import namedtuple

TRANSLATIONS = 16  # games whose translations are kept (a game's resets hit; a worker plays one game at a time)
PARSES = 8192  # distinct (text, rule) parses kept: the grammars' templates and conditions

_lock = threading.Lock()
_originals: dict[tuple[object, str], object] = {}
_libs_lock = threading.Lock()
_free_libs: list = []  # library copies whose games have closed: the next games opened here take them
_LibInfo = namedtuple("_LibInfo", "hits misses free")  # reused, copied, waiting
IN_MEMORY = "/dev/shm"  # where a new copy of libdownward.so is written (a tmpfs on Linux)


def _memo_translation(pddl2sas):
    @functools.lru_cache(maxsize=TRANSLATIONS)
    def cached(domain: str, problem: str, verbose: bool, optimize: bool):
        return pddl2sas(domain, problem, verbose=verbose, optimize=optimize)

    @functools.wraps(pddl2sas)
    def translate(domain: str, problem: str, verbose: bool = False, optimize: bool = False):
        return cached(domain, problem, bool(verbose), bool(optimize))

    translate.cache_info = cached.cache_info
    return translate


def _memo_parse(parse):
    @functools.lru_cache(maxsize=PARSES)
    def cached(args: tuple, kwargs: tuple):
        return parse(*args, **dict(kwargs))

    @functools.wraps(parse)
    def parse_copy(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        try:
            hash(key)
        except TypeError:  # an argument that cannot be a key (TextWorld passes strings and flags): not memoized
            return parse(*args, **kwargs)
        return copy.deepcopy(cached(*key))

    parse_copy.cache_info = cached.cache_info
    return parse_copy


def _reuse_lib(load_lib):
    counts = {"hits": 0, "misses": 0}

    @functools.wraps(load_lib)
    def load():
        with _libs_lock:
            if _free_libs:
                counts["hits"] += 1
                return _free_libs.pop()
            counts["misses"] += 1
            try:  # a fresh copy, written to a temporary folder in memory and loaded
                with _copies_in(IN_MEMORY):
                    return load_lib()
            except OSError:  # no such folder, full, or noexec: the library's own temporary folder
                return load_lib()

    load.cache_info = lambda: _LibInfo(counts["hits"], counts["misses"], len(_free_libs))
    return load


@contextlib.contextmanager
def _copies_in(folder: str):
    """``fast_downward.load_lib`` makes its temporary folder in ``folder`` (the module's own
    ``tempfile``, seen through a stand-in that sets ``dir``; nothing else's temporary files move).
    Called with ``_libs_lock`` held, so one load at a time swaps it."""
    import tempfile

    import fast_downward.interface as interface

    if not os.path.isdir(folder):
        raise FileNotFoundError(folder)

    class InFolder:
        def __getattr__(self, name):
            return getattr(tempfile, name)

        @staticmethod
        def TemporaryDirectory(*args, **kwargs):  # noqa: N802 (tempfile's name)
            kwargs.setdefault("dir", folder)
            return tempfile.TemporaryDirectory(*args, **kwargs)

    own = interface.tempfile
    interface.tempfile = InFolder()
    try:
        yield
    finally:
        interface.tempfile = own


def release_lib(lib) -> None:
    """``lib`` (a game's ``downward_lib``) is free: its game is closed and will not be played again.
    The next game this process opens takes it instead of a new copy; without :func:`install`, nothing."""
    if lib is None or not installed():
        return
    with _libs_lock:
        if not any(lib is free for free in _free_libs):
            _free_libs.append(lib)


def _targets():
    import fast_downward
    import textworld.envs.pddl.textgen as textgen
    import textworld.logic as logic

    # (module, attribute, wrapper): each module calls the function through its own global, read at call time
    return [(fast_downward, "pddl2sas", _memo_translation),
            (fast_downward, "load_lib", _reuse_lib),
            (textgen, "_parse_and_convert", _memo_parse),
            (logic, "_parse_and_convert", _memo_parse)]


def install() -> None:
    """Memoize TextWorld's PDDL translation and parsing in this process (idempotent, thread-safe)."""
    with _lock:
        for module, name, wrap in _targets():
            if (module, name) not in _originals:
                _originals[(module, name)] = getattr(module, name)
                setattr(module, name, wrap(getattr(module, name)))


def uninstall() -> None:
    """The library's own functions back, the memos dropped."""
    with _lock:
        for (module, name), original in _originals.items():
            setattr(module, name, original)
        _originals.clear()
    with _libs_lock:
        _free_libs.clear()


def installed() -> bool:
    return bool(_originals)


def stats() -> dict[str, dict]:
    """Hits and misses of each memo (empty when not installed); for ``fast_downward.load_lib``,
    library copies reused (hits) and made (misses), and how many wait for a game (free)."""
    with _lock:
        return {f"{module.__name__}.{name}": getattr(module, name).cache_info()._asdict()
                for (module, name) in _originals}
