"""The runner end to end on a tiny local Hugging Face folder (model + word-level tokenizer)."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from evaluation.inference import main
from tests.tiny_model import make_tiny_llama

VOCAB = 97
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def save_tiny_model(folder, vocab_words=None, seed=0):
    words = vocab_words or ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(3, VOCAB)]
    vocab = {w: i for i, w in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    tokenizer.chat_template = CHAT_TEMPLATE
    model = make_tiny_llama(vocab_size=VOCAB, seed=seed)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def questions(tmp_path):
    path = tmp_path / "question.jsonl"
    rows = [
        {"question_id": 1, "category": "writing", "turns": ["w5 w6 w7 w5 w6", "w9 w10 w11"]},
        {"question_id": 2, "category": "qa", "turns": ["w20 w21 w22 w23 w20 w21"]},
        {"question_id": 3, "category": "translation", "turns": ["w40 w41 w40 w41 w40"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(tiny_folder, questions, answer, method, *extra):
    return main(["--method", method, "--model-path", str(tiny_folder), "--dtype", "float64",
                 "--device", "cpu", "--question-file", str(questions), "--answer-file", str(answer),
                 "--max-new-tokens", "24", "--warmup", "1", "--no-progress", *extra])


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_method_writes_the_baseline_answers_in_spec_bench_schema(tiny_folder, questions, tmp_path):
    results = {}
    for method, extra in [("vanilla", []), ("pld", []), ("sps", ["--drafter-path", "self:1"])]:
        answer = tmp_path / f"{method}.jsonl"
        assert run(tiny_folder, questions, answer, method, *extra) == 0
        results[method] = read(answer)
    base = results["vanilla"]
    assert [r["question_id"] for r in base] == [1, 2, 3]
    for method, records in results.items():
        for record, ref in zip(records, base):
            for key in ("question_id", "category", "answer_id", "model_id", "choices", "tstamp"):
                assert key in record
            choice = record["choices"][0]
            assert len(choice["turns"]) == len(choice["new_tokens"]) == len(choice["wall_time"])
            assert len(choice["turns"]) == len(ref["choices"][0]["turns"])  # multi-turn carried
            assert choice["token_ids"] == ref["choices"][0]["token_ids"], method
            assert choice["turns"] == ref["choices"][0]["turns"]
            assert sum(choice["accept_lengths"]) == sum(choice["new_tokens"])
            assert len(choice["accept_lengths"]) == sum(choice["decoding_steps"])
            assert all(n <= 24 for n in choice["new_tokens"])
            assert record["method"] == method and record["environment"]["dtype"] == "float64"
            assert all(t > 0 for t in choice["wall_time"])
            # Each verification forward carries the root and the draft tree.
            assert sum(choice["forward_tokens"]) >= sum(choice["decoding_steps"])
    # The longest draft, as each drafter declares it, is recorded with the method's parameters.
    params = {method: records[0]["method_params"] for method, records in results.items()}
    assert params["vanilla"]["max_draft_length"] == 0
    assert params["pld"]["max_draft_length"] == params["pld"]["num_pred"]
    expected_sps = None if params["sps"]["schedule"] == "heuristic" else params["sps"]["gamma"]
    assert params["sps"]["max_draft_length"] == expected_sps
    # Each run measured its device's verification cost curve up to its largest forward, once,
    # and wrote it into every line.
    for method, records in results.items():
        curves = [r["verify_cost"] for r in records]
        assert all(c == curves[0] for c in curves)
        curve = curves[0]
        assert curve["tokens"][0] == 1 and curve["relative"][0] == 1.0
        assert all(s > 0 for s in curve["seconds"]) and curve["repeats"] == 3
        nodes = params[method]["max_draft_tokens"]
        largest = max(2, (15 if nodes is None else nodes) + 1)  # no bound: up to 16 tokens
        assert curve["tokens"][-1] == largest, method


def test_cost_curve_can_be_left_out(tiny_folder, questions, tmp_path):
    answer = tmp_path / "pld.jsonl"
    assert run(tiny_folder, questions, answer, "pld", "--cost-curve-repeats", "0") == 0
    assert all("verify_cost" not in r for r in read(answer))


def test_rerun_skips_answered_questions_and_keeps_one_sorted_line_each(tiny_folder, questions, tmp_path):
    answer = tmp_path / "a.jsonl"
    assert run(tiny_folder, questions, answer, "vanilla", "--question-begin", "1") == 0
    first = read(answer)
    assert [r["question_id"] for r in first] == [2, 3]
    assert run(tiny_folder, questions, answer, "vanilla") == 0
    second = read(answer)
    assert [r["question_id"] for r in second] == [1, 2, 3]
    assert second[1]["answer_id"] == first[0]["answer_id"]  # not regenerated


def test_crash_cut_line_is_kept_aside_not_lost(tiny_folder, questions, tmp_path):
    answer = tmp_path / "a.jsonl"
    answer.write_text('{"question_id": 2, "cat')
    assert run(tiny_folder, questions, answer, "vanilla") == 0
    assert [r["question_id"] for r in read(answer)] == [1, 2, 3]
    assert (tmp_path / "a.jsonl.bad").read_text().startswith('{"question_id": 2')


@pytest.mark.parametrize("argv_extra, message", [
    (["--method", "nonsense"], "unknown method nonsense; available: vanilla"),
    (["--method", "vanilla,nonsense"], "unknown method nonsense"),
])
def test_unknown_method_is_a_clear_usage_error(argv_extra, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv_extra)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_sps_without_drafter_says_what_is_missing(tiny_folder, questions, tmp_path, capsys):
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "sps") == 2
    assert "--drafter-path" in capsys.readouterr().err


def test_drafter_with_another_tokenizer_is_refused(tiny_folder, questions, tmp_path, capsys):
    other_words = ["<unk>", "<s>", "</s>"] + [f"x{i}" for i in range(3, VOCAB)]
    other = save_tiny_model(tmp_path / "other", vocab_words=other_words, seed=1)
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "sps", "--drafter-path", str(other)) == 2
    assert "tokenizer differs" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ('{"question_id": 1, "category": "qa", "turns": ["w5"]}\nnot json\n', "line 2"),
])
def test_bad_question_files_are_reported_by_line(tiny_folder, tmp_path, capsys, content, message):
    path = tmp_path / "q.jsonl"
    path.write_text(content)
    assert run(tiny_folder, path, tmp_path / "a.jsonl", "vanilla") == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err.lower()
    assert not (tmp_path / "a.jsonl").exists()


def test_missing_model_folder_is_a_clear_error(questions, tmp_path, capsys):
    code = main(["--method", "vanilla", "--model-path", str(tmp_path / "nope"), "--question-file",
                 str(questions), "--answer-file", str(tmp_path / "a.jsonl"), "--no-progress"])
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_sampling_run_is_reproducible_per_seed(tiny_folder, questions, tmp_path):
    outs = []
    for name in ("a", "b"):
        answer = tmp_path / f"{name}.jsonl"
        assert run(tiny_folder, questions, answer, "pld", "--temperature", "0.9", "--seed", "3") == 0
        outs.append([r["choices"][0]["token_ids"] for r in read(answer)])
    assert outs[0] == outs[1]


def test_several_methods_run_interleaved_into_one_file_each(tiny_folder, questions, tmp_path):
    argv = ["--model-path", str(tiny_folder), "--dtype", "float64", "--device", "cpu",
            "--question-file", str(questions), "--answer-dir", str(tmp_path),
            "--model-id", "tiny-{method}", "--max-new-tokens", "24", "--warmup", "1", "--no-progress"]
    assert main(["--method", "vanilla,pld,sps", "--drafter-path", "self:1", *argv]) == 0
    files = {m: tmp_path / f"tiny-{m}.jsonl" for m in ("vanilla", "pld", "sps")}
    results = {m: read(path) for m, path in files.items()}
    for method, records in results.items():
        assert [r["question_id"] for r in records] == [1, 2, 3]
        assert {r["method"] for r in records} == {method}
        assert {r["model_id"] for r in records} == {f"tiny-{method}"}
        for record, ref in zip(records, results["vanilla"]):
            assert record["choices"][0]["token_ids"] == ref["choices"][0]["token_ids"]
    # Interleaved: question 2's answers were all written after every answer to question 1.
    stamps = {m: {r["question_id"]: r["tstamp"] for r in rs} for m, rs in results.items()}
    assert max(s[1] for s in stamps.values()) < min(s[2] for s in stamps.values())

    # A method that lost a question re-answers only that one; the others are left alone.
    kept = files["pld"].read_text().splitlines()
    files["pld"].write_text("\n".join(line for line in kept if '"question_id": 2' not in line) + "\n")
    before = {m: p.read_text() for m, p in files.items() if m != "pld"}
    assert main(["--method", "vanilla,pld,sps", "--drafter-path", "self:1", *argv]) == 0
    assert [r["question_id"] for r in read(files["pld"])] == [1, 2, 3]
    assert {m: p.read_text() for m, p in files.items() if m != "pld"} == before


@pytest.mark.parametrize("extra, message", [
    (["--model-id", "fixed-name"], "{method}"),
    (["--answer-file", "one.jsonl"], "{method}"),
])
def test_several_methods_need_one_answer_file_each(tiny_folder, questions, extra, message, capsys):
    argv = ["--method", "vanilla,pld", "--model-path", str(tiny_folder), "--question-file",
            str(questions), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_method_listed_twice_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["--method", "pld,pld"])
    assert "listed twice" in capsys.readouterr().err


def test_every_token_gets_the_targets_logit_margin(tiny_folder, questions, tmp_path):
    """One margin per generated token, compact, and the same target margins for every method
    (they come from the target's rows, whoever drafted)."""
    margins = {}
    for method, extra in [("vanilla", []), ("pld", [])]:
        answer = tmp_path / f"{method}.jsonl"
        assert run(tiny_folder, questions, answer, method, *extra) == 0
        margins[method] = []
        for record in read(answer):
            choice = record["choices"][0]
            assert [len(m) for m in choice["logit_margins"]] == choice["new_tokens"]
            assert all(m >= 0 and len(repr(m)) <= 8 for turn in choice["logit_margins"] for m in turn)
            margins[method].append(choice["logit_margins"])
    assert margins["pld"] == margins["vanilla"]


def test_per_subtask_answers_the_first_questions_of_each_subtask(tiny_folder, tmp_path):
    path = tmp_path / "question.jsonl"
    rows = [(1, "qa"), (2, "qa"), (3, "writing"), (4, "translation"), (5, "coding"), (6, "qa")]
    path.write_text("".join(json.dumps({"question_id": i, "category": c, "turns": ["w5 w6 w7"]}) + "\n"
                            for i, c in rows))
    answer = tmp_path / "a.jsonl"
    assert run(tiny_folder, path, answer, "vanilla", "--per-subtask", "1") == 0
    assert [r["question_id"] for r in read(answer)] == [1, 3, 4]  # writing and coding: mt_bench


def test_per_subtask_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["--method", "vanilla", "--per-subtask", "0"])
    assert "--per-subtask: must be at least 1, got 0" in capsys.readouterr().err


def test_backend_is_recorded_and_both_backends_give_the_same_answers(tiny_folder, questions, tmp_path):
    answers = {}
    for backend in ("hf", "lean"):
        answer = tmp_path / f"{backend}.jsonl"
        assert run(tiny_folder, questions, answer, "pld", "--backend", backend) == 0
        records = [json.loads(line) for line in answer.read_text().splitlines()]
        assert {r["environment"]["backend"] for r in records} == {backend}
        native = {r["environment"]["native_code"] for r in records}
        if backend == "hf":
            assert native == {"none"}
        else:  # the tiny model is float32 or float64: native layer or torch ops, named either way
            assert len(native) == 1 and next(iter(native)).startswith(("native layer: skinny_gemm v", "torch ops"))
        answers[backend] = [r["choices"][0]["token_ids"] for r in records]
    assert answers["hf"] == answers["lean"]
    # auto is lean on the CPU for a llama model; resuming the hf file with it is refused.
    assert run(tiny_folder, questions, tmp_path / "auto.jsonl", "vanilla") == 0
    auto = json.loads((tmp_path / "auto.jsonl").read_text().splitlines()[0])
    assert auto["environment"]["backend"] == "lean"
    assert run(tiny_folder, questions, tmp_path / "hf.jsonl", "pld", "--backend", "lean") == 2


def test_a_full_disk_while_appending_is_one_line_and_a_rerun_resumes(tiny_folder, questions, tmp_path, monkeypatch,
                                                                     capsys):
    """The second answer meets a full disk half-way through its line: the run stops with one
    sentence, the first answer stays, and the same command run again completes the file."""
    import errno
    import pathlib

    answer = tmp_path / "a.jsonl"
    real_open = pathlib.Path.open
    appends = []

    class HalfWriteThenFull:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[:len(text) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    def open_with_a_full_disk(self, mode="r", *args, **kwargs):
        f = real_open(self, mode, *args, **kwargs)
        if self == answer and mode == "a":
            appends.append(self)
            if len(appends) == 2:
                return HalfWriteThenFull(f)
        return f

    monkeypatch.setattr(pathlib.Path, "open", open_with_a_full_disk)
    assert run(tiny_folder, questions, answer, "vanilla") == 2
    err = capsys.readouterr().err
    line = [l for l in err.splitlines() if l.startswith("error:")]
    assert line == [f"error: cannot write answers to {answer}: No space left on device; the answers written "
                    f"before this one are kept (a line cut short is set aside, not read as an answer): free "
                    f"space or fix the cause, then run the same command again to resume"]
    assert "Traceback" not in err
    first = answer.read_text().splitlines()
    assert json.loads(first[0])["question_id"] == 1 and len(first) == 2  # the cut line follows

    monkeypatch.undo()
    assert run(tiny_folder, questions, answer, "vanilla") == 0
    records = read(answer)
    assert [r["question_id"] for r in records] == [1, 2, 3]
    assert records[0] == json.loads(first[0])  # the first answer kept, not answered again
    assert (tmp_path / "a.jsonl.bad").read_text().startswith('{"question_id": 2')


def test_a_prompt_longer_than_the_context_is_an_error_and_each_turn_says_why_it_stopped(tmp_path, capsys):
    """A turn ends for a reason recorded in the line (stop_reason); a prompt with no room for one
    token is the question's error (PromptTooLong), never an empty answer recorded as normal."""
    context = 40
    folder = save_tiny_model(tmp_path / "short-context")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": context}))
    words = [f"w{i}" for i in range(3, 60)]
    rows = [{"question_id": 1, "category": "writing", "turns": [" ".join(words[:6]), " ".join(words[6:9])]},
            {"question_id": 2, "category": "qa", "turns": [" ".join(words[:30])]},
            {"question_id": 3, "category": "qa", "turns": [" ".join(words[:context + 5])]}]
    questions = tmp_path / "question.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answer = tmp_path / "a.jsonl"
    assert main(["--method", "vanilla", "--model-path", str(folder), "--dtype", "float64", "--device", "cpu",
                 "--question-file", str(questions), "--answer-file", str(answer), "--max-new-tokens", "64",
                 "--warmup", "0", "--no-progress"]) == 1  # a question failed
    records = {r["question_id"]: r for r in read(answer)}
    reasons = []
    for qid in (1, 2):
        choice = records[qid]["choices"][0]
        assert "error" not in records[qid]
        assert len(choice["stop_reason"]) == len(choice["turns"])
        for prompt, ids, reason in zip(choice["prompt_tokens"], choice["token_ids"], choice["stop_reason"]):
            reasons.append(reason)
            if reason == "context_limit":
                assert prompt + len(ids) == context
            elif reason == "max_new_tokens":
                assert len(ids) == 64
            else:
                assert reason == "stop" and ids[-1] == 2
    assert "context_limit" in reasons
    failed = records[3]
    assert failed["error"].startswith("turn 1: PromptTooLong: the prompt has ")
    assert f"the model's context is {context}" in failed["error"] and "shorten the prompt" in failed["error"]
    assert failed["choices"][0]["turns"] == [] and failed["choices"][0]["stop_reason"] == []
    assert "question 3 failed: turn 1: PromptTooLong" in capsys.readouterr().err
