"""The retrieval drafters' cached indexes (REST's datastore, SAM-Decoding's corpus automaton,
SuffixDecoding's corpus index) when the file is damaged: a cached one is built again, a given one
is refused naming it, never a numpy "mmap length is greater than file size"."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from methods.drafters.array_file import DamagedIndexError
from methods.drafters.rest_datastore import cached_datastore_path, default_datastore, read_datastore
from methods.drafters.suffix_automaton import cached_static_path, corpus_automaton, read_static
from methods.drafters.suffix_index import cached_index_path, corpus_index, read_corpus_index
from tests.test_rest import make_word_tokenizer, write_corpus

INDEXES = {  # name: (the cached builder, its cache path, the file reader)
    "rest": (default_datastore, cached_datastore_path, read_datastore),
    "samd": (corpus_automaton, cached_static_path, read_static),
    "suffix": (corpus_index, cached_index_path, read_corpus_index),
}
CUTS = {"in-arrays": lambda n: n * 3 // 4, "in-header": lambda n: 30, "in-magic": lambda n: 4, "empty": lambda n: 0}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.jsonl.gz"
    write_corpus(corpus)
    return make_word_tokenizer(tmp_path / "tok"), corpus


def tokens_of(index) -> np.ndarray:
    """What identifies an index's content: its tokens (SuffixDecoding's keeps only counts)."""
    return np.array(index.tokens if hasattr(index, "tokens") else index.occ)


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("kind", INDEXES)
def test_a_damaged_cached_index_is_built_again(setup, capsys, kind, cut):
    tokenizer, corpus = setup
    build, cache_path, read = INDEXES[kind]
    first = tokens_of(build(tokenizer, corpus))
    path = cache_path(corpus, tokenizer)
    data = path.read_bytes()
    path.write_bytes(data[: CUTS[cut](len(data))])
    capsys.readouterr()
    again = build(tokenizer, corpus)
    assert np.array_equal(tokens_of(again), first)
    assert np.array_equal(tokens_of(read(path)), first)  # the cache holds a complete index again
    err = capsys.readouterr().err
    assert str(path) in err and "building the" in err and "again" in err


@pytest.mark.parametrize("kind", INDEXES)
def test_a_given_truncated_index_is_refused_naming_it(setup, tmp_path, kind):
    tokenizer, corpus = setup
    build, cache_path, read = INDEXES[kind]
    build(tokenizer, corpus)
    given = tmp_path / f"given.{kind}"
    given.write_bytes(cache_path(corpus, tokenizer).read_bytes()[:-100])  # more than the last padding
    with pytest.raises(DamagedIndexError) as caught:
        read(given)
    message = str(caught.value)
    assert str(given) in message and "cut short" in message and "build it again" in message
    assert str(pickle.loads(pickle.dumps(caught.value))) == message  # crosses process boundaries
