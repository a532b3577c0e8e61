"""SAM-Decoding: both suffix automata against brute force, the draft-source rule, the fallback's
state, losslessness on the engine (greedy and sampled), options and the runner's per-turn counts."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from methods.core.drafter import DecodingConfig, DraftSession, StepResult
from methods.core.tree import DraftTree
from methods.drafters.eagle2 import Eagle2Drafter
from methods.drafters.recycling import CPU_DEFAULTS as RECYCLING_CPU, TokenRecyclingDrafter
from methods.drafters.samd import (CPU_DEFAULTS, GPU_DEFAULTS, SOURCES, STATIC_BIAS, SamdDrafter)
from methods.drafters.suffix_automaton import (SEPARATOR, StaticMatcher, SuffixAutomaton, build_static,
                                               cached_static_path, corpus_automaton, read_static, write_static)
from methods.drafters.vanilla import VanillaDrafter
from tests.engine_helpers import baseline_conversations, run_conversations, runner_records

VOCAB = 97


# ---------------------------------------------------------------------------------- brute force
def earliest_ends(text, length, before):
    """End indices, in order, of the earlier occurrences (ending before index ``before``) of the
    ``length``-token substring that ends at ``before``."""
    suffix = text[before + 1 - length: before + 1]
    return [j for j in range(length - 1, before) if text[j + 1 - length: j + 1] == suffix]


def brute_dynamic(text):
    """(longest suffix length that also ends earlier, earliest end of it) of the whole text."""
    last = len(text) - 1
    best = (0, -1)
    for length in range(1, len(text)):
        ends = earliest_ends(text, length, last)
        if not ends:
            break
        best = (length, ends[0])
    return best


def brute_dynamic_continuation(text, limit):
    """The paper's rule: the longest suffix (from the match down) whose earliest earlier
    occurrence leaves ``limit`` tokens after it, else the 1-token suffix; what follows it."""
    match, _ = brute_dynamic(text)
    if match == 0:
        return []
    last = len(text) - 1
    for length in range(match, 0, -1):
        end = earliest_ends(text, length, last)[0]
        if last - end >= limit or length == 1:
            return text[end + 1: end + 1 + limit]


def occurrences(documents, query):
    """(document, end index) of every occurrence of query inside one document."""
    n = len(query)
    return [(d, j) for d, doc in enumerate(documents) for j in range(n - 1, len(doc))
            if doc[j + 1 - n: j + 1] == list(query)]


def brute_static(documents, text):
    """Longest suffix of text that occurs in a document, and the most tokens that follow one of
    its occurrences within its document."""
    best = (0, 0)
    for length in range(1, len(text) + 1):
        found = occurrences(documents, text[len(text) - length:])
        if not found:
            break
        best = (length, max(len(documents[d]) - 1 - j for d, j in found))
    return best


# ---------------------------------------------------------------------------------- dynamic automaton
@pytest.mark.parametrize("seed", range(6))
def test_dynamic_match_is_the_longest_suffix_that_occurred_earlier(seed):
    rng = random.Random(seed)
    alphabet = rng.randint(1, 5)
    text = [rng.randrange(alphabet) for _ in range(rng.randint(1, 60))]
    sam = SuffixAutomaton()
    for i, token in enumerate(text):
        sam.append(token)
        length, end = brute_dynamic(text[: i + 1])
        assert sam.match_length == length
        if length:
            assert sam.first_end[sam.match_state] == end  # the earliest occurrence
        for limit in (1, 3, 8):
            assert sam.continuation(limit) == brute_dynamic_continuation(text[: i + 1], limit)


def test_dynamic_draft_prefers_a_shorter_match_with_a_full_continuation():
    # "7 8 9" last occurred right before the end; "8 9" first occurred with 4 tokens after it.
    text = [8, 9, 1, 2, 3, 4, 7, 8, 9, 5, 7, 8, 9]
    sam = SuffixAutomaton()
    sam.extend(text)
    assert sam.match_length == 3
    assert sam.continuation(2) == [5, 7]  # "7 8 9" at index 6..8 leaves 4 tokens: kept
    assert sam.continuation(4) == [5, 7, 8, 9]
    assert sam.continuation(6) == [1, 2, 3, 4, 7, 8]  # too short: "8 9" from the start instead


def test_dynamic_automaton_has_at_most_two_states_per_token():
    rng = random.Random(1)
    sam = SuffixAutomaton()
    sam.extend(rng.randrange(3) for _ in range(2000))
    assert sam.n_states <= 2 * len(sam)


# ---------------------------------------------------------------------------------- static automaton
def random_documents(rng, count=12, alphabet=4, longest=30):
    return [[rng.randrange(alphabet) for _ in range(rng.randint(1, longest))] for _ in range(count)]


def check_static_against_brute_force(automaton, documents, rng, alphabet):
    for _ in range(20):
        text = [rng.randrange(alphabet + 1) for _ in range(rng.randint(1, 25))]  # the extra id occurs nowhere
        matcher = StaticMatcher(automaton)
        for i in range(len(text)):
            matcher.feed([text[i]])
            length, most_left = brute_static(documents, text[: i + 1])
            assert matcher.length == length
            if length:
                following = matcher.continuation(100)
                assert len(following) == most_left  # the occurrence with the longest continuation
                end = int(automaton.end[matcher.state])
                assert automaton.tokens[end + 1 - length: end + 1].tolist() == text[i + 1 - length: i + 1]
                assert automaton.tokens[end + 1: end + 1 + len(following)].tolist() == following
            else:
                assert matcher.continuation(5) == []


@pytest.mark.parametrize("seed", range(4))
def test_static_match_is_the_longest_suffix_in_a_document_also_after_save_and_load(seed, tmp_path):
    rng = random.Random(seed)
    alphabet = rng.randint(2, 5)
    documents = random_documents(rng, alphabet=alphabet)
    automaton = build_static(documents, meta={"source": "test"})
    check_static_against_brute_force(automaton, documents, rng, alphabet)
    write_static(automaton, tmp_path / "a.sdbsam")
    for mmap in (True, False):
        back = read_static(tmp_path / "a.sdbsam", mmap=mmap)
        assert back.meta["source"] == "test" and back.meta["n_documents"] == len(documents)
        for name in ("tokens", "edge_start", "edge_token", "edge_target", "link", "length", "end"):
            assert np.array_equal(getattr(back, name), getattr(automaton, name)), name
        check_static_against_brute_force(back, documents, random.Random(seed + 100), alphabet)


def test_documents_do_not_match_across_their_boundary():
    automaton = build_static([[1, 2, 3], [4, 5, 6], [3, 4, 9]])
    matcher = StaticMatcher(automaton)
    matcher.feed([2, 3, 4])
    assert matcher.length == 2 and matcher.continuation(5) == [9]  # "3 4" of the third, not 3|4 of the first two
    matcher.reset()
    matcher.feed([1, 2])
    assert matcher.continuation(5) == [3]  # stops at the document's end
    matcher.reset()
    matcher.feed([6])
    assert matcher.length == 1 and matcher.continuation(5) == []  # nothing follows it
    assert (automaton.tokens == SEPARATOR).sum() == 3
    assert SEPARATOR not in automaton.edge_token.tolist()


def test_static_tokens_keep_large_ids_and_a_foreign_file_is_refused(tmp_path):
    automaton = build_static([[70000, 131071, 65536, 5], [131071, 65536, 7]])
    write_static(automaton, tmp_path / "big.sdbsam")
    matcher = StaticMatcher(read_static(tmp_path / "big.sdbsam"))
    matcher.feed([70000, 131071])
    assert matcher.continuation(5) == [65536, 5]
    (tmp_path / "foreign.sdbsam").write_bytes(b"SDBREST\0" + b"\0" * 60)
    with pytest.raises(ValueError, match="magic"):
        read_static(tmp_path / "foreign.sdbsam")


def test_corpus_automaton_is_built_once_and_cached_per_corpus_and_tokenizer(tmp_path, monkeypatch):
    from tests.test_rest import make_word_tokenizer, write_corpus

    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    tokenizer = make_word_tokenizer(tmp_path / "tok")
    write_corpus(tmp_path / "corpus.jsonl.gz")
    automaton = corpus_automaton(tokenizer, tmp_path / "corpus.jsonl.gz")
    path = cached_static_path(tmp_path / "corpus.jsonl.gz", tokenizer)
    assert path.parent == tmp_path / "cache" / "samd" and path.name.endswith("-messages-train-v1.sdbsam")
    assert automaton.meta["n_documents"] == 6  # one per message, as REST's datastore
    stamp = path.stat().st_mtime_ns
    again = corpus_automaton(tokenizer, tmp_path / "corpus.jsonl.gz")
    assert path.stat().st_mtime_ns == stamp and np.array_equal(again.tokens, automaton.tokens)
    matcher = StaticMatcher(again)
    matcher.feed(tokenizer.encode("the cat", add_special_tokens=False))
    assert tokenizer.decode(matcher.continuation(1)) == "sat"


# ---------------------------------------------------------------------------------- the source rule
def session(vocab=VOCAB):
    return DraftSession(model=None, config=DecodingConfig(), device=torch.device("cpu"), dtype=torch.float64,
                        vocab_size=vocab)


class FixedDrafter(VanillaDrafter):
    """A fallback that always proposes the same chain and records what it was told."""

    name = "fixed"

    def __init__(self, tokens=(50, 51)):
        self.tokens, self.calls = list(tokens), []

    def begin(self, prompt_ids, session):
        super().begin(prompt_ids, session)
        self.calls.append(("begin", len(prompt_ids)))

    def propose(self, context, max_depth):
        self.calls.append(("propose", len(context)))
        return DraftTree.chain(self.tokens[:max_depth])

    def accept(self, step):
        self.calls.append(("accept", tuple(step.committed)))

    def end(self):
        self.calls.append(("end",))


def step_with(committed, context):
    return StepResult(tree=DraftTree.empty(), accepted_nodes=[], committed=list(committed),
                      logits=torch.zeros(1, VOCAB), context=list(context))


def test_the_longer_match_drafts_from_its_own_automaton():
    drafter = SamdDrafter(build_static([list(range(20, 40))]), FixedDrafter(), max_draft=4, threshold=3)
    prompt = [5, 6, 7, 8, 9] + list(range(20, 32))  # the corpus holds "20 ... 31" (12, counts 12 - 5)
    drafter.begin(prompt, session())
    assert drafter.match_lengths() == (0, 12)
    assert drafter.propose(prompt, 10).tokens.tolist() == [32, 33, 34, 35] and drafter.last_source == "static"
    prompt = [5, 6, 7, 8, 9, 1, 5, 6, 7, 8, 9]  # the text repeats itself; the corpus knows nothing
    drafter.begin(prompt, session())
    assert drafter.match_lengths() == (5, 0)
    assert drafter.propose(prompt, 10).tokens.tolist() == [1, 5, 6, 7] and drafter.last_source == "dynamic"
    assert drafter.propose(prompt, 2).tokens.tolist() == [1, 5]  # never deeper than the engine allows
    assert drafter.turn_stats() == {"dynamic": 2, "static": 0, "fallback": 0, "none": 0}


@pytest.mark.parametrize("corpus_run, source, draft", [(STATIC_BIAS + 3, "dynamic", [91, 20, 21]),
                                                       (STATIC_BIAS + 4, "static", [29, 30, 31])])
def test_a_corpus_match_must_exceed_the_texts_own_by_the_bias(corpus_run, source, draft):
    drafter = SamdDrafter(build_static([list(range(20, 40))]), FixedDrafter(), max_draft=3, threshold=2)
    run = list(range(20, 20 + corpus_run))
    prompt = [90] + run[-3:] + [91] + run  # the text's own match: the last 3 tokens of the run
    drafter.begin(prompt, session())
    assert drafter.match_lengths() == (3, corpus_run)
    assert drafter.propose(prompt, 10).tokens.tolist() == draft and drafter.last_source == source


def test_a_short_match_drafts_with_the_fallback_which_is_told_every_step():
    fallback = FixedDrafter()
    drafter = SamdDrafter(None, fallback, max_draft=4, threshold=3)
    prompt = [1, 2, 3, 4, 1, 2]
    drafter.begin(prompt, session())
    assert drafter.propose(prompt, 10).tokens.tolist() == [50, 51] and drafter.last_source == "fallback"
    drafter.accept(step_with([3], prompt + [3]))  # the match grows to "1 2 3"
    assert drafter.propose(prompt + [3], 10).tokens.tolist() == [4, 1, 2, 3] and drafter.last_source == "dynamic"
    drafter.accept(step_with([4, 1, 2, 3, 4], prompt + [3, 4, 1, 2, 3, 4]))
    drafter.end()
    assert fallback.calls == [("begin", 6), ("propose", 6), ("accept", (3,)), ("accept", (4, 1, 2, 3, 4)), ("end",)]
    assert drafter.propose(prompt + [3, 4, 1, 2, 3, 4], 0).tokens.numel() == 0  # no room: "none"
    assert drafter.turn_stats() == {"dynamic": 1, "static": 0, "fallback": 1, "none": 1}


def test_without_a_fallback_a_short_match_proposes_nothing():
    drafter = SamdDrafter(None, None, max_draft=4, threshold=2)
    drafter.begin([1, 2, 3], session())
    assert len(drafter.propose([1, 2, 3], 10)) == 0 and drafter.last_source == "none"
    assert drafter.hidden_state_request is None and not drafter.lossy


def test_the_dynamic_automaton_is_reset_every_turn():
    drafter = SamdDrafter(None, None, max_draft=4, threshold=2)
    drafter.begin([1, 2, 3, 4, 5], session())
    drafter.accept(step_with([6], [1, 2, 3, 4, 5, 6]))
    assert len(drafter.dynamic) == 6
    drafter.begin([7, 8, 3, 4], session())  # "3 4" occurred only in the first turn's text
    assert len(drafter.dynamic) == 4 and drafter.dynamic.tokens == [7, 8, 3, 4]
    assert drafter.match_lengths() == (0, 0) and len(drafter.propose([7, 8, 3, 4], 10)) == 0
    assert drafter.turn_stats()["none"] == 1


def test_retrieval_never_drafts_an_id_beyond_the_models_vocabulary():
    drafter = SamdDrafter(build_static([[1, 2, 3, 4, 5, 6, 7, VOCAB + 3, 8]]), None, max_draft=6, threshold=1,
                          static_bias=0)
    drafter.begin([1, 2, 3], session())
    assert drafter.propose([1, 2, 3], 10).tokens.tolist() == [4, 5, 6, 7]


# ---------------------------------------------------------------------------------- on the engine
CONFIG = DecodingConfig(max_new_tokens=24)


@pytest.fixture(scope="module")
def conversations(engine):
    """Two-turn conversations with their baseline answers, and the static automaton over half of them."""
    out, corpus = baseline_conversations(engine, VOCAB, seed=31, config=CONFIG)
    return out, build_static(corpus)


def make_fallback(kind, model):
    if kind == "none":
        return None
    if kind == "recycling":
        return TokenRecyclingDrafter(topk=4, tree_nodes=8, tree_depth=3)
    from tests.test_eagle import random_draft

    return Eagle2Drafter(random_draft(model, seed=1), total_token=6, depth=2, top_k=3)


@pytest.mark.parametrize("fallback", ["none", "recycling", "eagle2"])
@pytest.mark.parametrize("with_corpus", [False, True])
def test_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, model, conversations, fallback, with_corpus):
    cases, static = conversations
    drafter = SamdDrafter(static if with_corpus else None, make_fallback(fallback, model), max_draft=6, threshold=2)
    outputs, stats, sources = run_conversations(engine, drafter, cases)
    assert outputs == [answer for turns in cases for _, answer in turns]
    for s, counts in zip(stats, sources):
        assert sum(counts.values()) == s.decoding_steps  # every step has exactly one source
        assert set(counts) == set(SOURCES)
    total = {k: sum(c[k] for c in sources) for k in SOURCES}
    assert total["dynamic"] > 0
    assert (total["static"] > 0) == with_corpus
    assert (total["fallback"] > 0) == (fallback != "none")
    tokens, steps = sum(s.new_tokens for s in stats), sum(s.decoding_steps for s in stats)
    assert tokens / steps > 1.2  # retrieved continuations are accepted


def test_eagle2_fallback_keeps_its_draft_cache_exact_while_retrieval_drafts(engine, model, conversations):
    """EAGLE-2 drafts only some steps, but is told all of them: whenever it drafts, its cache holds
    exactly the real pairs of the whole context (as a fresh pass over the target's features)."""
    from tests.test_eagle import CheckedCache

    cases, static = conversations
    fallback = make_fallback("eagle2", model)
    checked = CheckedCache(fallback, model)
    drafter = SamdDrafter(static, fallback, max_draft=6, threshold=2)
    assert drafter.hidden_state_request == fallback.hidden_state_request
    _, _, sources = run_conversations(engine, drafter, cases)
    retrieved = sum(c["dynamic"] + c["static"] for c in sources)
    assert checked.checked == sum(c["fallback"] for c in sources)  # every EAGLE-2 draft was checked ...
    assert checked.checked > 5 and retrieved > 5  # ... among steps drafted by retrieval


def test_sampling_runs_through_lossless_acceptance(engine, model, conversations):
    cases, static = conversations
    drafter = SamdDrafter(static, make_fallback("recycling", model), max_draft=6, threshold=2)
    config = DecodingConfig(max_new_tokens=24, temperature=0.8, top_k=20)
    outputs, stats, sources = run_conversations(engine, drafter, cases[:3], config)
    for tokens, s, counts in zip(outputs, stats, sources):
        assert all(0 <= t < VOCAB for t in tokens)
        assert sum(s.accept_lengths) == s.new_tokens == len(tokens)
        assert sum(counts.values()) == s.decoding_steps
    assert drafter.sampling_acceptance is None and not drafter.lossy  # the engine's lossless rule


# ---------------------------------------------------------------------------------- options
def samd_args(**given):
    base = dict(method="samd", model_path="embedded", samd_max_draft=None, samd_threshold=None, samd_fallback=None,
                samd_corpus="off", recycling_topk=None, recycling_tree_nodes=None, recycling_tree_depth=None,
                recycling_cold_start=False, eagle_path=None, eagle2_total_token=None, eagle2_depth=None,
                eagle2_top_k=None)
    base.update(given)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("given, message", [
    ({"samd_max_draft": 0}, "--samd-max-draft 0: must be at least 1"),
    ({"samd_threshold": 0}, "--samd-threshold 0: must be at least 1"),
    ({"samd_fallback": "nosuch"}, "--samd-fallback nosuch: unknown method"),
    ({"samd_fallback": "samd"}, "must be another method"),
    ({"samd_corpus": "/nonexistent/corpus.jsonl"}, "no such file"),
    ({"samd_fallback": "recycling", "recycling_tree_nodes": 0}, "--recycling-tree-nodes 0"),
])
def test_bad_options_are_refused_by_name(given, message):
    with pytest.raises(ValueError, match=message):
        SamdDrafter.check_args(samd_args(**given))


def test_the_default_fallback_is_eagle2_where_an_eagle_draft_is_at_hand_else_recycling(tmp_path):
    assert SamdDrafter.fallback_of(samd_args()) == "eagle2"  # the embedded model ships one
    assert SamdDrafter.fallback_of(samd_args(model_path="some/other-model")) == "recycling"
    assert SamdDrafter.fallback_of(samd_args(model_path="some/other-model", eagle_path=str(tmp_path))) == "eagle2"
    assert SamdDrafter.fallback_of(samd_args(samd_fallback="none")) == "none"


def test_from_args_takes_device_defaults_and_builds_the_fallback_from_its_own_options(tmp_path, model):
    drafter = SamdDrafter.from_args(samd_args(model_path="some/other-model"), model, None)
    assert (drafter.max_draft, drafter.threshold) == (CPU_DEFAULTS["max_draft"], CPU_DEFAULTS["threshold"])
    assert GPU_DEFAULTS == {"max_draft": 39, "threshold": 5}  # the paper's n_predicts 40 (root included)
    assert isinstance(drafter.fallback, TokenRecyclingDrafter) and drafter.static is None
    assert drafter.fallback.tree_nodes == RECYCLING_CPU["tree_nodes"]
    drafter = SamdDrafter.from_args(samd_args(samd_max_draft=3, samd_fallback="none", recycling_tree_nodes=5),
                                    model, None)
    assert drafter.max_draft == 3 and drafter.fallback is None
    params = drafter.params()
    assert params["fallback"] == "none" and params["corpus"] == "off" and json.dumps(params)
    write_static(build_static([[1, 2, 3]]), tmp_path / "s.sdbsam")
    drafter = SamdDrafter.from_args(samd_args(samd_corpus=str(tmp_path / "s.sdbsam"), samd_fallback="recycling",
                                              recycling_tree_nodes=5), model, None)
    assert drafter.static.n_tokens == 4 and drafter.params()["corpus"] == "s.sdbsam"
    assert drafter.params()["fallback_params"]["tree_nodes"] == 5


def test_eagle2_fallback_on_another_model_without_weights_is_refused_before_loading():
    from methods.heads.artifact import ArtifactError

    with pytest.raises((ValueError, ArtifactError), match="eagle"):
        SamdDrafter.check_args(samd_args(samd_fallback="eagle2", model_path="some/other-model"))


# ---------------------------------------------------------------------------------- the runner
def test_runner_records_the_draft_sources_of_every_turn(tmp_path):
    for ref, record in runner_records(tmp_path, ["--method", "samd", "--samd-corpus", "off", "--samd-threshold", "2"]):
        choice = record["choices"][0]
        assert choice["token_ids"] == ref["choices"][0]["token_ids"]
        assert "drafter_stats" not in ref["choices"][0]
        assert len(choice["drafter_stats"]) == len(choice["turns"])
        for counts, steps in zip(choice["drafter_stats"], choice["decoding_steps"]):
            assert set(counts) == set(SOURCES) and sum(counts.values()) == steps
        assert record["method_params"]["fallback"] == "recycling"
