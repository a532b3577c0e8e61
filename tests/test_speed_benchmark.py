"""benchmarks/speed_benchmark.py's argument handling (the timing itself is the script's job)."""

from __future__ import annotations

import benchmarks.speed_benchmark as speed_benchmark
import pytest

from benchmarks.speed_benchmark import make_drafter, pairs_outside, split_pair


def test_a_pair_splits_at_the_slash_between_two_of_the_runs_methods():
    methods = ["vanilla", "eagle", "eagle:--eagle-path=results/slices/eagle"]
    assert split_pair("vanilla/eagle", methods) == ("vanilla", "eagle")
    # A method with a path holds slashes of its own.
    assert split_pair("eagle:--eagle-path=results/slices/eagle/eagle", methods) == (
        "eagle:--eagle-path=results/slices/eagle", "eagle")
    assert split_pair("eagle/eagle:--eagle-path=results/slices/eagle", methods) == (
        "eagle", "eagle:--eagle-path=results/slices/eagle")
    # Methods the run lacks: the first slash, so that the pair is skipped as before.
    assert split_pair("vanilla/hf", methods) == ("vanilla", "hf")
    assert split_pair("vanilla", methods) == ("vanilla", "")


def test_a_pair_may_name_methods_by_their_position_counted_from_one():
    methods = ["vanilla", "eagle2", "dflash:--dflash-path=results/whole/dflash3:--dflash-tree-nodes=3"]
    assert split_pair("3/2", methods) == (methods[2], "eagle2")
    assert split_pair("dflash:--dflash-path=results/whole/dflash3:--dflash-tree-nodes=3/1", methods) == (
        methods[2], "vanilla")
    assert pairs_outside("3/2,2/1", methods) == []
    assert pairs_outside("3/2,4/1,0/1,eagle/vanilla", methods) == ["4/1", "0/1", "eagle/vanilla"]


def test_pairs_naming_methods_the_run_lacks_are_refused_before_anything_runs(monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(speed_benchmark, "load_model", no_model)
    monkeypatch.setattr("sys.argv", ["speed_benchmark.py", "--questions", "q.jsonl", "--methods", "vanilla,eagle",
                                     "--pairs", "2/1,eagle2/vanilla"])
    with pytest.raises(SystemExit) as stop:
        speed_benchmark.main()
    assert stop.value.code == 2
    assert "--pairs: eagle2/vanilla not two of --methods" in capsys.readouterr().err


def test_sps_drafts_with_the_runners_default_model_unless_the_benchmark_names_one(monkeypatch):
    """``sps`` in the benchmark is eval.sh's ``sps`` (for the embedded model, the shipped trained
    draft): the benchmark passes no draft model of its own unless --drafter-path names one, and a
    method's own option wins over both."""
    seen = []

    class Recorder:
        @classmethod
        def from_args(cls, args, model, tokenizer):
            seen.append(args.drafter_path)
            return cls

    monkeypatch.setattr(speed_benchmark, "drafter_class", lambda name: Recorder)
    default = speed_benchmark.build_parser().parse_args(["--questions", "q.jsonl", "--methods", "vanilla,sps"])
    make_drafter("sps", default.drafter_path, None, None)
    make_drafter("sps", "self:4", None, None)
    make_drafter("sps:--drafter-path=results/slices/sps", "self:4", None, None)
    assert seen == [None, "self:4", "results/slices/sps"]


def test_per_subtask_times_the_runners_selection_and_per_group_spec_benchs_six_groups():
    """--per-subtask N picks what the runner's --per-subtask N answers (every subtask of the file,
    law_analytics and grammar_correction included); --per-group stays on Spec-Bench's six groups."""
    from collections import Counter

    from evaluation.record.questions import first_per_subtask, load_questions
    from methods.core.paths import REPO_ROOT

    bundled = str(REPO_ROOT / "data" / "bundled" / "question.jsonl")
    by_subtask = speed_benchmark.pick_prompts(bundled, per_group=3, per_subtask=2)
    expected = first_per_subtask(load_questions(bundled), 2)
    assert by_subtask == [(q.subtask, q.turns[0]) for q in expected]
    assert Counter(s for s, _ in by_subtask) == {s: 2 for s in (
        "mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag", "law_analytics",
        "grammar_correction")}
    by_group = speed_benchmark.pick_prompts(bundled, per_group=3)
    assert Counter(g for g, _ in by_group) == {g: 3 for g in speed_benchmark.GROUPS}


def test_a_count_below_one_is_refused_with_a_usage_error(capsys, monkeypatch):
    import sys

    import pytest

    for option in ("--per-subtask", "--per-group"):
        monkeypatch.setattr(sys, "argv", ["speed_benchmark.py", "--questions", "q.jsonl", option, "0"])
        with pytest.raises(SystemExit) as stop:
            speed_benchmark.main()
        assert stop.value.code == 2
        assert f"{option} must be at least 1" in capsys.readouterr().err
