"""speed.py: figures equal hand-computed ones, Spec-Bench's sound numbers are reproduced, and
bad input is refused with a message (and exit status 2), never averaged in."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation import speed
from evaluation.record.answers import read_answer_file
from evaluation.compare.speedup import SpeedInputError, compare_speed
from evaluation.compare.stats import bootstrap_speedup_ci
from tests.answer_fixtures import (
    QUESTIONS,
    our_answer,
    spec_bench_answer,
    synthetic_run,
    text_of,
    write_answer_file,
)

ROOT = Path(__file__).resolve().parents[1]


def hand_method():
    """Three questions; the numbers of test_hand_computed_figures come from these."""
    common = dict(method="pld", method_params={"max_draft_length": 2})
    return [
        our_answer(81, "writing", [[1, 2, 3, 4], [5, 6]], [0.1, 0.1], [[3, 1], [2]],
                   draft_tokens=[4, 2], draft_time=[0.02, 0.02], verify_time=[0.05, 0.05], **common),
        our_answer(161, "translation", [[7, 8, 9, 10, 11, 12]], [0.2], [[3, 3]],
                   draft_tokens=[4], draft_time=[0.04], verify_time=[0.1], **common),
        our_answer(321, "qa", [[13, 14, 15]], [0.3], [[1, 1, 1]],
                   draft_tokens=[6], draft_time=[0.06], verify_time=[0.2], **common),
    ]


def hand_base():
    common = dict(method="vanilla", model_id="vicuna-7b-v1.3-vanilla")
    return [
        our_answer(81, "writing", [[1, 2, 3, 4], [5, 6]], [0.3, 0.2], [[1] * 4, [1] * 2], **common),
        our_answer(161, "translation", [[7, 8, 9, 10, 11, 12]], [0.4], [[1] * 6], **common),
        our_answer(321, "qa", [[13, 14, 15]], [0.2], [[1] * 3], **common),
    ]


def files(tmp_path, method_records, base_records, name="m"):
    return ([read_answer_file(write_answer_file(tmp_path / f"{name}.jsonl", method_records))],
            [read_answer_file(write_answer_file(tmp_path / f"{name}_base.jsonl", base_records))])


def test_hand_computed_figures(tmp_path):
    report = compare_speed(*files(tmp_path, hand_method(), hand_base()))
    assert report.counting.mode == "token_ids"
    overall = report.subtask("overall")
    # 15 tokens on each side; method 0.2 + 0.2 + 0.3 s, baseline 0.5 + 0.4 + 0.2 s.
    assert overall.num_questions == 3
    assert overall.tokens_per_s == pytest.approx(15 / 0.7)
    assert overall.base_tokens_per_s == pytest.approx(15 / 1.1)
    assert overall.speedup == pytest.approx(1.1 / 0.7)
    assert overall.speedup_std is None  # one run
    # Spec-Bench: mean of 30, 30, 10 tok/s over mean of 12, 15, 15 tok/s.
    assert overall.speedup_spec_bench == pytest.approx((70 / 3) / 14)
    assert overall.mean_paired_speedup == pytest.approx((2.5 + 2 + 2 / 3) / 3)
    a = overall.acceptance
    assert a.steps == 8
    assert a.mean_acceptance_length == pytest.approx(15 / 8)
    assert a.draft_acceptance_rate == pytest.approx((15 - 8) / 16)
    assert a.per_position_acceptance_rate == pytest.approx([4 / 8, 3 / 8])
    assert a.acceptance_length_histogram == {1: 4, 2: 1, 3: 3}
    assert a.max_draft_length == 2
    assert a.system_efficiency == pytest.approx((15 / 8) / 3)
    assert a.time_per_proposal_token_s == pytest.approx(0.14 / 16)
    assert a.verify_time_share == pytest.approx(0.4 / 0.7)
    assert a.draft_time_share == pytest.approx(0.14 / 0.7)
    # The rest of the metric set, by hand (docs/evaluation.md, "Acceptance figures"). Steps:
    # q81 [3, 1, 2], q161 [3, 3], q321 [1, 1, 1]; accepted drafts = length - 1.
    # vLLM's pooled mean: 1 + accepted drafts / drafting steps = 1 + (2+0+1+2+2+0+0+0) / 8.
    assert a.mean_acceptance_length == pytest.approx(1 + 7 / 8)
    # SpecForge's per-request mean: mean of 6/3, 6/2, 3/3.
    assert a.mean_acceptance_length_per_request == pytest.approx((2 + 3 + 1) / 3)
    # Joint: >= 1 draft accepted in 4 of 8 steps, >= 2 in 3 of 8; conditional: 4/8, then 3/4.
    assert a.per_position_conditional_acceptance_rate == pytest.approx([4 / 8, 3 / 4])
    # SGLang's per-request histogram: steps accepting exactly 0, 1, 2 drafts.
    assert a.per_request_acceptance_histogram == {"81": [1, 1, 1], "161": [0, 0, 2], "321": [3]}
    assert a.draft_time_per_step_s == pytest.approx(0.14 / 8)
    assert a.verify_time_per_step_s == pytest.approx(0.4 / 8)
    assert a.mean_draft_tokens_per_step == pytest.approx(16 / 8)

    by_name = {s.subtask: s for s in report.subtasks}
    assert list(by_name) == ["mt_bench", "translation", "qa", "overall"]
    assert by_name["mt_bench"].speedup == pytest.approx(2.5)
    assert by_name["translation"].speedup == pytest.approx(2.0)
    assert by_name["qa"].speedup == pytest.approx(2 / 3)
    assert by_name["qa"].acceptance.mean_acceptance_length == pytest.approx(1.0)
    assert by_name["translation"].acceptance.per_position_acceptance_rate == pytest.approx([1.0, 1.0])

    q = {q.question_id: q for q in report.questions}
    assert q["81"].tokens == 6 and q["81"].wall_time == pytest.approx(0.2)
    assert q["81"].speedup == pytest.approx(2.5)
    assert q["81"].mean_accepted_tokens == pytest.approx(2.0)


def spec_bench_reference(method_path, base_path, tokenize, categories=None):
    """Spec-Bench's speed.py arithmetic for one task, written from its description:
    method tokens = new_tokens, baseline tokens = re-tokenised text minus one BOS,
    speedup = ratio of the means of per-question throughputs, MAT pooled over steps."""
    def records(path):
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        return [r for r in rows if categories is None or r["category"] in categories]

    speeds, accepted = [], []
    for r in records(method_path):
        c = r["choices"][0]
        speeds.append(sum(c["new_tokens"]) / sum(c["wall_time"]))
        accepted += c["accept_lengths"]
    base_speeds = []
    for r in records(base_path):
        c = r["choices"][0]
        tokens = sum(len(tokenize(t)) - 1 for t in c["turns"])
        base_speeds.append(tokens / sum(c["wall_time"]))
    return np.mean(speeds) / np.mean(base_speeds), np.mean(accepted)


class WordTokenizer:
    """Stands in for a Llama tokenizer: one id per word, BOS added unless told not to."""

    def __call__(self, text, add_special_tokens=True):
        ids = [3] * len(text.split())
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def test_reproduces_spec_bench_ratio_of_means_and_mat(tmp_path):
    # Spec-Bench-made files with uneven speeds, so ratio of means != ratio of totals.
    method = [spec_bench_answer(q, c, [text_of(range(5 + q % 4))] * (2 if c in ("writing", "coding") else 1),
                                [5 + q % 4] * (2 if c in ("writing", "coding") else 1),
                                [0.05 + 0.01 * (q % 5)] * (2 if c in ("writing", "coding") else 1),
                                accept_lengths=[2, 1, 3, 1][: 1 + q % 4] * 3)
              for q, c in QUESTIONS]
    base = [spec_bench_answer(q, c, r["choices"][0]["turns"], r["choices"][0]["new_tokens"],
                              [0.1 + 0.03 * (q % 3)] * len(r["choices"][0]["turns"]),
                              model_id="vicuna-7b-v1.3-vanilla-float16-temp-0.0")
            for (q, c), r in zip(QUESTIONS, method)]
    m_path = write_answer_file(tmp_path / "m.jsonl", method)
    b_path = write_answer_file(tmp_path / "b.jsonl", base)
    tokenizer = WordTokenizer()
    report = compare_speed([read_answer_file(m_path)], [read_answer_file(b_path)],
                           counting="retokenized", tokenizer=tokenizer)
    # The text holds exactly new_tokens words, so re-tokenising both sides equals Spec-Bench's
    # asymmetric count here, and its ratio-of-means column must come out the same.
    expected, mat = spec_bench_reference(m_path, b_path, lambda t: tokenizer(t)["input_ids"])
    overall = report.subtask("overall")
    assert overall.speedup_spec_bench == pytest.approx(expected)
    assert overall.acceptance.mean_acceptance_length == pytest.approx(mat)
    assert overall.speedup != pytest.approx(expected)  # totals differ from the ratio of means
    mt_expected, mt_mat = spec_bench_reference(m_path, b_path, lambda t: tokenizer(t)["input_ids"],
                                               categories={"writing", "coding"})
    assert report.subtask("mt_bench").speedup_spec_bench == pytest.approx(mt_expected)
    assert report.subtask("mt_bench").acceptance.mean_acceptance_length == pytest.approx(mt_mat)
    # Counting new_tokens on both sides gives the same numbers for these files.
    by_new_tokens = compare_speed([read_answer_file(m_path)], [read_answer_file(b_path)])
    assert by_new_tokens.counting.mode == "new_tokens"
    assert by_new_tokens.subtask("overall").speedup_spec_bench == pytest.approx(expected)


def test_token_ids_on_one_side_only_falls_back_to_new_tokens_on_both(tmp_path):
    base = synthetic_run(method="vanilla", accept=1, draft_length=0, spec_bench=True)
    report = compare_speed(*files(tmp_path, synthetic_run(), base))
    assert report.counting.mode == "new_tokens"
    assert "m_base.jsonl without token_ids" in report.counting.reason
    with pytest.raises(SpeedInputError, match="lack token_ids"):
        compare_speed(*files(tmp_path, synthetic_run(), base), counting="token_ids")
    with pytest.raises(SpeedInputError, match="needs --tokenizer-path"):
        compare_speed(*files(tmp_path, synthetic_run(), base), counting="retokenized")


def test_spec_bench_files_give_no_draft_figures(tmp_path):
    m = synthetic_run(spec_bench=True)
    b = synthetic_run(method="vanilla", accept=1, draft_length=0, spec_bench=True)
    a = compare_speed(*files(tmp_path, m, b)).subtask("overall").acceptance
    assert a.mean_acceptance_length == pytest.approx(3.0)  # 12 tokens per turn in steps of 3
    assert a.draft_acceptance_rate is None and a.system_efficiency is None
    assert a.time_per_proposal_token_s is None and a.verify_time_share is None


def test_mismatched_question_sets_are_named(tmp_path):
    method = synthetic_run()
    base = [r for r in synthetic_run(method="vanilla", accept=1, draft_length=0)
            if r["question_id"] != 161]
    with pytest.raises(SpeedInputError, match=r"(?s)m_base\.jsonl lacks question\(s\) 161 .*--allow-partial"):
        compare_speed(*files(tmp_path, method, base))
    report = compare_speed(*files(tmp_path, method, base), allow_partial=True)
    assert "161" not in report.question_ids and len(report.question_ids) == len(QUESTIONS) - 1
    assert any("161" in note for note in report.left_out)


def test_failed_answers_are_not_compared(tmp_path):
    method = synthetic_run()
    method[2]["error"] = "CUDA out of memory"
    base = synthetic_run(method="vanilla", accept=1, draft_length=0)
    with pytest.raises(SpeedInputError, match=r"failed answer\(s\) to question\(s\) 161"):
        compare_speed(*files(tmp_path, method, base))
    report = compare_speed(*files(tmp_path, method, base), allow_partial=True)
    assert "161" not in report.question_ids


@pytest.mark.parametrize("wall, message", [
    (0.0, r"question 161 turn 1: wall time 0\.0 s"),
    (-0.5, r"question 161 turn 1: wall time -0\.5 s"),
    (float("nan"), r"question 161 turn 1: wall time nan s"),
    (1e-9, r"question 161: 12 tokens in 1e-09 s = .* tokens/s, implausible"),
])
def test_bad_wall_times_are_rejected_with_the_question_id(tmp_path, wall, message):
    method = synthetic_run()
    method[2]["choices"][0]["wall_time"] = [wall]
    base = synthetic_run(method="vanilla", accept=1, draft_length=0)
    with pytest.raises(SpeedInputError, match=message):
        compare_speed(*files(tmp_path, method, base))


def test_several_runs_give_mean_and_std(tmp_path):
    base = read_answer_file(write_answer_file(
        tmp_path / "b.jsonl", synthetic_run(method="vanilla", accept=1, draft_length=0,
                                            seconds_per_step=0.01)))
    runs = [read_answer_file(write_answer_file(
        tmp_path / f"m{i}.jsonl", synthetic_run(seconds_per_step=s)))
        for i, s in enumerate((0.015, 0.03))]
    report = compare_speed(runs, [base])
    overall = report.subtask("overall")
    # Base: 1 token per 0.01 s = 100 tok/s. Runs: 3 tokens per 0.015 / 0.03 s (the last of the
    # 12 tokens per turn come in full steps of 3) = 200 and 100 tok/s.
    assert report.pairs == [(0, 0), (1, 0)]
    assert overall.tokens_per_s == pytest.approx(150)
    assert overall.tokens_per_s_std == pytest.approx(np.std([200, 100], ddof=1))
    assert overall.speedup == pytest.approx(1.5)
    assert overall.speedup_std == pytest.approx(np.std([2.0, 1.0], ddof=1))
    assert overall.acceptance.steps == 2 * 11 * 4  # pooled over both method runs
    with pytest.raises(SpeedInputError, match="2 method runs and 3 baseline runs"):
        compare_speed(runs, [base, base, base])


def test_bootstrap_interval_is_fixed_by_the_seed_and_matches_a_plain_bootstrap():
    rng = np.random.default_rng(5)
    tokens = rng.integers(50, 300, size=(1, 60)).astype(float)
    times = tokens / rng.uniform(20, 60, size=(1, 60))
    base_tokens = tokens.copy()
    base_times = tokens / rng.uniform(15, 25, size=(1, 60))
    ci = bootstrap_speedup_ci(tokens, times, base_tokens, base_times)
    assert ci == bootstrap_speedup_ci(tokens, times, base_tokens, base_times)
    point = (tokens.sum() / times.sum()) / (base_tokens.sum() / base_times.sum())
    assert ci[0] < point < ci[1]
    # A plain loop bootstrap with another generator lands in the same place.
    plain_rng = np.random.default_rng(123)
    draws = []
    for _ in range(4000):
        i = plain_rng.integers(0, 60, 60)
        draws.append((tokens[0, i].sum() / times[0, i].sum()) / (base_tokens[0, i].sum() / base_times[0, i].sum()))
    low, high = np.quantile(draws, [0.025, 0.975])
    assert ci[0] == pytest.approx(low, abs=0.03) and ci[1] == pytest.approx(high, abs=0.03)


def test_equal_per_question_speedups_give_a_point_interval(tmp_path):
    report = compare_speed(*files(tmp_path, synthetic_run(seconds_per_step=0.03),
                                  synthetic_run(method="vanilla", accept=1, draft_length=0)))
    overall = report.subtask("overall")
    assert overall.speedup_ci_low == pytest.approx(overall.speedup)
    assert overall.speedup_ci_high == pytest.approx(overall.speedup)


# ---- the command line -------------------------------------------------------------------

def write_pair(tmp_path):
    m = write_answer_file(tmp_path / "pld.jsonl", hand_method())
    b = write_answer_file(tmp_path / "vanilla.jsonl", hand_base())
    return m, b


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    m, b = write_pair(tmp_path)
    out = tmp_path / "out.json"
    assert speed.main(["--file-path", str(m), "--base-path", str(b), "--json", str(out),
                       "--no-db"]) == 0
    text = capsys.readouterr().out
    assert "Multi-turn Conversation" in text and "Overall" in text
    assert "1.571x" in text and "1.667x" in text  # speedup and Spec-Bench's column
    assert "Token counting: every file carries token_ids" in text
    data = json.loads(out.read_text())
    overall = data["subtasks"][-1]
    assert overall["subtask"] == "overall"
    assert overall["speedup"] == pytest.approx(1.1 / 0.7)
    assert overall["acceptance_length_histogram"] == {"1": 4, "2": 1, "3": 3}
    assert overall["speedup_std"] is None
    assert len(data["questions"]) == 3


def test_cli_bad_input_exits_2_with_a_message(tmp_path, capsys):
    m, b = write_pair(tmp_path)
    records = hand_method()
    records[0]["choices"][0]["wall_time"] = [0.0, 0.1]
    bad = write_answer_file(tmp_path / "bad.jsonl", records)
    assert speed.main(["--file-path", str(bad), "--base-path", str(b), "--no-db"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "question 81 turn 1: wall time 0.0 s" in err
    assert "Traceback" not in err
    assert speed.main(["--file-path", str(tmp_path / "none*.jsonl"), "--base-path", str(b),
                       "--no-db"]) == 2
    assert "matches no file" in capsys.readouterr().err


def test_cli_takes_globs_for_several_runs(tmp_path, capsys):
    for i, s in enumerate((0.015, 0.03)):
        write_answer_file(tmp_path / f"run{i}" / "pld.jsonl", synthetic_run(seconds_per_step=s))
    b = write_answer_file(tmp_path / "vanilla.jsonl",
                          synthetic_run(method="vanilla", accept=1, draft_length=0, seconds_per_step=0.01))
    assert speed.main(["--file-path", str(tmp_path / "run*" / "pld.jsonl"), "--base-path", str(b),
                       "--no-db"]) == 0
    text = capsys.readouterr().out
    assert "2 method/baseline pairs" in text and "1.500x ± 0.707" in text


@pytest.mark.parametrize("how", [["evaluation/speed.py"], ["-m", "evaluation.speed"]])
def test_runs_as_script_and_as_module(tmp_path, how):
    m, b = write_pair(tmp_path)
    result = subprocess.run([sys.executable, *how, "--file-path", str(m), "--base-path", str(b),
                             "--db", str(tmp_path / "r.db")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Overall" in result.stdout and "Stored in sqlite" in result.stdout


def test_help_explains_every_option():
    text = speed.build_parser().format_help()
    for option in ("--file-path", "--base-path", "--count", "--tokenizer-path", "--allow-partial",
                   "--bootstrap", "--seed", "--max-tokens-per-s", "--json", "--db", "--no-db",
                   "--mean-report"):
        assert option in text


def save_word_tokenizer(path):
    """A local one-word-per-token tokenizer that adds a BOS, like Llama's, saved to `path`."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(100)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)])
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    ).save_pretrained(path)
    return path


def test_retokenized_counting_loads_a_local_tokenizer(tmp_path, capsys):
    save_word_tokenizer(tmp_path / "tok")
    method, base = hand_method(), hand_base()
    for r in method + base:  # text with one word fewer than new_tokens (as if EOS were dropped)
        r["choices"][0]["turns"] = [text_of(ids[:-1]) for ids in r["choices"][0]["token_ids"]]
    m = write_answer_file(tmp_path / "m.jsonl", method)
    b = write_answer_file(tmp_path / "b.jsonl", base)
    out = tmp_path / "o.json"
    assert speed.main(["--file-path", str(m), "--base-path", str(b), "--count", "retokenized",
                       "--tokenizer-path", str(tmp_path / "tok"), "--json", str(out), "--no-db"]) == 0
    data = json.loads(out.read_text())
    assert data["token_counting"] == "retokenized"
    # 4 + 5 + 2 words against 0.7 s and 1.1 s: the BOS is not counted.
    overall = data["subtasks"][-1]
    assert overall["tokens_per_s"] == pytest.approx(11 / 0.7)
    assert overall["base_tokens_per_s"] == pytest.approx(11 / 1.1)
    assert speed.main(["--file-path", str(m), "--base-path", str(b), "--count", "retokenized",
                       "--tokenizer-path", str(tmp_path / "missing"), "--no-db"]) == 2
    assert "cannot load the tokenizer" in capsys.readouterr().err


# ---- the settings check: what cannot be compared is refused, or stored labelled -------------

def test_a_method_file_given_as_the_baseline_is_refused(tmp_path, capsys):
    m, b = write_pair(tmp_path)
    out = tmp_path / "o.json"
    # Today's trap: the vanilla file as the method, the pld file as the baseline.
    assert speed.main(["--file-path", str(b), "--base-path", str(m), "--no-db"]) == 2
    err = capsys.readouterr().err
    assert f"{m} is not a baseline run: its method is 'pld', a baseline's is 'vanilla'" in err
    assert "--allow-mismatch baseline_method" in err and "Traceback" not in err
    assert speed.main(["--file-path", str(b), "--base-path", str(m), "--no-db", "--json", str(out),
                       "--allow-mismatch", "baseline_method"]) == 0
    assert "MISMATCH (--allow-mismatch baseline_method)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["settings_match"] is False
    assert [(x["setting"], x["method_value"], x["base_value"]) for x in data["mismatches"]] == [
        ("baseline_method", "vanilla", "pld")]


def test_the_same_file_on_both_sides_is_refused(tmp_path, capsys):
    m, b = write_pair(tmp_path)
    assert speed.main(["--file-path", str(b), "--base-path", str(b), "--no-db"]) == 2
    assert f"{b} is given as both the method and the baseline" in capsys.readouterr().err
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(b.read_bytes())
    assert speed.main(["--file-path", str(copy), "--base-path", str(b), "--no-db",
                       "--allow-mismatch", "baseline_method"]) == 2
    assert "same sha256" in capsys.readouterr().err


def _set_environment(key, value):
    def change(record):
        record["environment"][key] = value
    return change


def _set_field(key, value):
    def change(record):
        record[key] = value
    return change


def _other_model(record):
    record["model_id"] = "llama-2-7b-chat-vanilla"
    record["environment"]["model_path"] = "meta-llama/Llama-2-7b-chat-hf"


@pytest.mark.parametrize("setting, change, method_value, base_value", [
    ("device", _set_environment("device", "cpu"), "cuda", "cpu"),
    ("device_name", _set_environment("device_name", "NVIDIA A100"), "NVIDIA H100 80GB HBM3", "NVIDIA A100"),
    ("dtype", _set_environment("dtype", "bfloat16"), "float16", "bfloat16"),
    ("temperature", _set_field("temperature", 0.7), 0.0, 0.7),
    ("top_p", _set_field("top_p", 0.9), 1.0, 0.9),
    ("top_k", _set_field("top_k", 50), 0, 50),
    ("max_new_tokens", _set_field("max_new_tokens", 256), 1024, 256),
    ("bench", _set_field("bench_name", "mt_bench"), "spec_bench", "mt_bench"),
    ("model", _other_model, "vicuna-7b-v1.3", "llama-2-7b-chat"),
])
def test_each_differing_setting_is_refused_naming_it_and_both_values(
        tmp_path, setting, change, method_value, base_value):
    base = hand_base()
    for record in base:
        change(record)
    with pytest.raises(SpeedInputError) as refused:
        compare_speed(*files(tmp_path, hand_method(), base))
    message = str(refused.value)
    assert f"{setting} differs: {method_value!r} in the method file" in message
    assert f"{base_value!r} in the baseline file" in message
    assert f"--allow-mismatch {setting}" in message
    report = compare_speed(*files(tmp_path, hand_method(), base),
                           allow_mismatch={setting, "model_path"})
    assert not report.compatibility.matched
    assert (setting, method_value, base_value) in [
        (x.setting, x.method_value, x.base_value) for x in report.compatibility.mismatches]


def test_backend_and_prompt_format_are_compared_only_when_both_files_record_them(tmp_path):
    method, base = hand_method(), hand_base()
    for record in method:
        record["environment"]["backend"] = "eager"
        record["conv_template"] = "vicuna"
    report = compare_speed(*files(tmp_path, method, base))  # the baseline records neither
    assert report.compatibility.matched
    assert {"backend", "prompt_format"} <= set(report.compatibility.unchecked)
    for record in base:
        record["environment"]["backend"] = "compiled"
        record["conv_template"] = "chat"
    with pytest.raises(SpeedInputError, match=r"(?s)backend differs: 'eager'.*'compiled'.*"
                                              r"prompt_format differs: 'vicuna'.*'chat'"):
        compare_speed(*files(tmp_path, method, base))
    report = compare_speed(*files(tmp_path, method, base),
                           allow_mismatch={"backend", "prompt_format"})
    assert [x.setting for x in report.compatibility.mismatches] == ["backend", "prompt_format"]
    assert "backend" not in report.compatibility.unchecked


def test_answers_of_different_native_code_are_not_compared(tmp_path):
    """Two lean runs whose native code differs (another version, AVX2 against AVX-512) time
    different arithmetic: speed.py refuses the pair unless told to allow it."""
    method, base = hand_method(), hand_base()
    for record in method:
        record["environment"]["native_code"] = "native layer: skinny_gemm v2 (AVX-512), lean_ops v1"
    for record in base:
        record["environment"]["native_code"] = "native layer: skinny_gemm v1 (AVX2), lean_ops v1"
    with pytest.raises(SpeedInputError, match=r"native_code differs: 'native layer: skinny_gemm v2"):
        compare_speed(*files(tmp_path, method, base))
    report = compare_speed(*files(tmp_path, method, base), allow_mismatch={"native_code"})
    assert [x.setting for x in report.compatibility.mismatches] == ["native_code"]


def test_allow_mismatch_takes_repeated_and_comma_separated_names(tmp_path, capsys):
    base = hand_base()
    for record in base:
        record["environment"]["dtype"] = "float32"
        record["top_k"] = 50
        record["max_new_tokens"] = 64
    m = write_answer_file(tmp_path / "m.jsonl", hand_method())
    b = write_answer_file(tmp_path / "b.jsonl", base)
    args = ["--file-path", str(m), "--base-path", str(b), "--no-db"]
    assert speed.main([*args, "--allow-mismatch", "dtype,top_k"]) == 2
    assert "max_new_tokens differs" in capsys.readouterr().err
    assert speed.main([*args, "--allow-mismatch", "dtype,top_k", "--allow-mismatch",
                       "max_new_tokens"]) == 0
    out = capsys.readouterr().out
    assert out.count("MISMATCH") == 3 and "never ranks them" in out
    with pytest.raises(SystemExit):
        speed.main([*args, "--allow-mismatch", "colour"])
    assert "unknown setting(s) colour" in capsys.readouterr().err


def test_spec_bench_files_are_accepted_with_unrecorded_settings_named(tmp_path, capsys):
    m = write_answer_file(tmp_path / "data" / "spec_bench" / "model_answer" / "vicuna-7b-v1.3-pld-float16.jsonl",
                          synthetic_run(spec_bench=True))
    b = write_answer_file(tmp_path / "data" / "spec_bench" / "model_answer" / "vicuna-7b-v1.3-vanilla-float16.jsonl",
                          synthetic_run(method="vanilla", accept=1, draft_length=0, spec_bench=True))
    assert speed.main(["--file-path", str(m), "--base-path", str(b), "--no-db"]) == 0
    out = capsys.readouterr().out
    # What Spec-Bench's model ids and folders say is checked; the rest is named as unchecked.
    assert "Settings that agree: baseline_method, model, dtype, bench" in out
    assert ("Settings not checked (not recorded in both files): model_path, device, device_name, "
            "temperature, top_p, top_k, max_new_tokens, backend, native_code, prompt_format") in out
    # A Spec-Bench file of another model is still caught by its model id.
    other = write_answer_file(tmp_path / "llama-2-7b-vanilla-float16.jsonl", synthetic_run(
        method="vanilla", accept=1, draft_length=0, spec_bench=True, model_id="llama-2-7b-vanilla-float16"))
    assert speed.main(["--file-path", str(m), "--base-path", str(other), "--no-db"]) == 2
    assert "model differs: 'vicuna-7b-v1.3'" in capsys.readouterr().err


# ---- what Spec-Bench's own speed.py would print ----------------------------------------------

def base_with_one_word_fewer():
    """The baseline's text one word short of its tokens per turn (as if the EOS were dropped),
    so Spec-Bench's re-tokenised count differs from its new_tokens."""
    base = hand_base()
    for r in base:
        r["choices"][0]["turns"] = [text_of(ids[:-1]) for ids in r["choices"][0]["token_ids"]]
    return base


def test_spec_bench_figure_uses_its_asymmetric_counting(tmp_path):
    from evaluation.compare.spec_bench_speed import spec_bench_figures

    method_files, base_files = files(tmp_path, hand_method(), base_with_one_word_fewer())
    figures = {t.task: t for t in spec_bench_figures(method_files, base_files, [(0, 0)],
                                                     WordTokenizer())}
    assert list(figures) == ["mt_bench", "translation", "qa", "overall"]
    overall = figures["overall"]
    # Method: new_tokens / time per question = 30, 30, 10 tok/s. Baseline: words + BOS - 1 per
    # turn = 3 + 1, 5, 2 tokens in 0.5, 0.4, 0.2 s = 8, 12.5, 10 tok/s.
    assert overall.tokens_per_s == pytest.approx(70 / 3)
    assert overall.base_tokens_per_s == pytest.approx(30.5 / 3)
    assert overall.speedup == pytest.approx(70 / 30.5)
    assert overall.mean_accepted_tokens == pytest.approx(15 / 8)
    assert figures["mt_bench"].speedup == pytest.approx(30 / 8)
    # The reference arithmetic of Spec-Bench (above) agrees, task by task.
    expected, mat = spec_bench_reference(method_files[0].path, base_files[0].path,
                                         lambda t: WordTokenizer()(t)["input_ids"])
    assert overall.speedup == pytest.approx(expected) and overall.mean_accepted_tokens == mat
    # Our own figures count both sides alike and do not carry the artefact.
    ours = compare_speed(method_files, base_files).subtask("overall")
    assert ours.speedup_spec_bench == pytest.approx((70 / 3) / 14)


def test_spec_bench_figure_is_not_given_where_its_division_would_fail(tmp_path):
    from evaluation.compare.spec_bench_speed import SpecBenchFigureUnavailable, spec_bench_figures

    base = hand_base()
    base[1]["choices"][0]["wall_time"] = [0.0]
    method_files, base_files = files(tmp_path, hand_method(), base)
    with pytest.raises(SpecBenchFigureUnavailable, match="question 161 has a total wall time of 0"):
        spec_bench_figures(method_files, base_files, [(0, 0)], WordTokenizer())


def test_cli_prints_and_stores_spec_bench_figure_with_a_tokenizer(tmp_path, capsys):
    tokenizer = save_word_tokenizer(tmp_path / "tok")
    m = write_answer_file(tmp_path / "pld.jsonl", hand_method())
    b = write_answer_file(tmp_path / "vanilla.jsonl", base_with_one_word_fewer())
    db, out = tmp_path / "r.db", tmp_path / "o.json"
    assert speed.main(["--file-path", str(m), "--base-path", str(b), "--db", str(db),
                       "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert ("Spec-Bench's speed.py would report: not computed, it re-tokenises the baseline's "
            "answer text, so it needs the target model's tokenizer: pass --tokenizer-path") in text
    assert speed.main(["--file-path", str(m), "--base-path", str(b), "--db", str(db),
                       "--json", str(out), "--tokenizer-path", str(tokenizer)]) == 0
    text = capsys.readouterr().out
    assert "Spec-Bench's speed.py would report (its counting:" in text
    overall_line = [line for line in text.splitlines() if line.startswith("Overall")][-1]
    assert f"{70 / 30.5:.3f}x" in overall_line and "1.88" in overall_line
    data = json.loads(out.read_text())
    assert data["spec_bench_reported"][-1]["speedup"] == pytest.approx(70 / 30.5)
    assert data["token_counting"] == "token_ids"  # our own counting is unchanged by the tokenizer
    from sqlalchemy import select

    from leaderboard.db import open_database
    from leaderboard.models import SubtaskResult
    with open_database(str(db))() as session:
        extra = session.scalar(select(SubtaskResult.extra).where(SubtaskResult.subtask == "overall"))
    assert extra["spec_bench_reported"]["speedup"] == pytest.approx(70 / 30.5)
    # A tokenizer that cannot be loaded only costs Spec-Bench's figure, with the reason.
    assert speed.main(["--file-path", str(m), "--base-path", str(b), "--no-db",
                       "--tokenizer-path", str(tmp_path / "missing")]) == 0
    assert "would report: not computed, cannot load the tokenizer" in capsys.readouterr().out


# ---- several files on one side must be runs of one method configuration ------------------

@pytest.mark.parametrize("other, named", [
    (dict(method="eagle2", model_id="vicuna-7b-v1.3-eagle2-float16"), "method 'pld' vs 'eagle2'"),
    (dict(draft_length=6), 'method parameters {"max_draft_length": 4} vs {"max_draft_length": 6}'),
])
def test_method_files_of_different_configurations_are_refused_naming_both(
        tmp_path, capsys, other, named):
    first = write_answer_file(tmp_path / "a.jsonl", synthetic_run())
    second = write_answer_file(tmp_path / "b.jsonl", synthetic_run(**other))
    base = write_answer_file(tmp_path / "base.jsonl",
                             synthetic_run(method="vanilla", accept=1, draft_length=0))
    assert speed.main(["--file-path", str(tmp_path / "[ab].jsonl"), "--base-path", str(base),
                       "--no-db"]) == 2
    err = capsys.readouterr().err
    assert named in err and str(first) in err and str(second) in err and "Traceback" not in err
    # Baseline files are averaged the same way, so the same rule holds there.
    with pytest.raises(SpeedInputError, match="the baseline files are not runs of one"):
        compare_speed([read_answer_file(first)] * 2, [read_answer_file(base), read_answer_file(second)])


def test_conditional_acceptance_and_pooled_versus_per_request(tmp_path):
    from evaluation.compare.metrics import acceptance_figures, conditional_acceptance
    # No step reached position 2, so position 3 has no condition to be measured under.
    assert conditional_acceptance([0.5, 0.0, 0.0]) == [0.5, 0.0, None]
    # The two means rank these methods in opposite orders: pooled, a's long request of
    # one-token steps weighs most; per request, its one 4-token step counts as much.
    a = [our_answer(1, "writing", [[1] * 10], [1.0], [[1] * 10]),
         our_answer(2, "writing", [[1] * 4], [1.0], [[4]])]
    b = [our_answer(1, "writing", [[1] * 10], [1.0], [[2] * 5]),
         our_answer(2, "writing", [[1] * 4], [1.0], [[2] * 2])]
    fa, fb = (acceptance_figures(read_answer_file(write_answer_file(tmp_path / f"{n}.jsonl", r))
                                 .answers.values()) for n, r in (("a", a), ("b", b)))
    assert fa.mean_acceptance_length == pytest.approx(14 / 11)
    assert fb.mean_acceptance_length == pytest.approx(2.0)
    assert fa.mean_acceptance_length_per_request == pytest.approx(2.5)
    assert fb.mean_acceptance_length_per_request == pytest.approx(2.0)


CURVE = {"tokens": [1, 2, 4, 8], "seconds": [0.01, 0.011, 0.012, 0.02],
         "relative": [1.0, 1.1, 1.2, 2.0], "context_tokens": 128, "repeats": 3, "measured_in_s": 1.0}


def test_predicted_speedup_from_the_cost_curve_by_hand(tmp_path, capsys):
    from evaluation.compare.cost_model import relative_cost
    method = synthetic_run(seconds_per_step=0.03)
    for record in method:
        record["verify_cost"] = CURVE
    base = synthetic_run(method="vanilla", accept=1, draft_length=0)
    report = compare_speed(*files(tmp_path, method, base))
    assert report.verify_cost == CURVE
    p = report.subtask("overall").prediction
    # Per step: 4 draft tokens + the root = a 5-token forward, c(5) = 1.2 + 0.8 / 4 = 1.4; draft
    # 0.25 * 0.03 s; the baseline decodes one token per 0.02 s less its 10% prefill = 0.018 s.
    assert p.forward_tokens_per_step == pytest.approx(5)
    assert p.relative_verify_cost == pytest.approx(1.4)
    assert p.baseline_step_s == pytest.approx(0.018)
    assert p.predicted_speedup == pytest.approx(3 / (1.4 + 0.0075 / 0.018))
    assert p.measured_speedup == pytest.approx(2.0)
    assert p.gap == pytest.approx(2.0 / p.predicted_speedup - 1) and p.flagged  # +21%
    # Read by straight lines, and beyond the last size along the last segment.
    assert relative_cost(CURVE, 3) == pytest.approx(1.15)
    assert relative_cost(CURVE, 12) == pytest.approx(2.8)
    text = speed.format_report(report)
    assert "1: 1.00x  2: 1.10x  4: 1.20x  8: 2.00x" in text and "MORE THAN 10% OFF" in text
    data = report.as_dict()
    assert data["verify_cost"] == CURVE
    assert data["subtasks"][-1]["prediction"]["flagged"] is True


def test_no_curve_no_prediction(tmp_path):
    report = compare_speed(*files(tmp_path, synthetic_run(), synthetic_run(method="vanilla", accept=1,
                                                                            draft_length=0)))
    p = report.subtask("overall").prediction
    assert p.predicted_speedup is None and not p.flagged
    assert p.unavailable == "the method run measured no cost curve"
    assert "Predicted speedup: not computed" in speed.format_report(report)
