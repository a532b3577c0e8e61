"""REST: suffix-array datastore, retrieval, trie drafts, and losslessness on the engine."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from methods.core.drafter import DecodingConfig
from methods.core.backends import BACKENDS
from methods.core.engine import SpeculativeEngine
from methods.drafters.rest import CPU_DEFAULTS, RestDrafter
from methods.drafters.rest_datastore import (Datastore, build_datastore, continuations, main, match_range,
                                    read_datastore, retrieve, top_prefixes, write_datastore)
from methods.core.tree import DraftTree
from methods.drafters.vanilla import VanillaDrafter
from tests.tiny_model import make_tiny_llama

VOCAB = 97


def brute_force_continuations(entries, query, long):
    """Every occurrence of query inside one entry with something after it, and what follows."""
    found = []
    for entry in entries:
        for i in range(len(entry) - len(query)):
            if entry[i: i + len(query)] == list(query):
                found.append(tuple(entry[i + len(query): i + len(query) + long]))
    return sorted(found)


def as_tuples(conts):
    return sorted(tuple(int(t) for t in row if t >= 0) for row in conts)


# ---------------------------------------------------------------------------------- datastore
@pytest.mark.parametrize("seed", range(5))
def test_suffix_array_lookup_finds_what_a_brute_force_search_finds(seed):
    rng = np.random.default_rng(seed)
    alphabet = int(rng.integers(2, 6))
    entries = [rng.integers(0, alphabet, size=int(rng.integers(1, 25))).tolist() for _ in range(30)]
    store = build_datastore(entries)
    for _ in range(100):
        query = rng.integers(0, alphabet, size=int(rng.integers(1, 5))).tolist()
        long = int(rng.integers(1, 6))
        assert as_tuples(continuations(store, query, k=10**9, long=long)) == \
            brute_force_continuations(entries, query, long)


def test_match_range_is_the_block_of_suffixes_starting_with_the_query():
    rng = np.random.default_rng(11)
    tokens = rng.integers(0, 3, size=200).tolist()
    store = build_datastore([tokens])
    for query in ([0], [1, 2], [2, 2, 2], [0, 1, 0, 1]):
        lo, hi = match_range(store, query)
        starts = {i for i in range(len(tokens) - len(query) + 1) if tokens[i: i + len(query)] == query}
        assert set(store.suffix_array[lo:hi].tolist()) == starts


def test_matches_and_continuations_stay_inside_their_entry():
    store = build_datastore([[1, 2, 3], [4, 5, 6], [3, 4, 9]])
    assert as_tuples(continuations(store, [3, 4], k=100, long=5)) == [(9,)]  # not 3|4 across entries
    assert as_tuples(continuations(store, [2], k=100, long=5)) == [(3,)]  # stops at the entry's end
    assert continuations(store, [6], k=100, long=5).shape[0] == 0  # nothing follows it


def test_more_occurrences_than_k_are_sampled_evenly_not_by_lexicographic_head():
    entries = [[7, t] for t in range(100)]  # 100 occurrences of 7, followed by 0..99
    store = build_datastore(entries)
    conts = continuations(store, [7], k=10, long=1)
    assert conts.shape == (10, 1)
    assert sorted(conts[:, 0].tolist()) == [0, 9, 19, 29, 39, 49, 59, 69, 79, 89]  # the head would be 0..9


def test_datastore_round_trip_keeps_ids_above_65535(tmp_path):
    rng = np.random.default_rng(3)
    entries = [rng.integers(60000, 140000, size=50).tolist() for _ in range(20)]
    entries.append([70000, 131071, 65536, 65535, 0])
    store = build_datastore(entries, vocab_size=140000, meta={"tokenizer": "test"})
    path = tmp_path / "big.sdbrest"
    write_datastore(store, path)
    for mmap in (True, False):
        back = read_datastore(path, mmap=mmap)
        assert back.meta["vocab_size"] == 140000 and back.meta["tokenizer"] == "test"
        assert np.array_equal(back.tokens, store.tokens) and back.tokens.max() >= 131071
        assert np.array_equal(back.suffix_array, store.suffix_array)
        assert np.array_equal(back.entry_starts, store.entry_starts)
        assert as_tuples(continuations(back, [70000, 131071], k=10, long=3)) == [(65536, 65535, 0)]


def test_reading_a_foreign_file_fails_cleanly(tmp_path):
    path = tmp_path / "foreign.idx"
    path.write_bytes(b"\x10\x00\x00\x00" + b"\x00" * 60)  # what a DraftRetriever chunk starts with
    with pytest.raises(ValueError, match="magic"):
        read_datastore(path)


# ---------------------------------------------------------------------------------- trie
def test_top_prefixes_keep_the_most_frequent_and_form_a_trie():
    conts = np.array([[1, 2, 3], [1, 2, 4], [1, 2, 3], [1, 5, -1], [6, 7, 8]] * 2)
    paths = top_prefixes(conts, choices=5)
    counts = Counter(tuple(int(t) for t in row[: d + 1]) for row in conts for d in range(3) if row[d] >= 0)
    assert paths[:3] == [(1,), (1, 2), (1, 2, 3)]  # 8, 6, 4 occurrences
    assert len(paths) == 5 and len(set(paths)) == 5
    assert all(p[:-1] in paths for p in paths if len(p) > 1)  # closed under prefixes
    threshold = min(counts[p] for p in paths)
    assert all(counts[p] <= threshold for p in counts if p not in paths)
    tree = DraftTree.from_paths(paths)
    assert len(tree) == 5  # one node per kept prefix
    assert tree.tokens[tree.children()[0][0]] == 1  # the most frequent first child comes first


def test_retrieve_uses_the_longest_suffix_of_the_context_that_occurs():
    store = build_datastore([[1, 2, 3, 4, 10], [9, 3, 4, 20], [3, 4, 20]])
    span, paths = retrieve(store, [7, 2, 3, 4], max_span=16, min_span=2, k=100, choices=10, long=2)
    assert span == 3 and paths == [(10,)]  # "2 3 4" occurs once, followed by 10
    span, paths = retrieve(store, [8, 3, 4], max_span=16, min_span=2, k=100, choices=10, long=2)
    assert span == 2 and paths[0] == (20,)  # "3 4" -> 20 twice, 10 once
    assert retrieve(store, [5, 4], max_span=16, min_span=2, k=100, choices=10, long=2) == (0, [])


# ---------------------------------------------------------------------------------- corpus -> datastore
def make_word_tokenizer(folder, chat_template=None):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "hello world how are you fine thanks the cat sat on mat a dog".split()
    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(folder)
    return fast


def write_corpus(path):
    records = [
        {"id": "a", "conversations": [{"role": "user", "content": "hello how are you"},
                                      {"role": "assistant", "content": "fine thanks the cat sat on the mat"}]},
        {"conversations": [{"from": "human", "value": "the dog"}, {"from": "gpt", "value": "a dog sat on a mat"}]},
        {"data": ["hello world", "the cat sat"]},
    ]
    with gzip.open(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_build_command_makes_a_datastore_from_a_conversation_corpus(tmp_path):
    make_word_tokenizer(tmp_path / "tok")
    write_corpus(tmp_path / "corpus.jsonl.gz")
    out = tmp_path / "store.sdbrest"
    assert main(["build", "--corpus", str(tmp_path / "corpus.jsonl.gz"), "--tokenizer", str(tmp_path / "tok"),
                 "--out", str(out)]) == 0
    store = read_datastore(out)
    assert store.n_entries == 6 and store.meta["mode"] == "messages"  # one entry per message
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    span, paths = retrieve(store, tok.encode("the cat", add_special_tokens=False), choices=4, long=3)
    assert span == 2 and tok.decode(list(paths[0])) == "sat"


def test_with_a_chat_template_each_conversation_is_one_entry(tmp_path):
    template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
    make_word_tokenizer(tmp_path / "tok", chat_template=template)
    write_corpus(tmp_path / "corpus.jsonl.gz")
    out = tmp_path / "store.sdbrest"
    main(["build", "--corpus", str(tmp_path / "corpus.jsonl.gz"), "--tokenizer", str(tmp_path / "tok"),
          "--out", str(out)])
    store = read_datastore(out)
    assert store.n_entries == 3 and store.meta["mode"] == "chat"


GEN_TEMPLATE = ("{% for m in messages %}{{ m['content'] }} </s> {% endfor %}"
                "{% if add_generation_prompt %}a {% endif %}")


def write_generated_corpus(path, tok):
    """Records as training/make_corpus.py writes them: token ids, finished flag, split."""
    prompt_ids = tok(tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False,
                                             add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    records = [
        # Stored ids that the text would not give back (a tokenizer may split text differently).
        {"id": "g", "split": "train", "finished": True, "prompt_token_ids": prompt_ids,
         "answer_token_ids": tok.convert_tokens_to_ids(["dog", "sat"]),
         "conversations": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "fine"}]},
        {"id": "h", "split": "heldout", "finished": False, "prompt_token_ids": prompt_ids,
         "answer_token_ids": tok.convert_tokens_to_ids(["how"]),
         "conversations": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "how"}]},
        # Ids of another tokenizer: the text goes through the chat template instead.
        {"id": "o", "split": "train", "finished": True, "prompt_token_ids": [90, 91],
         "answer_token_ids": [92], "conversations": [{"role": "user", "content": "the cat"},
                                                     {"role": "assistant", "content": "on mat"}]},
    ]
    with gzip.open(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return prompt_ids


def test_generated_corpus_entries_are_its_token_ids_without_the_heldout_split(tmp_path):
    tok = make_word_tokenizer(tmp_path / "tok", chat_template=GEN_TEMPLATE)
    prompt_ids = write_generated_corpus(tmp_path / "corpus.jsonl.gz", tok)
    out = tmp_path / "store.sdbrest"
    main(["build", "--corpus", str(tmp_path / "corpus.jsonl.gz"), "--tokenizer", str(tmp_path / "tok"),
          "--out", str(out)])
    store = read_datastore(out)
    entries = [store.tokens[store.entry_starts[i]: store.entry_starts[i + 1]].tolist() for i in range(store.n_entries)]
    templated = tok.apply_chat_template([{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "on mat"}],
                                        tokenize=True, return_dict=False)
    assert entries == [prompt_ids + tok.convert_tokens_to_ids(["dog", "sat"]) + [tok.eos_token_id], list(templated)]
    assert store.meta["include_heldout"] is False
    main(["build", "--corpus", str(tmp_path / "corpus.jsonl.gz"), "--tokenizer", str(tmp_path / "tok"),
          "--out", str(out), "--include-heldout"])
    store = read_datastore(out)
    assert store.n_entries == 3 and store.meta["include_heldout"] is True
    assert store.tokens[store.entry_starts[1]: store.entry_starts[2]].tolist() == prompt_ids + tok.convert_tokens_to_ids(["how"])


def test_build_command_names_a_missing_corpus(tmp_path, capsys):
    make_word_tokenizer(tmp_path / "tok")
    with pytest.raises(SystemExit):
        main(["build", "--corpus", str(tmp_path / "none.jsonl"), "--tokenizer", str(tmp_path / "tok"),
              "--out", str(tmp_path / "s.sdbrest")])
    assert "none.jsonl: no such file" in capsys.readouterr().err


def test_build_command_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--help"])
    assert exit_info.value.code == 0 and "--corpus" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module", params=BACKENDS)
def engine(request):
    return SpeculativeEngine(make_tiny_llama(vocab_size=VOCAB, seed=0), backend=request.param)


@pytest.fixture(scope="module")
def cases(engine):
    """Prompts with their baseline answers (two turns), and a datastore of the text the target
    writes on half of them, so that retrieval finds real continuations."""
    g = torch.Generator().manual_seed(5)
    config = DecodingConfig(max_new_tokens=32)
    out = []
    for _ in range(8):
        prompt = torch.randint(3, VOCAB, (12,), generator=g).tolist()
        first, _ = engine.generate(prompt, VanillaDrafter(), config)
        second_prompt = prompt + first + [40, 41, 42]
        second, _ = engine.generate(second_prompt, VanillaDrafter(), config)
        out.append((prompt, first, second_prompt, second))
    corpus = [p + f for p, f, _, _ in out[::2]] + [sp + s for _, _, sp, s in out[::2]]
    return out, build_datastore(corpus, vocab_size=VOCAB)


@pytest.mark.parametrize("num_draft,long", [(64, 10), (8, 4), (1, 1)])
def test_greedy_output_is_the_baseline_token_for_token(engine, cases, num_draft, long):
    conversations, store = cases
    drafter = RestDrafter(store, num_draft=num_draft, long=long)
    config = DecodingConfig(max_new_tokens=32)
    tokens = steps = 0
    for prompt, first, second_prompt, second in conversations:
        got1, s1 = engine.generate(prompt, drafter, config)
        got2, s2 = engine.generate(second_prompt, drafter, config)
        assert (got1, got2) == (first, second)
        assert s1.draft_tokens <= num_draft * s1.decoding_steps
        tokens += s1.new_tokens + s2.new_tokens
        steps += s1.decoding_steps + s2.decoding_steps
    assert tokens / steps > 1.3  # retrieved continuations are accepted


def test_sampling_runs_through_lossless_acceptance(engine, cases):
    conversations, store = cases
    drafter = RestDrafter(store, num_draft=16, long=6)
    config = DecodingConfig(max_new_tokens=32, temperature=0.7, top_p=0.9)
    for prompt, _, second_prompt, _ in conversations[:4]:
        for p in (prompt, second_prompt):
            tokens, stats = engine.generate(p, drafter, config, seed=1)
            assert all(0 <= t < VOCAB for t in tokens)
            assert sum(stats.accept_lengths) == stats.new_tokens == len(tokens) == 32


def test_from_args_takes_cpu_defaults_and_a_datastore_file(tmp_path):
    store = build_datastore([[1, 2, 3]], vocab_size=VOCAB)
    write_datastore(store, tmp_path / "s.sdbrest")
    args = SimpleNamespace(rest_datastore=tmp_path / "s.sdbrest", rest_num_draft=None, rest_max_token_span=None,
                           rest_k=None, rest_long=None)
    drafter = RestDrafter.from_args(args, make_tiny_llama(vocab_size=VOCAB), None)
    assert (drafter.num_draft, drafter.long) == (CPU_DEFAULTS["num_draft"], CPU_DEFAULTS["long"])
    assert drafter.datastore.n_tokens == 3
    args.rest_num_draft = 3
    assert RestDrafter.from_args(args, make_tiny_llama(vocab_size=VOCAB), None).num_draft == 3


@pytest.mark.embedded_model
def test_default_datastore_is_built_from_the_bundled_corpus(tmp_path, monkeypatch):
    from methods.core.model_loading import load_tokenizer
    from methods.drafters.rest_datastore import BUNDLED_CORPUS, default_datastore

    if not BUNDLED_CORPUS.is_file():
        pytest.fail("the bundled corpus data/corpus/smollm2_corpus.jsonl.gz is missing")
    tokenizer = load_tokenizer("embedded")
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path))
    store = default_datastore(tokenizer)
    assert store.n_entries > 100 and list((tmp_path / "rest").iterdir())
    # The assistant header is followed by the first words of answers.
    header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    span, paths = retrieve(store, header, choices=8, long=4)
    assert span >= 2 and paths
