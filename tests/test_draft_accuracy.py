"""Trained drafters measured on a question set's answers: the recorded options rebuild the recipe,
the artifact's own held-out figures are reproduced, subtasks partition the whole, refusals are clear."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import training.draft_accuracy as accuracy
from tests.test_train_drafter import tiny_training_setup
from training.features import read_corpus
from training.train_drafter import main as train_main

# EAGLE with a non-default width: a tool that ignored the recorded command would build another
# shape and could not load the weights.
TRAINED = {"eagle": ["--eagle-intermediate", "48", "--eagle-steps", "2", "--batch-size", "64"],
           "hydra": ["--hydra-heads", "2", "--batch-size", "64"],
           # An SpS draft model keeps its training record in metadata.json, not in its config.json.
           "sps": ["--sps-eval-gamma", "2", "--batch-size", "32"]}


@pytest.fixture
def trained(tmp_path, monkeypatch):
    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    drafters = tmp_path / "drafters"
    for method, options in TRAINED.items():
        assert train_main(["--method", method, "--model-path", str(folder), "--corpus", str(corpus),
                           "--out", str(drafters / method), "--epochs", "2", "--lr", "3e-3", "--no-progress",
                           *options]) == 0
    questions = tmp_path / "question.jsonl"
    rows = [{"question_id": i, "category": category, "turns": [" ".join(f"w{(i * 7 + k) % 60 + 3}" for k in range(6))]}
            for i, category in enumerate(["writing", "translation", "qa", "writing", "translation", "qa", "qa"])]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder, loaded, corpus, drafters, questions


def run(folder, drafters, questions, out, *extra):
    return accuracy.main(["--model-path", str(folder), "--drafters", str(drafters), "--questions", str(questions),
                          "--per-subtask", "2", "--max-new-tokens", "12", "--out", str(out), "--no-progress", *extra])


def test_every_subtask_and_all_of_them_are_measured_beside_the_artifacts_own_figures(trained, tmp_path, monkeypatch):
    folder, _, _, drafters, questions = trained
    corpora = []  # the answers' corpus, kept for a direct measurement of all of them below
    real_write = accuracy.write_records
    monkeypatch.setattr(accuracy, "write_records", lambda records, path: corpora.append(
        real_write(records, tmp_path / "answers.jsonl.gz")) or corpora[-1])
    assert run(folder, drafters, questions, tmp_path / "rows.json") == 0
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    for method in TRAINED:
        mine = {r["prompts"]: r for r in rows if r["method"] == method}
        # The bundled-style selection: 2 per subtask, writing counted as mt_bench.
        assert list(mine) == [accuracy.HELDOUT, "mt_bench", "translation", "qa", accuracy.ALL]
        assert mine[accuracy.HELDOUT]["positions"] == accuracy.recorded_metrics(drafters / method)["heldout"][-1]["positions"][0]
        parts = [mine[s] for s in ("mt_bench", "translation", "qa")]
        whole = mine[accuracy.ALL]
        assert whole["positions"] == sum(p["positions"] for p in parts) > 0
        weighted = sum(p["depth1"] * p["positions"] for p in parts) / whole["positions"]
        assert whole["depth1"] == pytest.approx(weighted, abs=2e-4)
    # The pooled row is what one measurement over every answer gives (EAGLE's recipe builds without
    # a training split; SPACE's and SpS's do not, hence the pooling).
    _, loaded, _, _, _ = trained
    everything = np.ones(len(read_corpus(corpora[0])), dtype=bool)
    direct = accuracy.measure("eagle", drafters / "eagle", loaded.model, loaded.tokenizer, corpora[0],
                              {"every answer": everything}, max_length=4096, progress=False)["every answer"]
    pooled = {r["prompts"]: r for r in rows if r["method"] == "eagle"}[accuracy.ALL]
    assert pooled["positions"] == direct["positions"][0]
    assert pooled["depth1"] == pytest.approx(direct["top1"][0], abs=1e-4)
    assert pooled["expected_accepted"] == pytest.approx(1 + sum(direct["top1"]), abs=1e-3)
    eagle = {r["prompts"]: r for r in rows if r["method"] == "eagle"}[accuracy.ALL]
    hydra = {r["prompts"]: r for r in rows if r["method"] == "hydra"}[accuracy.ALL]
    sps = {r["prompts"]: r for r in rows if r["method"] == "sps"}[accuracy.ALL]
    assert eagle["chain_tokens"] == hydra["chain_tokens"] == sps["chain_tokens"] == 2  # each one's measured chain
    assert 1.0 <= eagle["expected_accepted"] <= 1.0 + 2 * eagle["depth1"] + 1e-3


@pytest.mark.parametrize("method", sorted(TRAINED))
def test_the_artifacts_own_heldout_split_gives_back_its_recorded_figures(trained, method):
    """Measured on the corpus it was trained from, the tool's rebuilt recipe and reloaded weights
    reproduce the trainer's last held-out figures (up to the artifact's float16 rounding)."""
    _, loaded, corpus, drafters, _ = trained
    heldout = np.array([r["split"] == "heldout" for r in read_corpus(corpus)])
    measured = accuracy.measure(method, drafters / method, loaded.model, loaded.tokenizer, corpus,
                                {"heldout": heldout}, progress=False)["heldout"]
    recorded = accuracy.recorded_metrics(drafters / method)["heldout"][-1]
    assert measured["positions"] == recorded["positions"]
    assert measured["top1"] == pytest.approx(recorded["top1"], abs=0.02)


def test_a_drafter_the_folder_lacks_or_of_another_method_is_refused_with_its_reason(trained, tmp_path, capsys):
    folder, _, _, drafters, questions = trained
    with pytest.raises(SystemExit):
        run(folder, drafters, questions, tmp_path / "rows.json", "--methods", "medusa")
    assert "no medusa drafter there" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(folder, tmp_path / "empty", questions, tmp_path / "rows.json")
    assert "no trained drafter there" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(tmp_path / "no-model", drafters, questions, tmp_path / "rows.json")
    assert "no such file or folder" in capsys.readouterr().err

    swapped = tmp_path / "swapped"
    shutil.copytree(drafters / "hydra", swapped / "eagle")
    assert run(folder, swapped, questions, tmp_path / "rows.json") == 2
    assert "holds 'hydra', not a eagle drafter" in capsys.readouterr().err

    unrecorded = tmp_path / "unrecorded"
    shutil.copytree(drafters / "eagle", unrecorded / "eagle")
    config = json.loads((unrecorded / "eagle" / "config.json").read_text())
    del config["training"]["command"]
    (unrecorded / "eagle" / "config.json").write_text(json.dumps(config))
    assert run(folder, unrecorded, questions, tmp_path / "rows.json") == 2
    assert "no recorded training command" in capsys.readouterr().err
    assert not (tmp_path / "rows.json").exists()


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        accuracy.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--questions", "--per-subtask", "--max-new-tokens", "--methods", "--drafters", "--model-path",
                   "--backend", "--threads", "--out", "--no-progress"):
        assert option in text


def test_a_corpus_is_measured_per_category_and_its_heldout_split_pools_to_the_recorded_figures(trained, tmp_path):
    folder, _, corpus, drafters, questions = trained
    records = read_corpus(corpus)
    for i, record in enumerate(records):
        record["category"] = ["math", "translation", "writing"][i % 3]
    labelled = accuracy.write_records(records, tmp_path / "labelled.jsonl.gz")
    assert run(folder, drafters, questions, tmp_path / "rows.json", "--corpus", str(labelled),
               "--methods", "eagle") == 0
    mine = {r["prompts"]: r for r in json.loads((tmp_path / "rows.json").read_text())["rows"]}
    held = [r for r in records if r["split"] == "heldout"]
    assert set(mine) == {accuracy.HELDOUT, accuracy.ALL} | {r["category"] for r in held}
    # The categories partition the held-out split the drafter was measured on when it was trained.
    assert mine[accuracy.ALL]["positions"] == mine[accuracy.HELDOUT]["positions"]
    assert mine[accuracy.ALL]["depth1"] == pytest.approx(mine[accuracy.HELDOUT]["depth1"], abs=0.02)

    with pytest.raises(SystemExit):
        run(folder, drafters, questions, tmp_path / "rows.json", "--corpus", str(tmp_path / "nowhere.jsonl.gz"))
