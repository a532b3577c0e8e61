"""The corpus prompt file, its leakage check, the held-out split, and make_corpus end to end on a
tiny local model."""

from __future__ import annotations

import gzip
import json

import pytest

from evaluation.record.subtasks import MT_BENCH_CATEGORIES, SUBTASK_DISPLAY_NAMES
from tests.conftest import ROOT, SHARED_QUESTIONS
from tests.test_inference import save_tiny_model
from training import corpus_leakage, corpus_prompt_sources, make_corpus

PROMPTS = make_corpus.read_prompts(make_corpus.DEFAULT_PROMPTS)


def test_prompt_file_has_600_unique_prompts_covering_every_subtask():
    ids = [p["id"] for p in PROMPTS]
    assert len(ids) >= 600 and len(set(ids)) == len(ids)
    categories = {p["category"] for p in PROMPTS}
    wanted = set(MT_BENCH_CATEGORIES) | set(SUBTASK_DISPLAY_NAMES) - {"mt_bench"}
    assert wanted <= categories, wanted - categories
    assert all(p["prompt"].strip() for p in PROMPTS)
    assert len({p["prompt"] for p in PROMPTS}) == len(PROMPTS)  # no prompt asked twice


def test_prompt_file_is_what_the_source_script_writes():
    assert corpus_prompt_sources.main(["--check"]) == 0


def test_long_context_prompts_are_present():
    long = [p for p in PROMPTS if p["category"] in ("summarization", "rag") and len(p["prompt"].split()) >= 200]
    assert len(long) >= 36


def test_split_is_deterministic_and_covers_every_category_both_ways():
    splits = make_corpus.assign_splits(PROMPTS)
    assert splits == make_corpus.assign_splits(list(reversed(PROMPTS)))  # order does not matter
    for category in {p["category"] for p in PROMPTS}:
        kinds = [splits[p["id"]] for p in PROMPTS if p["category"] == category]
        assert kinds.count("heldout") >= 1 and kinds.count("train") >= 1, category
    share = sum(v == "heldout" for v in splits.values()) / len(splits)
    assert 0.08 <= share <= 0.12


def test_split_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        make_corpus.assign_splits(PROMPTS, 1.5)


def test_word_runs_are_lower_cased_word_tokens():
    assert corpus_leakage.word_runs("A b, C! d", 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert corpus_leakage.word_runs("too short", 3) == set()


def test_leakage_check_finds_a_shared_run(tmp_path):
    questions = tmp_path / "question.jsonl"
    questions.write_text(json.dumps({"question_id": 7, "turns": [
        "Please tell me: one two three four five six seven eight nine ten, thanks."]}) + "\n")
    prompts = [{"id": "a", "prompt": "ONE two three four five six seven eight nine, ten!"},
               {"id": "b", "prompt": "one two three four five six seven eight nine eleven"}]
    leaks = corpus_leakage.find_leaks(prompts, [questions])
    assert [(pid, qid) for pid, _, qid, _ in leaks] == [("a", "7")]


def test_corpus_prompts_share_no_ten_word_run_with_the_bundled_questions():
    bundled = ROOT / "data" / "bundled" / "question.jsonl"
    assert corpus_leakage.find_leaks(PROMPTS, [bundled]) == []


def test_corpus_prompts_share_no_ten_word_run_with_spec_bench():
    path = next((p for p in (ROOT / "data" / "spec_bench" / "question.jsonl", SHARED_QUESTIONS) if p.is_file()), None)
    if path is None:
        pytest.skip("the Spec-Bench question file is not on this machine")
    assert corpus_leakage.find_leaks(PROMPTS, [path]) == []


# ---------------------------------------------------------------------------------- make_corpus
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def write_prompts(path, n=7):
    with open(path, "w") as f:
        for i in range(n):
            words = " ".join(f"w{3 + (i * 7 + k) % 90}" for k in range(2 + i % 4))
            f.write(json.dumps({"id": f"p{i}", "category": "cat" if i < 4 else "other", "prompt": words}) + "\n")
    return path


def run_corpus(tiny_folder, prompts, out, *extra):
    return make_corpus.main(["--model-path", str(tiny_folder), "--prompts", str(prompts), "--out", str(out),
                             "--dtype", "float64", "--device", "cpu", "--max-new-tokens", "6",
                             "--batch-size", "3", *extra])


def read(path):
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_make_corpus_stores_greedy_ids_that_decode_to_the_answer_and_a_split(tiny_folder, tmp_path):
    from transformers import AutoTokenizer

    prompts = write_prompts(tmp_path / "p.jsonl")
    assert run_corpus(tiny_folder, prompts, tmp_path / "c.jsonl.gz") == 0
    records = read(tmp_path / "c.jsonl.gz")
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    splits = make_corpus.assign_splits(make_corpus.read_prompts(prompts))
    assert sorted(r["id"] for r in records) == [f"p{i}" for i in range(7)]
    for r in records:
        ids = r["answer_token_ids"]
        assert r["conversations"][1]["content"] == tokenizer.decode(ids, skip_special_tokens=True)
        assert len(ids) <= 6 and (r["finished"] or len(ids) == 6)
        assert 2 not in ids  # the end-of-sequence token is never part of the answer
        assert r["split"] == splits[r["id"]]
        assert r["prompt_token_ids"] == make_corpus.chat_prompt_ids(tokenizer, r["conversations"][0]["content"])
    assert {r["split"] for r in records} == {"train", "heldout"}


def test_make_corpus_ids_are_the_models_greedy_continuation(tiny_folder, tmp_path):
    """Each row of a padded batch gets what the model generates for that prompt alone."""
    import torch
    from transformers import AutoModelForCausalLM

    prompts = write_prompts(tmp_path / "p.jsonl")
    run_corpus(tiny_folder, prompts, tmp_path / "c.jsonl.gz")
    model = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float64)
    for r in read(tmp_path / "c.jsonl.gz"):
        ids = torch.tensor([r["prompt_token_ids"]])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                             do_sample=False, eos_token_id=2, pad_token_id=2)[0, ids.shape[1]:].tolist()
        expected = out[: out.index(2)] if 2 in out else out
        assert r["answer_token_ids"] == expected
        assert r["finished"] == (2 in out)


def test_make_corpus_resumes_and_shards_give_the_same_corpus(tiny_folder, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl")
    run_corpus(tiny_folder, prompts, tmp_path / "whole.jsonl.gz")
    run_corpus(tiny_folder, prompts, tmp_path / "s0.jsonl.gz", "--shard", "0/2")
    run_corpus(tiny_folder, prompts, tmp_path / "s1.jsonl.gz", "--shard", "1/2")
    assert run_corpus(tiny_folder, prompts, tmp_path / "s1.jsonl.gz", "--shard", "1/2") == 0  # nothing left
    whole = {r["id"]: r for r in read(tmp_path / "whole.jsonl.gz")}
    shards = read(tmp_path / "s0.jsonl.gz") + read(tmp_path / "s1.jsonl.gz")
    assert len(shards) == len(whole) and {r["id"]: r for r in shards} == whole
    partial = tmp_path / "partial.jsonl.gz"
    run_corpus(tiny_folder, prompts, partial, "--limit", "3")
    run_corpus(tiny_folder, prompts, partial)
    assert {r["id"]: r for r in read(partial)} == whole


def test_make_corpus_refuses_to_resume_with_other_settings(tiny_folder, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl")
    run_corpus(tiny_folder, prompts, tmp_path / "c.jsonl.gz", "--limit", "2")
    with pytest.raises(SystemExit, match="max_new_tokens"):
        make_corpus.main(["--model-path", str(tiny_folder), "--prompts", str(prompts),
                          "--out", str(tmp_path / "c.jsonl.gz"), "--max-new-tokens", "9"])


def test_read_prompts_names_a_duplicate_id(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: duplicate id 'a'"):
        make_corpus.read_prompts(path)


def test_merge_puts_shards_in_prompt_order_and_refuses_duplicates(tiny_folder, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl")
    for k in (0, 1):
        run_corpus(tiny_folder, prompts, tmp_path / f"s{k}.jsonl.gz", "--shard", f"{k}/2")
    shards = [str(tmp_path / "s0.jsonl.gz"), str(tmp_path / "s1.jsonl.gz")]
    assert make_corpus.main(["--prompts", str(prompts), "--out", str(tmp_path / "m.jsonl.gz"), "--merge", *shards]) == 0
    assert [r["id"] for r in read(tmp_path / "m.jsonl.gz")] == [f"p{i}" for i in range(7)]
    again = tmp_path / "again.jsonl.gz"
    make_corpus.main(["--prompts", str(prompts), "--out", str(again), "--merge", *reversed(shards)])
    assert again.read_bytes() == (tmp_path / "m.jsonl.gz").read_bytes()
    with pytest.raises(SystemExit, match="also in another shard"):
        make_corpus.main(["--prompts", str(prompts), "--out", str(tmp_path / "x.jsonl.gz"),
                          "--merge", shards[0], shards[0]])


def test_stats_count_answer_tokens_per_category_and_split():
    records = [{"category": "a", "split": "train", "answer_token_ids": [1, 2, 3], "finished": True},
               {"category": "a", "split": "heldout", "answer_token_ids": [4], "finished": False},
               {"category": "b", "split": "train", "answer_token_ids": [5, 6], "finished": False}]
    table = {line.rsplit(None, 3)[0]: line.split()[-3:] for line in make_corpus.corpus_stats(records).splitlines()[1:]}
    assert table == {"category a": ["2", "4", "1"], "category b": ["1", "2", "1"], "split heldout": ["1", "1", "1"],
                     "split train": ["2", "5", "1"], "all": ["3", "6", "2"]}
