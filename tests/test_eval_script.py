"""eval.sh --quick end to end on a tiny local model: one question per subtask, quiet checks,
one summary table, then the command that opens the leaderboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_inference import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_covers_every_subtask_and_ends_with_one_table(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    questions = tmp_path / "question.jsonl"
    rows = [(1, "writing"), (2, "coding"), (3, "qa"), (4, "qa"), (5, "translation"), (6, "translation")]
    questions.write_text("".join(
        json.dumps({"question_id": i, "category": c, "turns": ["w5 w6 w7 w5 w6"]}) + "\n"
        for i, c in rows))
    answers, reports, db = tmp_path / "answers", tmp_path / "reports", tmp_path / "results.db"
    env = dict(os.environ, PYTHON=sys.executable, MODEL_PATH=str(model), MODEL_NAME="tiny",
               METHODS="pld", DTYPE="float64", DEVICE="cpu",
               MAX_NEW_TOKENS="12", DB=str(db), ANSWER_DIR=str(answers), REPORT_DIR=str(reports),
               EXTRA_ARGS=f"--question-file {questions} --warmup 0 --no-progress")
    done = subprocess.run([str(ROOT / "eval.sh"), "--quick"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    base = answers / "tiny-vanilla-float64-temp-0.0-quick.jsonl"
    assert [json.loads(line)["question_id"] for line in base.read_text().splitlines()] == [1, 3, 5]
    out = done.stdout
    assert "Speedup [95% CI]" in out and "Mean accepted tokens" in out
    table = out[out.index("All methods against vanilla (3 questions):"):].splitlines()
    assert table[3].split()[0] == "pld" and not table[4].strip()  # one row, then a gap
    assert table[3].rstrip().endswith("yes (3/3 turns)")
    assert out.rstrip().endswith(f"streamlit run app.py -- --db {db}")
    assert "== pld against the baseline ==" not in out and "Result totally Equal!" not in out
    assert "Speedup" in (reports / "speed-pld.txt").read_text()
    assert "\nResult totally Equal!\n" in (reports / "equal-pld.txt").read_text()
    assert "Stored in" not in out + done.stderr  # the reports, not the terminal, say where results went
    assert db.exists()
