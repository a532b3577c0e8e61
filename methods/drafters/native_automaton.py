"""The corpus automata's native builder: native_automaton.c, compiled on first use.

With the Python builder (a dict of edges per state) SAM-Decoding's automaton and SuffixDecoding's
index of the bundled corpus (4.9M tokens with separators, 7.3M states) peaked at 3.7 GB of
memory; this C builder runs the same construction over flat arrays that the caller allocates from
the bounds of the automaton (at most 2n states and 3n edges for n tokens), and also does the two
pushes up the suffix links (longest continuation, occurrence counts), in one pass each over the
states sorted by length. Measured on the bundled corpus, each build in its own process, on a
machine that was also running a training job: automaton 11 s and 1.3 GB peak (Python: 38 s,
3.7 GB), suffix index 15 s and 1.5 GB (Python: 37 s, 3.7 GB), files byte-identical. The functions
here return None where C cannot run (no C compiler, the compilation failed, or
``SDBENCH_NATIVE_KERNEL=0``), and the callers then run the Python code, the reference that
tests/test_native_automaton.py compares them with.
"""

from __future__ import annotations

import ctypes
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from methods.core.native_build import compile_cached, find_compiler

SOURCE = Path(__file__).with_name("native_automaton.c")
DISABLE_ENV = "SDBENCH_NATIVE_KERNEL"  # one switch for all native code
_state: dict = {}


def load() -> Optional[ctypes.CDLL]:
    """The compiled builder, or None (with the reason in ``why_not()``, said once on stderr)."""
    if "library" in _state:
        return _state["library"]
    library, reason = None, None
    compiler = find_compiler()
    if os.environ.get(DISABLE_ENV, "1") == "0":
        reason = f"{DISABLE_ENV}=0"
    elif compiler is None:
        reason = "no C compiler (cc, gcc or clang) on PATH"
    else:
        try:
            library = ctypes.CDLL(str(compile_cached(compiler, "automaton", (SOURCE,), (), ["-O2"])))
            library.sam_build.restype = ctypes.c_int
            library.sam_build.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                          ctypes.c_int64] + [ctypes.c_void_p] * 10
            library.sam_continuation_ends.restype = None
            library.sam_continuation_ends.argtypes = [ctypes.c_int64] + [ctypes.c_void_p] * 6 + [ctypes.c_int64]
            library.sam_occurrence_counts.restype = None
            library.sam_occurrence_counts.argtypes = [ctypes.c_int64] + [ctypes.c_void_p] * 5 + [ctypes.c_int64]
        except (OSError, RuntimeError) as exc:
            reason = str(exc)
    _state["library"], _state["why_not"] = library, reason
    if library is None and reason != f"{DISABLE_ENV}=0":
        warnings.warn(f"suffix automata are built in Python instead of C ({reason}): the same result, "
                      f"slower and with several times the memory", RuntimeWarning)
    return library


def why_not() -> Optional[str]:
    load()
    return _state["why_not"]


def build(tokens: np.ndarray) -> Optional[tuple[np.ndarray, ...]]:
    """The automaton of ``tokens`` (int32) as (link, length, first_end, edge_src, edge_token,
    edge_target), numbered as SuffixAutomaton numbers its states and edges in the order they were
    added, or None where the native builder cannot run."""
    library = load()
    if library is None:
        return None
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    n = int(tokens.size)
    states_cap, edges_cap = 2 * n + 2, 3 * n + 4
    if states_cap >= 2**31 or edges_cap >= 2**31:
        raise ValueError("corpus too large for 32-bit state ids")
    table_size = 1 << (2 * edges_cap).bit_length()  # a power of two above twice the edges: load <= 1/2
    link, length, head = (np.empty(states_cap, dtype=np.int32) for _ in range(3))
    first_end = np.empty(states_cap, dtype=np.int64)
    src, tok, target, nxt = (np.empty(edges_cap, dtype=np.int32) for _ in range(4))
    table = np.empty(table_size, dtype=np.int32)
    counts = np.zeros(2, dtype=np.int64)
    pointer = [a.ctypes.data for a in (link, length, first_end, head, src, tok, target, nxt, table, counts)]
    if library.sam_build(n, tokens.ctypes.data, states_cap, edges_cap, table_size, *pointer) != 0:
        raise RuntimeError("the native suffix automaton outgrew its bounds (2n states, 3n edges): a bug")
    del table, head, nxt  # build-time scratch
    states, edges = int(counts[0]), int(counts[1])
    return (link[:states].copy(), length[:states].copy(), first_end[:states].copy(), src[:edges].copy(),
            tok[:edges].copy(), target[:edges].copy())


def _push_up_links(function: str, length: np.ndarray, link: np.ndarray, values: np.ndarray, *extra) -> Optional[np.ndarray]:
    """Runs one of the C pushes up the suffix links over a copy of ``values`` (int64), the caller's
    arrays left as they were; None where C cannot run."""
    library = load()
    if library is None:
        return None
    length = np.ascontiguousarray(length, dtype=np.int32)
    link = np.ascontiguousarray(link, dtype=np.int32)
    values = np.array(values, dtype=np.int64)
    n_states = int(length.size)
    max_length = int(length.max()) if n_states else 0
    order = np.empty(n_states, dtype=np.int32)  # scratch: the states sorted by length
    bucket = np.empty(max_length + 2, dtype=np.int64)  # scratch: the counting sort's buckets
    getattr(library, function)(n_states, length.ctypes.data, link.ctypes.data, *[e.ctypes.data for e in extra],
                               values.ctypes.data, order.ctypes.data, bucket.ctypes.data, max_length)
    return values


def continuation_ends(length: np.ndarray, link: np.ndarray, left: np.ndarray, best: np.ndarray) -> Optional[np.ndarray]:
    """suffix_automaton._longest_continuation_ends's push up the suffix links, in C: ``best`` (each
    appended state's own end position, -1 elsewhere) after every state has offered its best to its
    link; ``left[pos]`` is the number of tokens after pos in its document. None where the native
    builder cannot run."""
    return _push_up_links("sam_continuation_ends", length, link, best, np.ascontiguousarray(left, dtype=np.int64))


def occurrence_counts(length: np.ndarray, link: np.ndarray, occ: np.ndarray) -> Optional[np.ndarray]:
    """suffix_index._occurrence_counts's sum up the suffix links, in C: ``occ`` (1 for each
    appended state, 0 elsewhere) after every state has added its count to its link's. None where
    the native builder cannot run."""
    return _push_up_links("sam_occurrence_counts", length, link, occ)
