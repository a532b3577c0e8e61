"""benchmarks/suffix_replay.py: the replay's per-step records and the calibration table."""

from __future__ import annotations

from benchmarks.suffix_replay import calibration_rows, replay
from methods.drafters.suffix import SuffixDrafter


def replayed(**caps):
    prompt = [5, 6, 7, 8, 9, 10, 11, 12, 3]
    answer = [5, 6, 7, 8, 9, 10, 11, 12, 4, 4]  # copies the prompt, then leaves it
    drafter = SuffixDrafter(None, spec_factor=4.0, min_token_prob=0.0, max_cached_requests=0, **caps)
    return replay(drafter, [(prompt, answer)], vocab_size=32, max_new_tokens=len(answer)), len(answer)


def test_every_drafted_step_is_recorded_with_its_index_score_match_and_accepted_tokens():
    # Steps: no match after "3"; "5" (m = 1) drafts 6 7 8 9 (each followed 5 in one of its two
    # occurrences: score 4 * 0.5); "5 .. 10" (m = 6) drafts 11 12 3, of which 11 12 are right.
    result, length = replayed(max_spec_tokens=3, request_max_spec_tokens=8)
    assert result["drafted"] == [("request", 2.0, 1, 4), ("request", 1.5, 6, 2)]
    assert sum(accepted for *_, accepted in result["drafted"]) + result["steps"] == length
    # With the general cap of 3 for the request's index too, the copy is cut at 3 tokens.
    result, _ = replayed(max_spec_tokens=3)
    assert [accepted for *_, accepted in result["drafted"]] == [3, 3]


def test_calibration_rows_bin_each_index_by_score_and_by_match_length():
    drafted = [("request", 0.5, 1, 0), ("request", 3.5, 6, 3), ("request", 3.1, 6, 1), ("global", 4.5, 12, 2)]
    rows = calibration_rows(drafted)
    assert any("request  score      0-1:      1 steps, score  0.50, accepted  0.00" in r for r in rows)
    assert any("request  score      3-4:      2 steps, score  3.30, accepted  2.00" in r for r in rows)
    assert any("request  match      5-9:      2 steps" in r for r in rows)
    assert any("global   score      >=4:      1 steps, score  4.50, accepted  2.00" in r for r in rows)
    assert any("global   match      >=9:      1 steps" in r for r in rows)
    assert len(rows) == 6  # bins without a step are left out
