"""The runner refuses what would waste work or mix runs, before the expensive part starts.

- a resume whose settings differ from the answer file's lines is refused, naming the field;
- a drafter option is used as given or refused (0 never silently becomes the default);
- unwritable answer paths, missing model / drafter / datastore paths fail before the model loads.
"""

from __future__ import annotations

import argparse
import json
import re

import pytest

import evaluation.inference as inference
from evaluation.run import answering
from evaluation.run.answer_file import AnswerFileError, check_same_run
from evaluation.inference import main
from methods.core.drafter import resolve_options
from methods.core.model_loading import ModelLoadError, check_model_source, looks_like_local_path
from methods.drafters.lookahead import LookaheadDrafter
from methods.drafters.pld import PromptLookupDrafter
from methods.drafters.recycling import TokenRecyclingDrafter
from methods.drafters.rest import RestDrafter
from methods.drafters.sps import DraftModelDrafter
from tests.test_inference import questions, read, run, tiny_folder  # noqa: F401 (fixtures)
from tests.tiny_model import make_tiny_llama


@pytest.fixture()
def no_model_load(monkeypatch):
    """Fails the test if the runner gets as far as loading the target model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the cheap checks refused the run")

    monkeypatch.setattr(answering, "load_model", refuse)


# ------------------------------------------------------------------ resuming with other settings
def test_resume_with_another_cap_is_refused_before_the_model_loads(tiny_folder, questions, tmp_path,
                                                                   capsys, monkeypatch):
    answer = tmp_path / "a.jsonl"
    assert run(tiny_folder, questions, answer, "vanilla", "--question-end", "1",
               "--max-new-tokens", "8") == 0
    before = answer.read_text()
    monkeypatch.setattr(answering, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert run(tiny_folder, questions, answer, "vanilla", "--max-new-tokens", "4") == 2
    err = capsys.readouterr().err
    assert "error:" in err and "max_new_tokens is 8 there" in err and "4 now" in err
    assert "--answer-file" in err and "remove" in err
    assert answer.read_text() == before  # nothing was added to the other run's file


@pytest.mark.parametrize("first, second, field", [
    (["--seed", "1"], ["--seed", "2"], "seed"),
    (["--temperature", "0.5"], ["--temperature", "0.7"], "temperature"),
    (["--top-k", "5"], ["--top-k", "6"], "top_k"),
    (["--dtype", "float64"], ["--dtype", "float32"], "environment.dtype"),
])
def test_resume_with_other_sampling_or_dtype_is_refused(tiny_folder, questions, tmp_path, capsys,
                                                        first, second, field):
    answer = tmp_path / "a.jsonl"
    assert run(tiny_folder, questions, answer, "vanilla", "--question-end", "1", *first) == 0
    assert run(tiny_folder, questions, answer, "vanilla", *second) == 2
    assert f"{field} is" in capsys.readouterr().err
    assert len(read(answer)) == 1


def test_resume_with_other_method_params_is_refused(tiny_folder, questions, tmp_path, capsys):
    answer = tmp_path / "a.jsonl"
    assert run(tiny_folder, questions, answer, "pld", "--question-end", "1", "--pld-num-pred", "3") == 0
    assert run(tiny_folder, questions, answer, "pld", "--pld-num-pred", "4") == 2
    err = capsys.readouterr().err
    assert "method_params is" in err and "'num_pred': 3" in err and "'num_pred': 4" in err
    assert len(read(answer)) == 1


def test_resume_of_another_method_into_the_same_file_is_refused(tiny_folder, questions, tmp_path, capsys):
    answer = tmp_path / "a.jsonl"
    assert run(tiny_folder, questions, answer, "vanilla", "--question-end", "1") == 0
    assert run(tiny_folder, questions, answer, "pld") == 2
    assert "method is 'vanilla' there" in capsys.readouterr().err


def test_lines_from_an_older_version_without_a_field_are_not_assumed_to_match(
        tiny_folder, questions, tmp_path, capsys):
    answer = tmp_path / "a.jsonl"
    assert run(tiny_folder, questions, answer, "vanilla", "--question-end", "1") == 0
    (line,) = read(answer)
    del line["conv_template"]
    answer.write_text(json.dumps(line) + "\n")
    assert run(tiny_folder, questions, answer, "vanilla") == 2
    err = capsys.readouterr().err
    assert "do not record conv_template" in err and "older version" in err


def test_resume_with_the_same_settings_goes_on(tiny_folder, questions, tmp_path):
    answer = tmp_path / "a.jsonl"
    assert run(tiny_folder, questions, answer, "pld", "--question-end", "1", "--pld-num-pred", "3") == 0
    assert run(tiny_folder, questions, answer, "pld", "--pld-num-pred", "3") == 0
    records = read(answer)
    assert [r["question_id"] for r in records] == [1, 2, 3]
    assert {r["conv_template"] for r in records} == {"chat"}


def test_check_same_run_compares_only_the_fields_known_so_far(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"question_id": 1, "method": "pld", "max_new_tokens": 8,
                                "environment": {"dtype": "float32"}}) + "\n")
    check_same_run(path, {"method": "pld", "environment": {"dtype": "float32"}})
    with pytest.raises(AnswerFileError, match="environment.dtype is 'float32' there"):
        check_same_run(path, {"environment": {"dtype": "float16"}})
    check_same_run(tmp_path / "new.jsonl", {"max_new_tokens": 4})  # no file yet: nothing to mix


# ------------------------------------------------------------------ drafter options: used or refused
def test_resolve_options_takes_the_default_only_for_an_option_not_given():
    model = make_tiny_llama()
    args = argparse.Namespace(x_a=None, x_b=0, x_c=7)
    cpu, gpu = {"a": 1, "b": 2, "c": 3}, {"a": 10, "b": 20, "c": 30}
    assert resolve_options(args, "x", model, cpu, gpu) == {"a": 1, "b": 0, "c": 7}
    with pytest.raises(ValueError, match="--x-b 0: must be at least 1"):
        resolve_options(args, "x", model, cpu, gpu, minimum={"b": 1})


OPTION_CASES = [
    (PromptLookupDrafter, "pld_num_pred", 0, "--pld-num-pred 0"),
    (PromptLookupDrafter, "pld_max_ngram", 0, "--pld-max-ngram 0"),
    (PromptLookupDrafter, "pld_min_ngram", 0, "--pld-min-ngram 0"),
    (DraftModelDrafter, "sps_gamma", 0, "--sps-gamma 0"),
    (DraftModelDrafter, "sps_gamma", -2, "--sps-gamma -2"),
    (LookaheadDrafter, "lookahead_level", 2, "--lookahead-level 2"),
    (LookaheadDrafter, "lookahead_window", 0, "--lookahead-window 0"),
    (LookaheadDrafter, "lookahead_guess", -1, "--lookahead-guess -1"),
    (RestDrafter, "rest_num_draft", 0, "--rest-num-draft 0"),
    (RestDrafter, "rest_long", 0, "--rest-long 0"),
    (RestDrafter, "rest_k", 0, "--rest-k 0"),
    (RestDrafter, "rest_max_token_span", 1, "--rest-max-token-span 1"),
    (TokenRecyclingDrafter, "recycling_topk", 0, "--recycling-topk 0"),
    (TokenRecyclingDrafter, "recycling_tree_nodes", 0, "--recycling-tree-nodes 0"),
    (TokenRecyclingDrafter, "recycling_tree_depth", 0, "--recycling-tree-depth 0"),
]


@pytest.mark.parametrize("cls, dest, value, message", OPTION_CASES)
def test_an_invalid_drafter_option_is_refused_by_name_not_replaced(cls, dest, value, message):
    args = inference.build_parser().parse_args(["--method", cls.name, "--drafter-path", "self:1"])
    setattr(args, dest, value)
    with pytest.raises(ValueError, match=message):
        cls.check_args(args)
    with pytest.raises(ValueError, match=message):
        cls.from_args(args, make_tiny_llama(layers=2), None)


@pytest.mark.parametrize("option", ["--pld-num-pred", "--pld-max-ngram"])
def test_pld_option_zero_stops_the_runner_before_the_model_loads(tiny_folder, questions, tmp_path, capsys,
                                                                 no_model_load, option):
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "pld", option, "0") == 2
    assert f"error: {option} 0: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "a.jsonl").exists()


def test_sps_gamma_zero_stops_the_runner(tiny_folder, questions, tmp_path, capsys, no_model_load):
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "sps", "--drafter-path", "self:1",
               "--sps-gamma", "0") == 2
    assert "error: --sps-gamma 0: must be at least 1" in capsys.readouterr().err


def test_a_given_option_is_used_even_where_the_default_differs():
    model = make_tiny_llama()  # on the CPU, PLD's default min n-gram is 2, lookahead's guess 2
    parser = inference.build_parser()
    pld = PromptLookupDrafter.from_args(parser.parse_args(["--method", "pld", "--pld-min-ngram", "1"]),
                                        model, None)
    assert pld.min_ngram == 1
    lookahead = LookaheadDrafter.from_args(
        parser.parse_args(["--method", "lookahead", "--lookahead-guess", "0"]), model, None)
    assert lookahead.guess == 0


# ------------------------------------------------------------------ cheap checks before the model loads
def test_unwritable_answer_dir_fails_before_the_model_loads(tiny_folder, questions, tmp_path, capsys,
                                                           no_model_load):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(["--method", "vanilla", "--model-path", str(tiny_folder), "--question-file", str(questions),
                 "--answer-dir", str(blocker / "answers"), "--no-progress"])
    assert code == 2
    assert "error: cannot write answers to" in capsys.readouterr().err


def test_negative_warmup_is_refused_not_taken_as_none(tiny_folder, questions, tmp_path, capsys, no_model_load):
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "vanilla", "--warmup", "-1") == 2
    assert "error: --warmup -1: must be at least 0" in capsys.readouterr().err


def test_answer_file_that_is_a_folder_is_refused(tiny_folder, questions, tmp_path, capsys, no_model_load):
    assert run(tiny_folder, questions, tmp_path, "vanilla") == 2
    assert "is a folder" in capsys.readouterr().err


def test_writable_check_leaves_no_file_behind(tiny_folder, questions, tmp_path, monkeypatch):
    answer = tmp_path / "answers" / "a.jsonl"

    def stop(*args, **kwargs):
        raise ModelLoadError("stop here")

    monkeypatch.setattr(answering, "load_model", stop)
    assert run(tiny_folder, questions, answer, "vanilla") == 2
    assert list((tmp_path / "answers").iterdir()) == []


@pytest.mark.parametrize("model_path", ["ABSOLUTE", "./no-such-model", "../no/such/model", "no/such/model"])
def test_missing_model_path_says_it_does_not_exist(questions, tmp_path, capsys, monkeypatch, model_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the hub's own error would hide ours
    if model_path == "ABSOLUTE":
        model_path = str(tmp_path / "nope")
    monkeypatch.chdir(tmp_path)
    code = main(["--method", "vanilla", "--model-path", model_path, "--question-file", str(questions),
                 "--answer-file", str(tmp_path / "a.jsonl"), "--no-progress"])
    assert code == 2
    assert f"error: --model-path {model_path}: no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--drafter-path", "ABSOLUTE"], "--drafter-path {tmp}/no-draft: no such file or folder"),
    (["--drafter-path", "./no-draft"], "--drafter-path ./no-draft: no such file or folder"),
    (["--drafter-path", "self:0"], "N must be at least 1"),
    (["--drafter-path", "self:x"], "expected self:N"),
])
def test_bad_drafter_path_fails_before_the_model_loads(tiny_folder, questions, tmp_path, capsys,
                                                       no_model_load, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    extra = [str(tmp_path / "no-draft") if e == "ABSOLUTE" else e for e in extra]
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "sps", *extra) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_missing_rest_datastore_fails_before_the_model_loads(tiny_folder, questions, tmp_path, capsys,
                                                             no_model_load):
    missing = tmp_path / "store.bin"
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "rest", "--rest-datastore", str(missing)) == 2
    assert f"--rest-datastore {missing}: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("text, local", [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", False), ("gpt2", False), ("/models/x", True),
    ("./x", True), ("../x", True), ("~/x", True), ("a/b/c", True), ("x.gguf", True),
])
def test_only_a_path_shaped_argument_is_taken_as_local(text, local):
    assert looks_like_local_path(text) is local


def test_a_hub_id_passes_the_cheap_check():
    check_model_source("HuggingFaceTB/SmolLM2-135M-Instruct")  # the hub decides, not us


@pytest.mark.parametrize("method, flag", [("medusa", "--medusa-path"), ("hydra", "--hydra-path"),
                                          ("eagle", "--eagle-path"), ("eagle2", "--eagle-path"),
                                          ("eagle3", "--eagle3-path")])
def test_a_trained_method_on_another_model_without_weights_fails_before_the_model_loads(
        tiny_folder, questions, tmp_path, capsys, no_model_load, method, flag):
    """Trained weights ship only for the embedded model: elsewhere the run is refused at once,
    naming the option that gives them, instead of after the model has loaded."""
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", method) == 2
    err = capsys.readouterr().err
    assert f"--method {method} on {tiny_folder}" in err and flag in err
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", method, flag, str(tmp_path / "none")) == 2
    assert f"{flag} {tmp_path / 'none'}: no such folder" in capsys.readouterr().err


# ------------------------------------------------------------------ float options: finite and in range
@pytest.mark.parametrize("extra, message", [
    (["--temperature", "nan"], "--temperature nan: must be a finite number >= 0"),
    (["--temperature", "inf"], "--temperature inf: must be a finite number >= 0"),
    (["--temperature", "-0.5"], "--temperature -0.5: must be a finite number >= 0"),
    (["--top-p", "nan"], "--top-p nan: must be a number in (0, 1]"),
    (["--top-k", "-1"], "--top-k -1: must be at least 0"),
])
def test_a_nan_or_out_of_range_sampling_option_is_refused_before_the_model_loads(
        tiny_folder, questions, tmp_path, capsys, no_model_load, extra, message):
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "vanilla", *extra) == 2
    assert f"error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["medusa", "hydra"])
@pytest.mark.parametrize("option, value, message", [
    ("posterior-threshold", "nan", "must be a probability in [0, 1]"),
    ("posterior-threshold", "-0.1", "must be a probability in [0, 1]"),
    ("posterior-threshold", "1.5", "must be a probability in [0, 1]"),
    ("posterior-alpha", "nan", "must be a finite number >= 0"),
    ("posterior-alpha", "-1.0", "must be a finite number >= 0"),
    ("posterior-alpha", "inf", "must be a finite number >= 0"),
])
def test_a_nan_or_negative_typical_threshold_is_refused_naming_it(method, option, value, message):
    flag = f"--{method}-{option}"
    args = inference.build_parser().parse_args(["--method", method, flag, value])
    with pytest.raises(ValueError) as caught:
        answering.drafter_class(method).check_args(args)
    assert str(caught.value) == f"{flag} {value}: {message}"


# ------------------------------------------------------------------ a Ray address where nothing answers
def test_a_ray_address_where_nothing_answers_is_an_error_naming_it_within_seconds(
        tiny_folder, questions, tmp_path, capsys, monkeypatch, no_model_load):
    """Ray itself retries such an address for many minutes without a word: the runner asks first."""
    import socket
    import time

    ray = pytest.importorskip("ray")

    def never(*args, **kwargs):
        raise AssertionError("ray.init was reached: it would retry for minutes")

    monkeypatch.setattr(ray, "init", never)
    with socket.socket() as closed:  # a port of this machine that nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    start = time.monotonic()
    assert run(tiny_folder, questions, tmp_path / "a.jsonl", "vanilla", "--ray-address", f"127.0.0.1:{port}",
               "--ray-timeout", "3") == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert f"error: --ray-address 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port} within 3 s" in err
    assert "ray start --head" in err and "--ray-timeout" in err


@pytest.mark.parametrize("address, host, port", [
    ("10.1.2.3", "10.1.2.3", 6379), ("ray://head", "head", 10001), ("[::1]:7000", "::1", 7000),
    ("ray://head:12345", "head", 12345),
])
def test_the_probed_endpoint_follows_rays_address_forms(monkeypatch, address, host, port):
    from evaluation.run import sharded

    probed = []

    def fake_connection(endpoint, timeout):
        probed.append((endpoint, timeout))
        raise TimeoutError()

    monkeypatch.setattr(sharded.socket, "create_connection", fake_connection)
    with pytest.raises(sharded.ClusterError, match=f"nothing answers at {re.escape(host)}:{port} within 2 s "
                                                   r"\(no answer\)"):
        sharded.probe_address(address, 2)
    assert probed == [((host, port), 2)]
    sharded.probe_address("auto", 2)  # a cluster on this machine: Ray answers at once
    assert len(probed) == 1
