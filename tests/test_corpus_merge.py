"""generate_corpus --merge: the build's answers, plus finished corpus files added as they are."""

from __future__ import annotations

import gzip
import json

import pytest

from methods.core.model_loading import load_tokenizer
from tests.test_inference import save_tiny_model
from training.generate_corpus import main, stage_path


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def _answer(i, task="math"):
    return {"id": f"{task}-{i:06d}", "task": task, "turns": [f"question {i}"], "answers_before": [],
            "model": "tiny", "max_new_tokens": 8, "finished": True, "prompt_token_ids": [1, 2, 3],
            "answer_token_ids": [4 + i, 5]}


def _read(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_merge_adds_included_corpus_records_as_they_are(tiny_folder, tmp_path):
    work = tmp_path / "build"
    _write(stage_path(work, "answer1"), [_answer(i) for i in range(12)])
    _write(stage_path(work, "answer2"), [])
    written = [{"id": "writing-00", "category": "writing", "split": "heldout", "answer_token_ids": [7, 8],
                "prompt_token_ids": [1, 2], "conversations": []}]
    _write(tmp_path / "written.jsonl.gz", written)
    out = tmp_path / "corpus.jsonl.gz"
    argv = ["--model-path", str(tiny_folder), "--merge", str(work), "--include", str(tmp_path / "written.jsonl.gz"),
            "--out", str(out)]
    assert main(argv) == 0
    records = _read(out)
    assert [r["id"] for r in records] == [f"math-{i:06d}" for i in range(12)] + ["writing-00"]
    assert records[-1] == written[0]
    first = out.read_bytes()
    assert main(argv) == 0 and out.read_bytes() == first  # the same inputs give the same bytes


def test_merge_refuses_a_clash_and_a_file_that_is_no_corpus(tiny_folder, tmp_path):
    work = tmp_path / "build"
    _write(stage_path(work, "answer1"), [_answer(0)])
    _write(stage_path(work, "answer2"), [])
    _write(tmp_path / "clash.jsonl.gz", [{**_answer(0), "split": "train"}])
    with pytest.raises(SystemExit, match="id 'math-000000' is also in the build"):
        main(["--model-path", str(tiny_folder), "--merge", str(work), "--include", str(tmp_path / "clash.jsonl.gz"),
              "--out", str(tmp_path / "out.jsonl.gz")])
    _write(tmp_path / "bad.jsonl.gz", [{"id": "x"}])
    with pytest.raises(SystemExit, match="not a corpus record"):
        main(["--model-path", str(tiny_folder), "--merge", str(work), "--include", str(tmp_path / "bad.jsonl.gz"),
              "--out", str(tmp_path / "out.jsonl.gz")])
    with pytest.raises(SystemExit):
        main(["--model-path", str(tiny_folder), "--merge", str(work), "--include", str(tmp_path / "none.jsonl.gz"),
              "--out", str(tmp_path / "out.jsonl.gz")])
    assert not (tmp_path / "out.jsonl.gz").exists()


def test_stats_count_the_records_and_answer_tokens_of_every_stage(tiny_folder, tmp_path, capsys):
    work = tmp_path / "build"
    _write(stage_path(work, "user1"), [])
    _write(stage_path(work, "answer1"), [_answer(i) for i in range(3)])  # 2 answer tokens each
    _write(stage_path(work, "user2"), [])
    _write(stage_path(work, "answer2"), [_answer(9)])
    assert main(["--model-path", str(tiny_folder), "--work-dir", str(work), "--stats"]) == 0
    out = capsys.readouterr().out
    assert "answer1: 3 records, 6 answer tokens" in out and "answer2: 1 records, 2 answer tokens" in out
    assert "user1: 0 records\n" in out


def test_merge_leaves_out_a_record_whose_answer_shares_a_run_with_an_evaluation_set(tiny_folder, tmp_path, capsys):
    work = tmp_path / "build"
    _write(stage_path(work, "answer1"), [_answer(i) for i in range(6)])
    _write(stage_path(work, "answer2"), [])
    phrase = "a sequence of numbers in which each number is the sum of the two before it"
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "turns": [f"Explain {phrase}."]}) + "\n")

    def written(i, answer):
        return {"id": f"writing-{i:02d}", "category": "writing", "split": "train", "answer_token_ids": [7],
                "prompt_token_ids": [1], "conversations": [{"role": "user", "content": "Tell me a fact."},
                                                           {"role": "assistant", "content": answer}]}

    _write(tmp_path / "written.jsonl.gz", [written(0, f"It is {phrase}."), written(1, "Fibonacci liked rabbits.")])
    out = tmp_path / "corpus.jsonl.gz"
    argv = ["--model-path", str(tiny_folder), "--merge", str(work), "--include", str(tmp_path / "written.jsonl.gz"),
            "--against", str(questions), "--out", str(out)]
    assert main(argv) == 0
    kept = [r["id"] for r in _read(out)]
    assert "writing-00" not in kept and "writing-01" in kept and len(kept) == 7
    assert "left out 1 records sharing a 10-word run" in capsys.readouterr().err
