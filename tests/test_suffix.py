"""SuffixDecoding: the counted indexes and the speculation against the literal algorithm on random
sequences, the scoring rules on hand-made ones, the request and global indexes over turns,
losslessness on the engine (greedy and sampled), options, the corpus cache and the runner."""

from __future__ import annotations

import heapq
import json
import random
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from methods.core.drafter import DecodingConfig, DraftSession, StepResult
from methods.core.tree import DraftTree
from methods.drafters.suffix import CPU_DEFAULTS, GPU_DEFAULTS, SOURCES, SuffixDrafter
from methods.drafters.suffix_automaton import SEPARATOR
from methods.drafters.suffix_index import (CountingSuffixAutomaton, build_corpus_index, cached_index_path,
                                           corpus_index, read_corpus_index, write_corpus_index)
from methods.drafters.suffix_speculation import SpeculationConfig
from methods.drafters.vanilla import VanillaDrafter
from tests.engine_helpers import (assert_sampling_uses_the_lossless_rule, baseline_conversations, random_prompts,
                                  run_conversations, run_turns, runner_records)

VOCAB = 97


def session(vocab=VOCAB):
    return DraftSession(model=None, config=DecodingConfig(), device=torch.device("cpu"), dtype=torch.float64,
                        vocab_size=vocab)


def step_with(committed, context):
    return StepResult(tree=DraftTree.empty(), accepted_nodes=[], committed=list(committed),
                      logits=torch.zeros(1, VOCAB), context=list(context))


# ---------------------------------------------------------------------------------- brute force
def brute_count(sequences, pattern):
    n = len(pattern)
    return sum(1 for seq in sequences for i in range(len(seq) - n + 1) if seq[i: i + n] == pattern)


def brute_children(sequences, pattern):
    """(count, token) of what followed ``pattern``, most frequent first, ties: smaller token."""
    n = len(pattern)
    following = Counter(seq[i + n] for seq in sequences for i in range(len(seq) - n) if seq[i: i + n] == pattern)
    return sorted(((c, t) for t, c in following.items()), key=lambda ct: (-ct[0], ct[1]))


def brute_expand(sequences, pattern, budget, cap, min_prob, tree):
    """The reference's expansion, literally: counts recomputed from the sequences at every node."""
    tokens, parents, probs = [], [], []
    if not tree:
        p, path = 1.0, list(pattern)
        while len(tokens) < min(budget, cap):
            kids = brute_children(sequences, path)
            if not kids:
                break
            q = p * (kids[0][0] / brute_count(sequences, path))
            if q < min_prob:
                break
            tokens.append(kids[0][1])
            parents.append(len(tokens) - 2)
            probs.append(q)
            p, path = q, path + [kids[0][1]]
        return tokens, parents, probs
    queue, order = [], 0

    def push(path, p, parent, depth):
        nonlocal order
        total = brute_count(sequences, path)
        for count, token in brute_children(sequences, path):
            q = p * (count / total)
            if q < min_prob:
                break
            heapq.heappush(queue, (-q, order, token, path + [token], parent, depth + 1))
            order += 1

    if budget >= 1 and cap >= 1:
        push(list(pattern), 1.0, -1, 0)
    while queue and len(tokens) < budget:
        neg_q, _, token, path, parent, depth = heapq.heappop(queue)
        tokens.append(token)
        parents.append(parent)
        probs.append(-neg_q)
        if depth < cap and len(tokens) < budget:
            push(path, -neg_q, len(tokens) - 1, depth)
    return tokens, parents, probs


def brute_speculate(sequences, context, config: SpeculationConfig, room):
    """A.4: every match length, shortest first, a tie going to the longer one."""
    ctx = context[-config.max_depth:]
    best = ([], [], [], 0.0, 0)
    for m in range(1, len(ctx)):
        pattern = ctx[-m:]
        if brute_count(sequences, pattern) == 0:
            break
        tokens, parents, probs = brute_expand(sequences, pattern, config.budget(m),
                                              min(config.max_depth - m, room), config.min_token_prob, config.tree)
        score = sum(probs)
        if score >= best[3]:
            best = (tokens, parents, probs, score, m)
    return best


def brute_draft(corpus_docs, answers, response, context, config, room, request_config=None):
    """A.6: the request's draft unless the global one scores strictly higher (the request's draft
    under its own cap where it has one)."""
    local = brute_speculate([list(context)], context, request_config or config, room)
    glob = brute_speculate([list(d) for d in corpus_docs] + [list(a) for a in answers] + [list(response)],
                           context, config, room)
    return (glob, "global") if glob[3] > local[3] else (local, "request")


# ---------------------------------------------------------------------------------- the indexes
def walk_counting(sam, pattern):
    state = 0
    for token in pattern:
        state = sam.next[state].get(token)
        if state is None:
            return None
    return state


@pytest.mark.parametrize("seed", range(5))
def test_online_counts_are_the_occurrences_of_every_substring(seed):
    rng = random.Random(seed)
    sequences = [[rng.randrange(3) for _ in range(rng.randint(1, 25))] for _ in range(4)]
    sam = CountingSuffixAutomaton()
    for seq in sequences:
        sam.extend(seq)
        sam.end_sequence()
    for _ in range(300):
        pattern = [rng.randrange(3) for _ in range(rng.randint(1, 6))]
        state = walk_counting(sam, pattern)
        expected = brute_count(sequences, pattern)
        assert (0 if state is None else sam.occ[state]) == expected


@pytest.mark.parametrize("seed", range(4))
def test_corpus_index_counts_and_ranks_continuations_also_after_save_and_load(seed, tmp_path):
    rng = random.Random(seed)
    docs = [[rng.randrange(4) for _ in range(rng.randint(1, 30))] for _ in range(8)]
    built = build_corpus_index(docs, {"source": "test"})
    path = tmp_path / "c.sdbsfx"
    write_corpus_index(built, path)
    for index in (built, read_corpus_index(path), read_corpus_index(path, mmap=False)):
        assert index.meta["n_documents"] == len(docs) and index.meta["source"] == "test"
        for _ in range(150):
            pattern = [rng.randrange(4) for _ in range(rng.randint(1, 5))]
            state = 0
            for token in pattern:
                state = index.transition(state, token) if state >= 0 else -1
            assert (0 if state < 0 else int(index.occ[state])) == brute_count(docs, pattern)
            if state >= 0:
                lo, hi = int(index.edge_start[state]), int(index.edge_start[state + 1])
                ranked = list(zip(index.ranked_count[lo:hi].tolist(), index.ranked_token[lo:hi].tolist()))
                assert ranked == brute_children(docs, pattern)  # separators are never a continuation


def test_a_foreign_file_is_refused(tmp_path):
    (tmp_path / "x.sdbsfx").write_bytes(b"SDBSAM\0\0" + b"\0" * 60)
    with pytest.raises(ValueError, match="magic"):
        read_corpus_index(tmp_path / "x.sdbsfx")


# ---------------------------------------------------------------------------------- the literal algorithm
def configs(rng):
    return dict(max_depth=rng.choice([3, 6, 64]), max_spec_tokens=rng.choice([1, 3, 8]),
                spec_factor=rng.choice([0.5, 1.0, 2.0]), spec_offset=rng.choice([0.0, 1.0, -1.0]),
                min_token_prob=rng.choice([0.0, 0.1, 0.3]), shape=rng.choice(["tree", "chain"]),
                request_max_spec_tokens=rng.choice([None, 1, 3, 8]))


@pytest.mark.parametrize("seed", range(12))
def test_drafts_equal_the_literal_algorithm_over_turns(seed):
    """Random corpus, prompts and accepted tokens over three turns: every draft (tokens, parents,
    path probabilities, score, match length, which index) is the literal algorithm's, which
    recounts every string from the sequences and tries every match length."""
    rng = random.Random(seed)
    alphabet = rng.randint(2, 4)
    docs = [[rng.randrange(alphabet) for _ in range(rng.randint(1, 20))] for _ in range(rng.randint(0, 4))]
    options = configs(rng)
    cached = rng.choice([-1, 0, 1, 2])
    drafter = SuffixDrafter(build_corpus_index(docs) if docs else None, max_cached_requests=cached, **options)
    config = drafter.config
    request_config = replace(config, max_spec_tokens=options["request_max_spec_tokens"] or options["max_spec_tokens"])
    answers = []
    for turn in range(3):
        context = [rng.randrange(alphabet) for _ in range(rng.randint(1, 15))]
        drafter.begin(context, session())
        if cached != 0:
            answers = answers[-(cached - 1):] if cached > 0 else answers
            answers = [] if cached == 1 else answers
        response = []
        for _ in range(8):
            room = rng.choice([1, 2, 5, 20])
            tree = drafter.propose(context, room)
            (tokens, parents, probs, score, m), source = brute_draft(docs, answers if cached else [],
                                                                     response if cached else [], context,
                                                                     config, room, request_config)
            got = drafter.last
            assert (got.tokens, got.parents, got.probs) == (tokens, parents, probs)
            assert got.score == score and tree.tokens.tolist() == tokens and tree.parents.tolist() == parents
            if tokens:
                assert (got.match_length, drafter.last_source) == (m, source)
            else:
                assert drafter.last_source == "none"
            committed = [rng.randrange(alphabet) for _ in range(rng.randint(1, 3))]
            context += committed
            response += committed
            drafter.accept(step_with(committed, context))
        drafter.end()
        answers.append(response)


# ---------------------------------------------------------------------------------- the rules, by hand
def drafter_over(docs, **options):
    options.setdefault("max_cached_requests", 0)
    return SuffixDrafter(build_corpus_index(docs) if docs else None, **options)


def test_the_tree_grows_the_most_frequent_branches_first():
    # After "1 2": 3 followed 3 times (then 4 twice, 5 once), 6 once.
    docs = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 6]]
    drafter = drafter_over(docs, max_spec_tokens=3, spec_factor=2.0, min_token_prob=0.2)
    drafter.begin([9, 1, 2], session())
    tree = drafter.propose([9, 1, 2], 10)
    assert tree.tokens.tolist() == [3, 4, 6] and tree.parents.tolist() == [-1, 0, -1]
    assert drafter.last.probs == pytest.approx([3 / 4, 3 / 4 * 2 / 3, 1 / 4])  # products of frequencies
    assert drafter.last.score == pytest.approx(3 / 4 + 1 / 2 + 1 / 4)
    assert drafter.last.match_length == 2 and drafter.last_source == "global"
    # 5 (p = 1/4) tied with 6 (1/4): 6 was queued first. At min_token_prob 0.3 both are left out.
    drafter = drafter_over(docs, max_spec_tokens=3, spec_factor=2.0, min_token_prob=0.3)
    drafter.begin([9, 1, 2], session())
    assert drafter.propose([9, 1, 2], 10).tokens.tolist() == [3, 4]


def test_the_chain_takes_the_most_frequent_child_while_the_path_probability_holds():
    docs = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 6]]
    drafter = drafter_over(docs, max_spec_tokens=8, spec_factor=4.0, min_token_prob=0.1, shape="chain")
    drafter.begin([1, 2], session())
    assert drafter.propose([1, 2], 10).tokens.tolist() == [3, 4]  # nothing follows 4
    drafter = drafter_over(docs, max_spec_tokens=8, spec_factor=4.0, min_token_prob=0.6, shape="chain")
    drafter.begin([1, 2], session())
    assert drafter.propose([1, 2], 10).tokens.tolist() == [3]  # 3/4 * 2/3 = 1/2 < 0.6: cut there


@pytest.mark.parametrize("factor, offset, cap, expected", [
    (1.0, 0.0, 32, 3),  # alpha * m with m = 3
    (2.0, 0.0, 32, 6),
    (0.5, 0.0, 32, 1),  # floor(1.5)
    (1.0, 2.0, 32, 5),
    (2.0, 0.0, 4, 4),  # capped by max_spec_tokens
])
def test_the_draft_size_adapts_to_the_match_length(factor, offset, cap, expected):
    run = list(range(10, 30))
    drafter = drafter_over([run], max_spec_tokens=cap, spec_factor=factor, spec_offset=offset, min_token_prob=0.0)
    context = [5, 10, 11, 12]  # matches 3 tokens of the corpus, followed by 13, 14, ...
    drafter.begin(context, session())
    assert drafter.propose(context, 100).tokens.tolist() == list(range(13, 13 + expected))
    assert drafter.last.match_length == 3
    assert SpeculationConfig(spec_factor=factor, spec_offset=offset, max_spec_tokens=cap).budget(3) == expected


def test_the_requests_own_index_drafts_up_to_its_own_cap_and_the_global_index_up_to_the_general_one():
    run = list(range(10, 30))
    # The prompt repeats itself: "10 11 12" was followed by 13 .. 19 earlier in the prompt.
    prompt = run[:10] + [5] + run[:3]
    drafter = drafter_over([], max_spec_tokens=2, request_max_spec_tokens=5, spec_factor=4.0, min_token_prob=0.0)
    drafter.begin(prompt, session())
    assert drafter.propose(prompt, 100).tokens.tolist() == [13, 14, 15, 16, 17]
    assert drafter.last_source == "request" and drafter.max_draft_length() == 5
    # The same continuation from the corpus alone: the general cap.
    drafter = drafter_over([run], max_spec_tokens=2, request_max_spec_tokens=5, spec_factor=4.0, min_token_prob=0.0)
    drafter.begin([5] + run[:3], session())
    assert drafter.propose([5] + run[:3], 100).tokens.tolist() == [13, 14]
    assert drafter.last_source == "global"
    # Without its own cap the request's index has the general one, the paper's single cap.
    assert drafter_over([], max_spec_tokens=2).request_config.max_spec_tokens == 2


def test_match_plus_draft_never_exceeds_the_depth_and_the_engines_room():
    run = list(range(10, 30))
    drafter = drafter_over([run], max_depth=6, max_spec_tokens=32, spec_factor=3.0, min_token_prob=0.0)
    context = list(range(10, 18))  # an 8-token match, but D = 6: m <= 5 and depth <= 6 - m
    drafter.begin(context, session())
    tree = drafter.propose(context, 100)
    # m = 1 drafts 3 (its budget), m = 2: 4 (budget 6, depth limit 6 - 2), m = 3: 3 (limit 3), ...
    assert tree.tokens.tolist() == [18, 19, 20, 21] and drafter.last.match_length == 2
    assert len(drafter.propose(context, 2)) == 2  # the engine's room


def test_a_short_match_with_reliable_counts_can_beat_a_long_one():
    # "7 8" was once followed by 1 and its document ends there; "8" alone was followed by "2 3"
    # in 20 documents.
    docs = [[7, 8, 1]] + [[8, 2, 3]] * 20
    drafter = drafter_over(docs, max_spec_tokens=4, spec_factor=2.0, min_token_prob=0.1)
    drafter.begin([5, 7, 8], session())
    tree = drafter.propose([5, 7, 8], 10)
    # m = 2: [1], score 1; m = 1: [2, 3], score 20/21 + 20/21
    assert tree.tokens.tolist() == [2, 3] and drafter.last.match_length == 1
    assert drafter.last.score == pytest.approx(40 / 21)


def test_the_requests_own_index_wins_a_tie_and_counts_its_own_occurrence():
    drafter = drafter_over([[4, 5, 6]], max_spec_tokens=2, spec_factor=1.0, min_token_prob=0.0, shape="chain")
    prompt = [4, 5, 9, 4, 5]  # in the text "4 5" was followed by 9 once (count 2, self included)
    drafter.begin(prompt, session())
    tree = drafter.propose(prompt, 10)
    # request: m = 2 -> 9 (1/2), then 4 (1/2): score 1.0; corpus: m = 2 -> 6 (1): 1.0 -> request wins the tie
    assert drafter.last_source == "request" and tree.tokens.tolist() == [9, 4]
    assert drafter.last.probs == [0.5, 0.5]


def test_the_request_index_follows_the_accepted_tokens():
    drafter = drafter_over([], max_spec_tokens=4, spec_factor=1.0, min_token_prob=0.0, shape="chain")
    prompt = [1, 2, 3, 4, 5]
    drafter.begin(prompt, session())
    assert len(drafter.propose(prompt, 10)) == 0 and drafter.last_source == "none"  # nothing repeats
    context = prompt + [1, 2]
    drafter.accept(step_with([1, 2], context))
    assert drafter.propose(context, 10).tokens.tolist() == [3, 4]  # "1 2" seen before: 2 tokens budget
    assert drafter.last_source == "request"
    drafter.propose(context + [3], 10)  # a caller that skipped accept: caught up from the context
    assert len(drafter.request) == 8 and drafter.last.tokens == [4, 5, 1]
    assert drafter.turn_stats() == {"request": 2, "global": 0, "fallback": 0, "none": 1}


def test_finished_answers_join_the_global_index():
    drafter = SuffixDrafter(None, max_spec_tokens=4, spec_factor=2.0, min_token_prob=0.0, max_cached_requests=-1)
    drafter.begin([50, 51], session())
    context = [50, 51]
    for token in [20, 21, 22, 23, 24]:
        context = context + [token]
        drafter.accept(step_with([token], context))
    drafter.end()
    assert list(drafter.answers) == [[20, 21, 22, 23, 24]]
    prompt = [60, 20, 21]  # a new request: its own text knows nothing after "20 21"
    drafter.begin(prompt, session())
    assert drafter.propose(prompt, 10).tokens.tolist() == [22, 23, 24] and drafter.last_source == "global"


def test_the_answer_being_generated_is_in_the_global_index_at_once():
    drafter = SuffixDrafter(None, max_spec_tokens=4, spec_factor=2.0, min_token_prob=0.0, shape="chain")
    prompt = [50]
    drafter.begin(prompt, session())
    context = list(prompt)
    for token in [7, 8, 9, 7, 8]:
        context.append(token)
        drafter.accept(step_with([token], context))
    assert drafter.response == [7, 8, 9, 7, 8] and list(drafter.answers) == []
    drafter.propose(context, 10)
    assert drafter.last.tokens == [9, 7, 8]  # from either index: the text repeats itself


def test_cached_answers_are_dropped_first_in_first_out():
    drafter = SuffixDrafter(None, max_spec_tokens=4, spec_factor=2.0, min_token_prob=0.0, max_cached_requests=2)
    for answer in ([30, 31, 32], [40, 41, 42], [50, 51, 52]):
        drafter.begin([1], session())
        drafter.accept(step_with(answer, [1] + answer))
        drafter.end()
    assert list(drafter.answers) == [[40, 41, 42], [50, 51, 52]]  # room was made for the third
    assert drafter.answer_index.tokens == [40, 41, 42, SEPARATOR, 50, 51, 52, SEPARATOR]
    drafter.begin([9, 50, 51], session())  # room for this one: the second answer goes too
    assert drafter.propose([9, 50, 51], 10).tokens.tolist() == [52] and drafter.last_source == "global"
    drafter.end()
    drafter.begin([9, 40, 41], session())
    assert len(drafter.propose([9, 40, 41], 10)) == 0
    off = SuffixDrafter(None, max_cached_requests=0)
    off.begin([1], session())
    off.accept(step_with([2, 3], [1, 2, 3]))
    off.end()
    assert off.answer_index is None and list(off.answers) == []


def test_drafts_never_hold_a_separator_or_an_id_beyond_the_models_vocabulary():
    drafter = drafter_over([[1, 2, 3, VOCAB + 5, 4], [1, 2]], max_spec_tokens=8, spec_factor=4.0, min_token_prob=0.0)
    drafter.begin([1, 2], session())
    tree = drafter.propose([1, 2], 10)
    assert tree.tokens.tolist() == [3] and SEPARATOR not in tree.tokens.tolist()


# ---------------------------------------------------------------------------------- on the engine
CONFIG = DecodingConfig(max_new_tokens=24)


@pytest.fixture(scope="module")
def conversations(engine):
    """Two-turn conversations with their baseline answers, and the global index over half of them."""
    out, corpus = baseline_conversations(engine, VOCAB, seed=41, config=CONFIG)
    return out, build_corpus_index(corpus)


@pytest.mark.parametrize("shape", ["tree", "chain"])
@pytest.mark.parametrize("with_corpus", [False, True])
def test_greedy_output_is_the_baseline_token_for_token_multi_turn(engine, conversations, shape, with_corpus):
    cases, corpus = conversations
    drafter = SuffixDrafter(corpus if with_corpus else None, max_spec_tokens=6, shape=shape)
    outputs, stats, sources = run_conversations(engine, drafter, cases)
    assert outputs == [answer for turns in cases for _, answer in turns]
    for s, counts in zip(stats, sources):
        assert sum(counts.values()) == s.decoding_steps and set(counts) == set(SOURCES)
    total = {k: sum(c[k] for c in sources) for k in SOURCES}
    assert total["request"] > 0 and total["global"] > 0  # the run's answers alone make a global index
    tokens, steps = sum(s.new_tokens for s in stats), sum(s.decoding_steps for s in stats)
    assert tokens / steps > 1.3  # counted continuations are accepted


def test_greedy_output_is_the_baseline_with_random_prompts(engine):
    drafter = SuffixDrafter(None, max_spec_tokens=8, min_token_prob=0.0)
    config = DecodingConfig(max_new_tokens=20)
    lengths = []
    for prompt in random_prompts(6, VOCAB, seed=5):
        expected = run_turns(engine, VanillaDrafter(), prompt, config, turns=2)
        assert run_turns(engine, drafter, prompt, config, turns=2, lengths=lengths) == expected
    assert max(lengths) > 2


def test_sampling_runs_through_lossless_acceptance(engine, conversations, monkeypatch):
    cases, corpus = conversations
    assert_sampling_uses_the_lossless_rule(engine, SuffixDrafter(corpus, max_spec_tokens=6), monkeypatch,
                                           [prompt for turns in cases[:3] for prompt, _ in turns])


# ---------------------------------------------------------------------------------- options
def suffix_args(**given):
    base = dict(method="suffix", model_path="embedded", suffix_max_depth=None, suffix_max_spec_tokens=None,
                suffix_spec_factor=None, suffix_spec_offset=None, suffix_min_token_prob=None, suffix_shape=None,
                suffix_max_cached_requests=None, suffix_corpus="off", suffix_fallback="none", suffix_threshold=None,
                suffix_request_max_spec_tokens=None)
    base.update(given)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("given, message", [
    ({"suffix_max_depth": 1}, "--suffix-max-depth 1: must be at least 2"),
    ({"suffix_max_spec_tokens": 0}, "--suffix-max-spec-tokens 0: must be at least 1"),
    ({"suffix_request_max_spec_tokens": 0}, "--suffix-request-max-spec-tokens 0: must be at least 1"),
    ({"suffix_spec_factor": -1.0}, "--suffix-spec-factor -1.0: must be at least 0"),
    ({"suffix_min_token_prob": 1.5}, "--suffix-min-token-prob 1.5: must be at most 1"),
    ({"suffix_min_token_prob": -0.1}, "--suffix-min-token-prob -0.1: must be at least 0"),
    ({"suffix_max_cached_requests": -2}, "--suffix-max-cached-requests -2: must be at least -1"),
    ({"suffix_corpus": "/nonexistent/corpus.jsonl"}, "no such file"),
    ({"suffix_threshold": -1.0}, "--suffix-threshold -1.0: must be at least 0"),
    ({"suffix_fallback": "nosuch"}, "--suffix-fallback nosuch: unknown method"),
    ({"suffix_fallback": "suffix"}, "must be another method"),
])
def test_bad_options_are_refused_by_name(given, message):
    with pytest.raises(ValueError, match=message):
        SuffixDrafter.check_args(suffix_args(**given))


def test_from_args_takes_device_defaults_and_a_built_index(tmp_path, model):
    drafter = SuffixDrafter.from_args(suffix_args(), model, None)
    config = drafter.config
    assert (config.max_depth, config.max_spec_tokens, config.spec_factor, config.min_token_prob, config.tree) == \
        (CPU_DEFAULTS["max_depth"], CPU_DEFAULTS["max_spec_tokens"], CPU_DEFAULTS["spec_factor"], 0.1, True)
    assert drafter.threshold == CPU_DEFAULTS["threshold"] and drafter.fallback is None
    assert drafter.request_config.max_spec_tokens == CPU_DEFAULTS["request_max_spec_tokens"] == 12
    assert drafter.max_draft_length() == drafter.max_draft_tokens() == 12
    assert GPU_DEFAULTS["max_depth"] == 64 and GPU_DEFAULTS["max_spec_tokens"] == 32
    assert drafter.corpus is None and drafter.params()["corpus"] == "off" and json.dumps(drafter.params())
    write_corpus_index(build_corpus_index([[1, 2, 3]]), tmp_path / "c.sdbsfx")
    drafter = SuffixDrafter.from_args(suffix_args(suffix_corpus=str(tmp_path / "c.sdbsfx"), suffix_shape="chain",
                                                  suffix_spec_factor=0.0, suffix_max_cached_requests=0), model, None)
    assert drafter.corpus.n_tokens == 4 and drafter.params()["corpus"] == "c.sdbsfx"
    assert drafter.config.spec_factor == 0.0 and not drafter.config.tree and drafter.answer_index is None


def test_corpus_index_is_built_once_and_cached_per_corpus_and_tokenizer(tmp_path, monkeypatch):
    from tests.test_rest import make_word_tokenizer, write_corpus

    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    tokenizer = make_word_tokenizer(tmp_path / "tok")
    write_corpus(tmp_path / "corpus.jsonl.gz")
    index = corpus_index(tokenizer, tmp_path / "corpus.jsonl.gz")
    path = cached_index_path(tmp_path / "corpus.jsonl.gz", tokenizer)
    assert path.parent == tmp_path / "cache" / "suffix" and path.name.endswith("-messages-train-v1.sdbsfx")
    assert index.meta["n_documents"] == 6  # one per message, as REST's datastore
    assert not list(path.parent.glob("*.tmp"))  # written to a temporary name, then renamed
    stamp = path.stat().st_mtime_ns
    again = corpus_index(tokenizer, tmp_path / "corpus.jsonl.gz")
    assert path.stat().st_mtime_ns == stamp and np.array_equal(again.occ, index.occ)
    drafter = SuffixDrafter(again, max_cached_requests=0, min_token_prob=0.0)
    prompt = tokenizer.encode("the cat", add_special_tokens=False)
    drafter.begin(prompt, session(vocab=len(tokenizer)))
    assert tokenizer.decode(drafter.propose(prompt, 1).tokens.tolist()) == "sat"


# ---------------------------------------------------------------------------------- the runner
def test_runner_records_which_index_drafted_every_turn(tmp_path):
    for ref, record in runner_records(tmp_path, ["--method", "suffix", "--suffix-corpus", "off"]):
        choice = record["choices"][0]
        assert choice["token_ids"] == ref["choices"][0]["token_ids"]
        assert len(choice["drafter_stats"]) == len(choice["turns"])
        for counts, steps in zip(choice["drafter_stats"], choice["decoding_steps"]):
            assert set(counts) == set(SOURCES) and sum(counts.values()) == steps
        assert record["method_params"]["corpus"] == "off" and record["method_params"]["shape"] == "tree"


# ---------------------------------------------------------------------------------- the hybrid
def test_a_draft_scoring_below_the_threshold_is_drafted_by_the_fallback_which_is_told_every_step():
    from tests.test_samd import FixedDrafter, step_with

    fallback = FixedDrafter()
    drafter = SuffixDrafter(None, max_spec_tokens=4, min_token_prob=0.0, max_cached_requests=0, fallback=fallback,
                            threshold=2.0)
    prompt = [1, 2, 3, 9, 1, 2]  # "1 2" occurred once: a draft of 1 -> 3 with score below 2
    drafter.begin(prompt, session())
    assert drafter.propose(prompt, 10).tokens.tolist() == [50, 51] and drafter.last_source == "fallback"
    drafter.accept(step_with([3, 9, 1, 2], prompt + [3, 9, 1, 2]))
    context = prompt + [3, 9, 1, 2]  # now "1 2 3 9 1 2" repeats: a long match, a confident draft
    tree = drafter.propose(context, 10)
    assert drafter.last_source == "request" and drafter.last.score >= 2.0 and tree.tokens.tolist()[:2] == [3, 9]
    drafter.end()
    assert fallback.calls == [("begin", 6), ("propose", 6), ("accept", (3, 9, 1, 2)), ("end",)]
    assert drafter.turn_stats()["fallback"] == 1 and drafter.turn_stats()["request"] == 1
    assert drafter.params()["fallback"] == "fixed" and drafter.params()["threshold"] == 2.0


def test_an_empty_fallback_draft_leaves_the_suffix_draft():
    from tests.test_samd import FixedDrafter

    drafter = SuffixDrafter(None, max_spec_tokens=4, min_token_prob=0.0, max_cached_requests=0,
                            fallback=FixedDrafter(tokens=()), threshold=100.0)
    prompt = [1, 2, 3, 9, 1, 2]
    drafter.begin(prompt, session())
    assert drafter.propose(prompt, 10).tokens.tolist() == [3, 9] and drafter.last_source == "request"


@pytest.mark.parametrize("kind", ["recycling", "eagle2"])
def test_greedy_output_of_the_hybrid_is_the_baseline_token_for_token(engine, model, conversations, kind):
    from methods.core.hidden_states import request_of
    from tests.test_samd import make_fallback

    cases, corpus = conversations
    drafter = SuffixDrafter(corpus, max_spec_tokens=6, fallback=make_fallback(kind, model), threshold=1.5)
    assert drafter.hidden_state_request == request_of(drafter.fallback)  # EAGLE's needs become the hybrid's
    outputs, stats, sources = run_conversations(engine, drafter, cases)
    assert outputs == [answer for turns in cases for _, answer in turns]
    total = {k: sum(c[k] for c in sources) for k in SOURCES}
    assert total["fallback"] > 0 and total["request"] + total["global"] > 0
    assert drafter.max_draft_tokens() >= 6


def test_the_default_fallback_follows_samds_rule(tmp_path):
    assert SuffixDrafter.fallback_of(suffix_args(suffix_fallback=None)) == "eagle2"
    assert SuffixDrafter.fallback_of(suffix_args(suffix_fallback=None, model_path="some/other-model")) == "recycling"
    assert SuffixDrafter.fallback_of(suffix_args()) == "none"
