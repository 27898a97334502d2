"""Preference oracles: `score(prompt, completion) -> float`, higher = preferred, and how to load one.

The benchmark treats an oracle as the hidden "true" preference the simulated annotators share. It must be
deterministic and cheap (it is called for every candidate an annotator ranks and every evaluation reply).
Nothing in the benchmark is tuned to the oracles below; any function with that signature works:

    --oracle bench/loop/oracles.py:length_target     a file and a function in it
    --oracle bench.loop.oracles:length_target        an importable module and a function in it

Shipped oracles (each a clear trait a small model can move towards in a few rounds):

- `length_target`: prefers replies of about TARGET_WORDS words; the score is minus the absolute distance in
  words, so 60 words beats 20 or 140. Tests whether the loop can move a length preference.
- `lexical_warmth`: prefers replies that use words from a fixed list of polite/helpful words (per 100
  words, capped), minus a small penalty for very short replies. Tests a lexical trait.
- `no_lists`: prefers prose over bulleted/numbered lists (minus the share of lines that are list items).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

Oracle = Callable[[str, str], float]

TARGET_WORDS = 60
_WARM = "please thank thanks happy glad welcome hope helpful sure certainly great kindly appreciate"
WARM_WORDS = frozenset(_WARM.split()) | {"gladly", "wonderful", "enjoy", "pleasure"}
_WORD = re.compile(r"[A-Za-z']+")
_LIST_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")


def length_target(prompt: str, completion: str) -> float:
    """Minus |words - TARGET_WORDS|: the closer to 60 words, the better (0 is best)."""
    return -abs(len(completion.split()) - TARGET_WORDS)


def lexical_warmth(prompt: str, completion: str) -> float:
    """Warm words per 100 words (capped at 10), minus 1 for replies under 5 words."""
    words = [w.lower() for w in _WORD.findall(completion)]
    if not words:
        return -1.0
    rate = 100.0 * sum(w in WARM_WORDS for w in words) / len(words)
    return min(rate, 10.0) - (1.0 if len(words) < 5 else 0.0)


def no_lists(prompt: str, completion: str) -> float:
    """Minus the share of non-empty lines that are list items (0 = pure prose, -1 = only a list)."""
    lines = [line for line in completion.splitlines() if line.strip()]
    if not lines:
        return -1.0
    return -sum(bool(_LIST_LINE.match(line)) for line in lines) / len(lines)


class OracleError(ValueError):
    """The oracle spec cannot be loaded; the message says why."""


def load_oracle(spec: str) -> Oracle:
    """`path/to/file.py:function` or `package.module:function` -> the callable.

    Raises OracleError when the spec has no `:`, the file or module is missing, or the name is not callable.
    """
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise OracleError(f"--oracle wants FILE.py:FUNCTION or module:function, got {spec!r}")
    if target.endswith(".py") or "/" in target or Path(target).is_file():
        path = Path(target)
        if not path.is_file():
            raise OracleError(f"oracle file {target!r} does not exist")
        mod_spec = importlib.util.spec_from_file_location(f"_loopbench_oracle_{path.stem}", path)
        if mod_spec is None or mod_spec.loader is None:
            raise OracleError(f"cannot import {target!r} as a Python file")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise OracleError(f"cannot import module {target!r}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise OracleError(f"{target!r} has no callable {name!r}")
    return fn
