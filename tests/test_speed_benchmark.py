"""benchmarks/speed_benchmark.py's argument handling (the timing itself is the script's job)."""

from __future__ import annotations

from benchmarks.speed_benchmark import split_pair


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
