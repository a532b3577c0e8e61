"""Suffix automata over token ids: SAM-Decoding's retrieval structure (Hu et al., 2024).

The suffix automaton of a text is the smallest automaton that accepts exactly its substrings. A
state stands for a set of substrings that end at the same set of positions; it keeps the length
of its longest substring, a suffix link (the state of the longest suffix that ends at more
positions) and, here, one end position of its substrings, so that the tokens that followed that
occurrence can be read from the text. Appending a token costs amortised O(1) (Blumer et al.,
1985), and so does advancing a "longest suffix that occurs" match by one token.

Two kinds are used by methods/drafters/samd.py:

- ``SuffixAutomaton``, the dynamic one: built online from the current turn's text, one token at a
  time. The longest suffix of the text that also occurs earlier is simply the suffix-link target
  of the state of the whole text (the longest suffix that ends at more than one position), so the
  match needs no walk of its own. Each state keeps its *earliest* end position, which in one
  growing text is the occurrence followed by the most tokens.
- ``StaticSuffixAutomaton``: built once from a corpus of documents, frozen into flat numpy arrays
  (a sorted slice of (token, target) edges per state, link, length, end position) and saved to a
  file that is memory-mapped when read. A ``StaticMatcher`` advances its match state by each
  committed token, following suffix links on a miss. Documents are joined with a separator id
  that no context holds, so no match spans two documents; each state keeps the end position whose
  document has the most tokens left after it (the longest continuation).

File format (version 1, little-endian, our own):

    offset 0   8 bytes  magic b"SDBSAM\\0\\0"
               u32      format version (1)
               u32      header length H
               H bytes  JSON header: {"n_tokens", "n_states", "n_edges", "n_documents", ...}
    (zero padding to a multiple of 64 bytes, then each array padded the same way)
               int32    tokens[n_tokens]          documents, each followed by SEPARATOR (-1)
               int64    edge_start[n_states + 1]  state s's edges are edge_start[s]:edge_start[s + 1]
               int32    edge_token[n_edges]       sorted within each state's slice
               int32    edge_target[n_edges]
               int32    link[n_states]            -1 for the root
               int32    length[n_states]
               int64    end[n_states]             index in tokens of the last token of an occurrence
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from methods.drafters import native_automaton
from methods.drafters.array_file import read_named_arrays, read_or_build, write_arrays

MAGIC = b"SDBSAM\0\0"
FORMAT_VERSION = 1
SEPARATOR = -1  # ends every document of a static automaton; never a token of a context

# name, dtype, length key (see the format above)
_ARRAYS = (("tokens", "<i4", "n_tokens"), ("edge_start", "<i8", "n_states+1"), ("edge_token", "<i4", "n_edges"),
           ("edge_target", "<i4", "n_edges"), ("link", "<i4", "n_states"), ("length", "<i4", "n_states"),
           ("end", "<i8", "n_states"))


# ---------------------------------------------------------------------------------- dynamic
class SuffixAutomaton:
    """Online suffix automaton of one growing token sequence (also the builder of static ones)."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.next: list[dict[int, int]] = [{}]
        self.link: list[int] = [-1]
        self.length: list[int] = [0]
        self.first_end: list[int] = [-1]  # earliest end position of the state's substrings
        self.last = 0  # the state of the whole text
        # The state the latest append split off a clone from (valid when that append added two
        # states), so that subclasses keeping per-state data can give the clone its copy.
        self.last_split = -1

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_states(self) -> int:
        return len(self.length)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.append(int(token))

    def append(self, token: int) -> None:
        nxt, link, length, first_end = self.next, self.link, self.length, self.first_end
        position = len(self.tokens)
        self.tokens.append(token)
        cur = len(length)
        nxt.append({})
        link.append(0)
        length.append(length[self.last] + 1)
        first_end.append(position)
        p = self.last
        while p != -1 and token not in nxt[p]:
            nxt[p][token] = cur
            p = link[p]
        if p != -1:
            q = nxt[p][token]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                # q also holds longer strings that do not end here: split off the short ones.
                clone = len(length)
                nxt.append(dict(nxt[q]))
                link.append(link[q])
                length.append(length[p] + 1)
                first_end.append(first_end[q])  # the new end is later, so the earliest stays q's
                self.last_split = q
                while p != -1 and nxt[p].get(token) == q:
                    nxt[p][token] = clone
                    p = link[p]
                link[q] = clone
                link[cur] = clone
        self.last = cur

    # ---- the match: the longest suffix of the text that also ends at an earlier position
    @property
    def match_state(self) -> int:
        return self.link[self.last] if self.last else 0

    @property
    def match_length(self) -> int:
        return self.length[self.match_state]

    def continuation(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed the earliest earlier occurrence of the match.

        As SAM-Decoding does, when that occurrence is followed by fewer than ``limit`` tokens the
        match is shortened (suffix links) to one whose earliest occurrence leaves more room: a
        shorter match with a full continuation over a longer one with a stub.
        """
        state = self.match_state
        if state <= 0 or limit < 1:
            return []
        last_index = len(self.tokens) - 1
        link, first_end = self.link, self.first_end
        while link[state] > 0 and last_index - first_end[state] < limit:
            state = link[state]
        end = first_end[state]
        return self.tokens[end + 1: end + 1 + limit]


# ---------------------------------------------------------------------------------- static
@dataclass
class StaticSuffixAutomaton:
    tokens: np.ndarray  # int32 [n_tokens], SEPARATOR after every document
    edge_start: np.ndarray  # int64 [n_states + 1]
    edge_token: np.ndarray  # int32 [n_edges]
    edge_target: np.ndarray  # int32 [n_edges]
    link: np.ndarray  # int32 [n_states]
    length: np.ndarray  # int32 [n_states]
    end: np.ndarray  # int64 [n_states]: the occurrence with the longest continuation in its document
    meta: dict = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return int(self.length.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def transition(self, state: int, token: int) -> int:
        """The target of ``state``'s edge labelled ``token``, or -1."""
        return edge_lookup(self.edge_start, self.edge_token, self.edge_target, state, token)

    def continuation(self, state: int, limit: int) -> list[int]:
        """Up to ``limit`` tokens after the state's recorded occurrence, within its document."""
        if state <= 0 or limit < 1:
            return []
        end = int(self.end[state])
        following = self.tokens[end + 1: end + 1 + limit]
        stop = np.flatnonzero(following == SEPARATOR)
        return following[: stop[0] if stop.size else len(following)].tolist()


class StaticMatcher:
    """The longest suffix of the tokens fed so far that occurs in a static automaton."""

    def __init__(self, automaton: StaticSuffixAutomaton) -> None:
        self.automaton = automaton
        self.state = 0
        self.length = 0

    def reset(self) -> None:
        self.state = self.length = 0

    def feed(self, tokens: Iterable[int]) -> None:
        sam = self.automaton
        state, length = self.state, self.length
        for token in tokens:
            token = int(token)
            target = sam.transition(state, token)
            while target < 0 and state > 0:
                # A miss: the longest suffix that is one class shorter (amortised O(1): each
                # link shortens the match, which grows by at most one per token).
                state = int(sam.link[state])
                length = int(sam.length[state])
                target = sam.transition(state, token)
            if target < 0:
                state = length = 0
            else:
                state, length = target, length + 1
        self.state, self.length = state, length

    def continuation(self, limit: int) -> list[int]:
        return self.automaton.continuation(self.state, limit) if self.length else []


def build_static(documents: Iterable[Sequence[int]], meta: Optional[dict] = None) -> StaticSuffixAutomaton:
    """The frozen suffix automaton of a corpus of token sequences."""
    built = automaton_of_documents(documents)
    return freeze(built, dict(meta or {}, n_documents=built.n_documents))


@dataclass
class BuiltAutomaton:
    """The automaton of separator-terminated documents, as flat arrays (int64 unless said)."""
    tokens: np.ndarray  # the documents, each followed by SEPARATOR
    link: np.ndarray
    length: np.ndarray
    first_end: np.ndarray  # earliest end position of each state's strings
    edge_start: np.ndarray  # state s's edges are edge_start[s]:edge_start[s + 1], by token;
    edge_token: np.ndarray  # separator edges dropped (no look-up ever takes one)
    edge_target: np.ndarray
    n_documents: int

    @property
    def n_states(self) -> int:
        return int(self.length.shape[0])


def automaton_of_documents(documents: Iterable[Sequence[int]]) -> BuiltAutomaton:
    """The automaton of the non-empty documents, each followed by SEPARATOR: built by the C
    builder (methods/drafters/native_automaton.py) where it runs, else by ``SuffixAutomaton``;
    the arrays are the same."""
    parts, n_documents = [], 0
    for document in documents:
        if len(document):
            parts += [np.asarray(document, dtype=np.int64).reshape(-1), np.array([SEPARATOR], dtype=np.int64)]
            n_documents += 1
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    del parts
    if tokens.size and (tokens.min() < SEPARATOR or tokens.max() >= 2**31 - 1):
        raise ValueError("token ids must lie in [0, 2**31 - 1)")
    native = native_automaton.build(tokens.astype(np.int32))
    if native is not None:
        link, length, first_end, source, edge_token, edge_target = native
    else:
        builder = SuffixAutomaton()
        builder.extend(tokens.tolist())
        link, length, first_end = builder.link, builder.length, builder.first_end
        counts = np.fromiter((len(d) for d in builder.next), dtype=np.int64, count=builder.n_states)
        source = np.repeat(np.arange(builder.n_states, dtype=np.int64), counts)
        edge_token = np.fromiter((t for d in builder.next for t in d), dtype=np.int64, count=int(counts.sum()))
        edge_target = np.fromiter((s for d in builder.next for s in d.values()), dtype=np.int64,
                                  count=int(counts.sum()))
        del builder
    n_states = len(length)
    if n_states >= 2**31:
        raise ValueError("corpus too large for 32-bit state ids")
    edge_start, edge_token, edge_target = sorted_edges(n_states, source, edge_token, edge_target)
    return BuiltAutomaton(tokens, np.asarray(link, dtype=np.int64), np.asarray(length, dtype=np.int64),
                          np.asarray(first_end, dtype=np.int64), edge_start, edge_token, edge_target, n_documents)


def freeze(built: BuiltAutomaton, meta: dict) -> StaticSuffixAutomaton:
    """The static automaton of a built one: each state's end position moved to its longest continuation."""
    end = _longest_continuation_ends(built.tokens, built.length, built.link, built.first_end)
    info = dict(meta)
    info.update(n_tokens=int(built.tokens.size), n_states=built.n_states, n_edges=int(built.edge_token.size))
    return StaticSuffixAutomaton(built.tokens.astype(np.int32), built.edge_start, built.edge_token.astype(np.int32),
                                 built.edge_target.astype(np.int32), built.link.astype(np.int32),
                                 built.length.astype(np.int32), end, info)


def sorted_edges(n_states: int, source: np.ndarray, edge_token: np.ndarray,
                 edge_target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges as flat arrays sorted by (state, token): (edge_start, edge_token, edge_target), state
    s's edges being edge_start[s]:edge_start[s + 1]. Separator edges are dropped."""
    keep = edge_token != SEPARATOR
    source, edge_token, edge_target = source[keep], edge_token[keep], edge_target[keep]
    order = np.lexsort((edge_token, source))
    source, edge_token, edge_target = source[order], edge_token[order], edge_target[order]
    edge_start = np.zeros(n_states + 1, dtype=np.int64)
    np.cumsum(np.bincount(source, minlength=n_states), out=edge_start[1:])
    return edge_start, edge_token.astype(np.int64), edge_target.astype(np.int64)


def edge_lookup(edge_start: np.ndarray, edge_token: np.ndarray, edge_target: np.ndarray, state: int,
                token: int) -> int:
    """The target of ``state``'s edge labelled ``token`` in flat token-sorted edges, or -1."""
    lo, hi = int(edge_start[state]), int(edge_start[state + 1])
    if lo == hi:
        return -1
    i = lo + int(np.searchsorted(edge_token[lo:hi], token))
    return int(edge_target[i]) if i < hi and int(edge_token[i]) == token else -1


def _longest_continuation_ends(tokens: np.ndarray, length: np.ndarray, link: np.ndarray,
                               first_end: np.ndarray) -> np.ndarray:
    """Per state, the end position (among all its occurrences) followed by the most tokens before
    its document's separator. A state's end positions are those of the states created by an
    append (not clones) in its suffix-link subtree, so pushing the best one up the links, longest
    states first (a link is always shorter), visits each state once. Ties keep the first offer:
    the parent's own position, then the children in (descending length, state) order. In C where
    it can run (7.3M states: well under a second), else this loop, its reference."""
    separators = np.flatnonzero(tokens == SEPARATOR)
    positions = np.arange(tokens.size)
    left = separators[np.searchsorted(separators, positions)] - positions - 1 if separators.size else \
        tokens.size - positions - 1
    appended = length == first_end + 1  # a clone is always shorter than its first end position + 1
    best = np.where(appended, first_end, -1)
    best[0] = -1
    native = native_automaton.continuation_ends(length, link, left, best)
    if native is not None:
        return native
    best_list, left_list, link_list = best.tolist(), left.tolist(), link.tolist()
    for state in np.argsort(-length, kind="stable").tolist():
        parent = link_list[state]
        mine = best_list[state]
        if parent <= 0 or mine < 0:
            continue
        theirs = best_list[parent]
        if theirs < 0 or left_list[mine] > left_list[theirs]:
            best_list[parent] = mine
    return np.asarray(best_list, dtype=np.int64)


# ---------------------------------------------------------------------------------- file
def write_static(automaton: StaticSuffixAutomaton, path: Path) -> None:
    header = dict(automaton.meta)
    header.update(n_tokens=automaton.n_tokens, n_states=automaton.n_states, n_edges=int(automaton.edge_token.shape[0]))
    write_arrays(path, MAGIC, FORMAT_VERSION, header, [(getattr(automaton, name), dtype) for name, dtype, _ in _ARRAYS])


def read_static(path: Path, mmap: bool = True) -> StaticSuffixAutomaton:
    header, arrays = read_named_arrays(Path(path), MAGIC, FORMAT_VERSION, "suffix automaton", _ARRAYS, mmap)
    return StaticSuffixAutomaton(meta=header, **arrays)


# ---------------------------------------------------------------------------------- the bundled corpus
def cached_static_path(corpus: Path, tokenizer, mode: Optional[str] = None) -> Path:
    """Where the automaton of ``corpus`` for ``tokenizer`` is cached, named like REST's datastore."""
    from methods.drafters.rest_datastore import cached_corpus_index_path

    return cached_corpus_index_path(corpus, tokenizer, "samd", "sdbsam", FORMAT_VERSION, mode)


def build_from_corpus(corpus: Path, tokenizer, out: Path, mode: Optional[str] = None) -> StaticSuffixAutomaton:
    """The automaton of a conversation corpus's train split: the same documents as REST's
    datastore (rest_datastore.corpus_entries: the ids the model generated, or chat-formatted)."""
    from methods.drafters.rest_datastore import corpus_entries, default_mode, tokenizer_fingerprint

    mode = mode or default_mode(tokenizer)
    entries = corpus_entries(Path(corpus), tokenizer, mode, include_heldout=False, progress=False)
    meta = {"source": Path(corpus).name, "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
            "mode": mode, "include_heldout": False}
    automaton = build_static(entries, meta)
    write_static(automaton, out)
    return automaton


def corpus_automaton(tokenizer, corpus: Path) -> StaticSuffixAutomaton:
    """The automaton of a corpus for this tokenizer, built on first use and cached, memory-mapped."""
    if not Path(corpus).is_file():
        raise FileNotFoundError(f"SAM-Decoding's corpus {corpus} is missing")
    return read_or_build(cached_static_path(corpus, tokenizer), read_static,
                         lambda path: build_from_corpus(corpus, tokenizer, path),
                         f"suffix automaton of {Path(corpus).name}")
