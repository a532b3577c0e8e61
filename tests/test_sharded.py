"""The runner sharded over a local Ray cluster of two CPU workers, on the tiny model: the same
token ids as one process, every line placed, a killed worker loses nothing, a resume skips what
is answered."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

if os.environ.get("CI", "").lower() == "true":  # CI installs requirements.txt: no silent skip
    import ray
else:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements.txt)")

from evaluation.run import answering, sharded  # noqa: E402
from evaluation.inference import main  # noqa: E402
from tests.test_inference import save_tiny_model  # noqa: E402

pytestmark = pytest.mark.ray
METHODS = "vanilla,pld"


@pytest.fixture(scope="module")
def cluster():
    """Two CPU slots: two workers of one thread each."""
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=sharded.runtime_env(),
             logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    path = tmp_path_factory.mktemp("questions") / "question.jsonl"
    rows = [{"question_id": i, "category": ["writing", "qa", "translation"][i % 3],
             "turns": [f"w{5 + i} w{6 + i} w{7 + i} w{5 + i} w{6 + i}"]} for i in range(1, 9)]
    rows[0]["turns"].append("w9 w10 w11")  # one two-turn question
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(tiny_folder, questions, folder, *extra):
    return main(["--method", METHODS, "--model-path", str(tiny_folder), "--dtype", "float64",
                 "--question-file", str(questions), "--answer-dir", str(folder),
                 "--model-id", "tiny-{method}", "--max-new-tokens", "16", "--warmup", "1",
                 "--no-progress", *extra])


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def token_ids(folder):
    return {method: {r["question_id"]: r["choices"][0]["token_ids"]
                     for r in read(folder / f"tiny-{method}.jsonl")}
            for method in METHODS.split(",")}


@pytest.fixture(scope="module")
def single_process(tiny_folder, questions, tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    assert run(tiny_folder, questions, folder, "--device", "cpu") == 0
    return token_ids(folder)


def test_two_workers_write_the_token_ids_of_one_process_with_placements(
        cluster, tiny_folder, questions, single_process, tmp_path):
    assert run(tiny_folder, questions, tmp_path, "--workers", "2") == 0
    assert token_ids(tmp_path) == single_process
    for method in METHODS.split(","):
        records = read(tmp_path / f"tiny-{method}.jsonl")
        assert [r["question_id"] for r in records] == list(range(1, 9))  # sorted, one each
        placements = [r["placement"] for r in records]
        assert all(p["device"] == "cpu" and p["node"] for p in placements)
        assert {p["worker"] for p in placements} == {0, 1}  # both workers answered
        assert all(r["environment"]["num_threads"] == 1 for r in records)
    # The baseline and the method answered each question on the same worker.
    base = {r["question_id"]: r["placement"] for r in read(tmp_path / "tiny-vanilla.jsonl")}
    assert all(r["placement"] == base[r["question_id"]] for r in read(tmp_path / "tiny-pld.jsonl"))


def test_a_worker_killed_mid_run_loses_nothing_and_writes_nothing_twice(
        cluster, tiny_folder, questions, single_process, tmp_path, monkeypatch, capsys):
    written, pids, killed = Counter(), {}, []
    # The driver writes every line through the runner's writer (answering.write_answer).
    real_start, real_append = sharded.start_workers, answering.append_answer

    def start_workers(ray_module, workers):
        described = real_start(ray_module, workers)
        pids.update({d["placement"]["worker"]: d["pid"] for d in described})
        return described

    def append_answer(path, record):
        real_append(path, record)
        written[(path.name, record["question_id"])] += 1
        if not killed:  # the other worker is busy with its own question: kill it now
            victim = next(k for k in pids if k != record["placement"]["worker"])
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(victim)

    monkeypatch.setattr(sharded, "start_workers", start_workers)
    monkeypatch.setattr(answering, "append_answer", append_answer)
    assert run(tiny_folder, questions, tmp_path, "--workers", "2") == 0
    assert killed and f"worker {killed[0]} lost" in capsys.readouterr().err
    assert set(written.values()) == {1} and len(written) == 2 * 8  # every line written once
    assert token_ids(tmp_path) == single_process


def test_a_rerun_after_a_driver_crash_answers_only_what_is_missing(
        cluster, tiny_folder, questions, single_process, tmp_path):
    # A driver that died after three questions: their lines are on disk, the last one cut.
    assert run(tiny_folder, questions, tmp_path, "--workers", "2", "--question-end", "3") == 0
    vanilla = tmp_path / "tiny-vanilla.jsonl"
    first = {r["question_id"]: r["answer_id"] for r in read(vanilla)}
    with vanilla.open("a") as f:
        f.write('{"question_id": 4, "cat')
    assert run(tiny_folder, questions, tmp_path, "--workers", "2") == 0
    records = read(vanilla)
    assert [r["question_id"] for r in records] == list(range(1, 9))
    assert {q: r["answer_id"] for r in records if (q := r["question_id"]) in first} == first
    assert token_ids(tmp_path) == single_process


def test_more_workers_than_the_cluster_holds_is_a_clear_error(cluster, tiny_folder, questions,
                                                              tmp_path, capsys):
    assert run(tiny_folder, questions, tmp_path, "--workers", "3") == 2
    err = capsys.readouterr().err
    assert "3 CPU workers with 1 thread(s) each need 3 CPU slots; the cluster has 2" in err
    assert "Traceback" not in err
