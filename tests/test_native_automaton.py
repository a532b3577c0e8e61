"""The C builder of the corpus automata gives exactly the Python builder's arrays, and the
Python builder still runs where no C compiler is."""

from __future__ import annotations

import numpy as np
import pytest

from methods.drafters import native_automaton
from methods.drafters.suffix_automaton import SEPARATOR, _longest_continuation_ends, build_static
from methods.drafters.suffix_index import build_corpus_index


def corpora():
    rng = np.random.default_rng(7)
    yield [[1, 2, 3, 1, 2, 3, 1, 2, 4]]
    yield [[5], [5], [5, 5, 5, 5]]
    yield [[], [9, 9], []]
    # small vocabularies repeat a lot: many clones and long suffix-link chains
    for vocab in (2, 3, 7, 50):
        yield [rng.integers(0, vocab, size=int(rng.integers(1, 60))).tolist() for _ in range(int(rng.integers(1, 12)))]
    yield [[70000, 131071, 65536, 5], [131071, 65536, 7]]


def python_only(monkeypatch):
    monkeypatch.setattr(native_automaton, "build", lambda tokens: None)
    monkeypatch.setattr(native_automaton, "continuation_ends", lambda *arrays: None)
    monkeypatch.setattr(native_automaton, "occurrence_counts", lambda *arrays: None)


def needs_native():
    if native_automaton.load() is None:
        pytest.skip(f"no native builder here: {native_automaton.why_not()}")


STATIC_ARRAYS = ("tokens", "edge_start", "edge_token", "edge_target", "link", "length", "end")
INDEX_ARRAYS = ("edge_start", "edge_token", "edge_target", "ranked_token", "ranked_target", "ranked_count", "link",
                "length", "occ")


@pytest.mark.parametrize("builder, names", [(build_static, STATIC_ARRAYS), (build_corpus_index, INDEX_ARRAYS)],
                         ids=["static automaton", "suffix index"])
@pytest.mark.parametrize("documents", list(corpora()))
def test_native_build_equals_the_python_one(documents, builder, names, monkeypatch):
    needs_native()
    native = builder(documents, {"source": "t"})
    python_only(monkeypatch)
    reference = builder(documents, {"source": "t"})
    assert native.meta == reference.meta
    for name in names:
        got, want = getattr(native, name), getattr(reference, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name


def loop_continuation_ends(tokens, length, link, first_end):
    """The one-state-at-a-time rule, written plainly: what both builders must give, ties included."""
    separators = np.flatnonzero(tokens == SEPARATOR)
    positions = np.arange(tokens.size)
    left = separators[np.searchsorted(separators, positions)] - positions - 1
    best = np.where(length == first_end + 1, first_end, -1)
    best[0] = -1
    for state in np.argsort(-length, kind="stable"):
        parent, mine = link[state], best[state]
        if parent <= 0 or mine < 0:
            continue
        if best[parent] < 0 or left[mine] > left[best[parent]]:
            best[parent] = mine
    return best


@pytest.mark.parametrize("documents", list(corpora()))
def test_native_continuation_ends_match_the_loop(documents, monkeypatch):
    needs_native()
    from methods.drafters.suffix_automaton import automaton_of_documents
    built = automaton_of_documents(documents)
    native = _longest_continuation_ends(built.tokens, built.length, built.link, built.first_end)
    assert np.array_equal(native, loop_continuation_ends(built.tokens, built.length, built.link, built.first_end))
    python_only(monkeypatch)
    assert np.array_equal(_longest_continuation_ends(built.tokens, built.length, built.link, built.first_end), native)


def grouped_occurrence_counts(length, link, first_end):
    """Occurrence counts summed one length at a time (a different order than the builders' loop
    over states): equal counts whatever the order, since each state's count is settled before
    any shorter state's is read."""
    occ = (length == first_end + 1).astype(np.int64)
    occ[0] = 0
    order = np.argsort(-length, kind="stable")
    order = order[length[order] > 0]
    for group in np.split(order, np.flatnonzero(np.diff(length[order])) + 1):
        np.add.at(occ, link[group], occ[group])
    return occ


@pytest.mark.parametrize("documents", list(corpora()))
def test_occurrence_counts_match_a_grouped_sum(documents, monkeypatch):
    from methods.drafters.suffix_automaton import automaton_of_documents
    from methods.drafters.suffix_index import _occurrence_counts
    built = automaton_of_documents(documents)
    expected = grouped_occurrence_counts(built.length, built.link, built.first_end)
    assert expected[0] == sum(len(d) + 1 for d in documents if len(d))  # the root: every position
    if native_automaton.load() is not None:
        assert np.array_equal(_occurrence_counts(built.length, built.link, built.first_end), expected)
    python_only(monkeypatch)
    assert np.array_equal(_occurrence_counts(built.length, built.link, built.first_end), expected)


def test_without_a_compiler_the_python_builder_runs_and_says_so(monkeypatch):
    monkeypatch.setattr(native_automaton, "_state", {})
    monkeypatch.setattr(native_automaton, "find_compiler", lambda: None)
    monkeypatch.delenv(native_automaton.DISABLE_ENV, raising=False)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        automaton = build_static([[1, 2, 1, 2, 3]])
    assert native_automaton.why_not() == "no C compiler (cc, gcc or clang) on PATH"
    assert automaton.n_states > 1


def test_out_of_range_tokens_are_refused_before_building():
    with pytest.raises(ValueError, match="token ids"):
        build_static([[1, 2**31 - 1]])
    with pytest.raises(ValueError, match="token ids"):
        build_corpus_index([[-2, 3]])
