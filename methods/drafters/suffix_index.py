"""SuffixDecoding's indexes: occurrence counts of every substring of a set of token sequences.

SuffixDecoding (Oliaro et al., 2024) reads, for the newest tokens of the context, how often each
continuation followed them before. Its reference code keeps a depth-limited suffix tree with a
count per node; what the algorithm uses of it is only this (frontier-methods.md, A.3):

    count(S) = number of occurrences of the token string S in the index's sequences
               (an occurrence never straddles two sequences), and
    P(c | S) = count(S + c) / count(S), the denominator including occurrences of S that end
               their sequence (so the children's probabilities sum to at most 1).

A suffix automaton gives exactly these numbers. Its states are the classes of substrings with the
same set of end positions; a state's occurrence count ``occ`` is the size of that set, so every
string of a state has the same count, and ``occ`` of the target of edge ``c`` is count(S + c) for
every S of the state. The suffixes of the context fall into a few such classes (the suffix-link
chain of its match), which is what lets methods/drafters/suffix_speculation.py score every match
length at the cost of a handful.

Two kinds, both used by methods/drafters/suffix.py:

- ``CountingSuffixAutomaton``: built online, one token at a time, with ``occ`` kept exact after
  every append (each append adds one end position to every state on the new state's suffix-link
  chain). Used for the request's own text and for the answers generated in this run; several
  sequences live in one automaton, each closed by ``SEPARATOR``, which no context holds.
- ``CorpusSuffixIndex``: the automaton of a corpus, frozen into flat numpy arrays, cached in a
  file and memory-mapped: the edges sorted by token (for matching) and again by descending count
  (for drafting the most frequent continuations first), suffix links, lengths and counts.

File format (version 1, little-endian, our own; methods/drafters/array_file.py's layout):

    magic b"SDBSFX\\0\\0", u32 version, u32 header length, JSON header {"n_states", "n_edges",
    "n_tokens", "n_documents", "source", "tokenizer_fingerprint", "mode", ...}, then
               int64    edge_start[n_states + 1]  state s's edges are edge_start[s]:edge_start[s + 1]
               int32    edge_token[n_edges]       sorted by token within each state's slice
               int32    edge_target[n_edges]
               int32    ranked_token[n_edges]     the same edges by descending count, then token
               int32    ranked_target[n_edges]
               int32    ranked_count[n_edges]     occ of ranked_target
               int32    link[n_states]            -1 for the root
               int32    length[n_states]
               int32    occ[n_states]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from methods.drafters import native_automaton
from methods.drafters.array_file import read_named_arrays, read_or_build, write_arrays
from methods.drafters.suffix_automaton import SEPARATOR, SuffixAutomaton, automaton_of_documents, edge_lookup

MAGIC = b"SDBSFX\0\0"
FORMAT_VERSION = 1

_ARRAYS = (("edge_start", "<i8", "n_states+1"), ("edge_token", "<i4", "n_edges"), ("edge_target", "<i4", "n_edges"),
           ("ranked_token", "<i4", "n_edges"), ("ranked_target", "<i4", "n_edges"),
           ("ranked_count", "<i4", "n_edges"), ("link", "<i4", "n_states"), ("length", "<i4", "n_states"),
           ("occ", "<i4", "n_states"))


# ---------------------------------------------------------------------------------- online
class CountingSuffixAutomaton(SuffixAutomaton):
    """An online suffix automaton whose states know how often their strings occur."""

    def __init__(self) -> None:
        super().__init__()
        self.occ: list[int] = [0]  # the root (the empty string) is never asked for

    def append(self, token: int) -> None:
        before = len(self.length)
        super().append(token)
        occ, link = self.occ, self.link
        occ.append(0)  # the new state; it gains its one end position in the walk below
        if len(self.length) - before == 2:
            # The clone took the short strings of the split state: their end positions so far
            # are the split state's (the new one is added in the walk below).
            occ.append(occ[self.last_split])
        # The new end position belongs to every suffix of the text, i.e. to every state on the
        # suffix-link chain of the whole-text state.
        state = self.last
        while state > 0:
            occ[state] += 1
            state = link[state]

    def end_sequence(self) -> None:
        """Close the current sequence: nothing after this matches across the boundary."""
        self.append(SEPARATOR)

    def match(self, tokens: Sequence[int]) -> tuple[int, int]:
        """(state, length) of the longest suffix of ``tokens`` that occurs here ((0, 0): none)."""
        nxt, link, length = self.next, self.link, self.length
        state = matched = 0
        for token in tokens:
            target = nxt[state].get(token)
            while target is None and state > 0:
                state = link[state]
                matched = length[state]
                target = nxt[state].get(token)
            if target is None:
                state = matched = 0
            else:
                state, matched = target, matched + 1
        return state, matched


# ---------------------------------------------------------------------------------- frozen
@dataclass
class CorpusSuffixIndex:
    edge_start: np.ndarray
    edge_token: np.ndarray
    edge_target: np.ndarray
    ranked_token: np.ndarray
    ranked_target: np.ndarray
    ranked_count: np.ndarray
    link: np.ndarray
    length: np.ndarray
    occ: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return int(self.length.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.meta.get("n_tokens", 0))

    def transition(self, state: int, token: int) -> int:
        """The target of ``state``'s edge labelled ``token``, or -1 (StaticMatcher walks with it)."""
        return edge_lookup(self.edge_start, self.edge_token, self.edge_target, state, token)


def build_corpus_index(documents: Iterable[Sequence[int]], meta: Optional[dict] = None) -> CorpusSuffixIndex:
    """The frozen, counted suffix automaton of a corpus of token sequences."""
    built = automaton_of_documents(documents)
    edge_start, edge_token, edge_target = built.edge_start, built.edge_token, built.edge_target
    length, link = built.length, built.link
    occ = _occurrence_counts(length, link, built.first_end)
    # The same edges by descending count of their target, then token, within each state's slice.
    source = np.repeat(np.arange(built.n_states, dtype=np.int64), np.diff(edge_start))
    ranked = np.lexsort((edge_token, -occ[edge_target], source))
    info = dict(meta or {})
    info.update(n_tokens=int(built.tokens.size), n_documents=built.n_documents, n_states=built.n_states,
                n_edges=int(edge_token.size))
    return CorpusSuffixIndex(edge_start, edge_token.astype(np.int32), edge_target.astype(np.int32),
                             edge_token[ranked].astype(np.int32), edge_target[ranked].astype(np.int32),
                             occ[edge_target[ranked]].astype(np.int32), link.astype(np.int32),
                             length.astype(np.int32), occ.astype(np.int32), info)


def _occurrence_counts(length: np.ndarray, link: np.ndarray, first_end: np.ndarray) -> np.ndarray:
    """Per state, the number of its end positions. Each position is the end of exactly one state
    created by an append (not a clone: those are the states whose longest string is the whole
    text up to there), and belongs to that state's whole suffix-link chain; so the counts are the
    appended states' ones summed up the links, longest states first (a link is always shorter).
    In C where it can run, else this loop, its reference."""
    occ = (length == first_end + 1).astype(np.int64)
    occ[0] = 0
    native = native_automaton.occurrence_counts(length, link, occ)
    if native is not None:
        return native
    counts, links = occ.tolist(), link.tolist()
    for state in np.argsort(-length, kind="stable").tolist():
        if links[state] >= 0:  # every state but the root: the root counts every position
            counts[links[state]] += counts[state]
    return np.asarray(counts, dtype=np.int64)


def write_corpus_index(index: CorpusSuffixIndex, path: Path) -> None:
    """Write the index (atomically: a reader never sees half a file)."""
    write_arrays(path, MAGIC, FORMAT_VERSION, dict(index.meta),
                 [(getattr(index, name), dtype) for name, dtype, _ in _ARRAYS])


def read_corpus_index(path: Path, mmap: bool = True) -> CorpusSuffixIndex:
    header, arrays = read_named_arrays(Path(path), MAGIC, FORMAT_VERSION, "suffix-decoding index", _ARRAYS, mmap)
    return CorpusSuffixIndex(meta=header, **arrays)


# ---------------------------------------------------------------------------------- the bundled corpus
def cached_index_path(corpus: Path, tokenizer, mode: Optional[str] = None) -> Path:
    """Where the index of ``corpus`` for ``tokenizer`` is cached, named like REST's datastore and
    SAM-Decoding's automaton (by the corpus file's checksum, among others)."""
    from methods.drafters.rest_datastore import cached_corpus_index_path

    return cached_corpus_index_path(corpus, tokenizer, "suffix", "sdbsfx", FORMAT_VERSION, mode)


def corpus_index(tokenizer, corpus: Path) -> CorpusSuffixIndex:
    """The index of a conversation corpus's train split for this tokenizer (the documents of REST's
    datastore and SAM-Decoding's automaton), built on first use, cached, memory-mapped; a damaged
    cached index is built again."""
    corpus = Path(corpus)
    if not corpus.is_file():
        raise FileNotFoundError(f"SuffixDecoding's corpus {corpus} is missing")
    return read_or_build(cached_index_path(corpus, tokenizer), read_corpus_index,
                         lambda path: build_from_corpus(corpus, tokenizer, path),
                         f"suffix index of {corpus.name}")


def build_from_corpus(corpus: Path, tokenizer, out: Path) -> CorpusSuffixIndex:
    """The index of a conversation corpus's train split, written to ``out``."""
    from methods.drafters.rest_datastore import corpus_entries, default_mode, tokenizer_fingerprint

    mode = default_mode(tokenizer)
    entries = corpus_entries(Path(corpus), tokenizer, mode, include_heldout=False, progress=False)
    meta = {"source": Path(corpus).name, "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), "mode": mode,
            "include_heldout": False}
    index = build_corpus_index(entries, meta)
    write_corpus_index(index, out)
    return index
