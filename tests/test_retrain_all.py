"""training/retrain_all.py: the plan, what it skips, and how it resumes (commands recorded, not run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import retrain_all


@pytest.fixture
def repo(tmp_path, monkeypatch):
    corpus = tmp_path / "data" / "corpus" / "smollm2_corpus.jsonl.gz"
    corpus.parent.mkdir(parents=True)
    corpus.write_bytes(b"corpus")
    (tmp_path / "data" / "corpus" / "build").mkdir()
    monkeypatch.setattr(retrain_all, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(retrain_all, "BUNDLED_CORPUS", corpus)
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    commands = []
    monkeypatch.setattr(retrain_all, "run", lambda command, dry_run: commands.append(command[2:]))
    return tmp_path, commands


def _ship(root: Path, method: str, sha: str) -> Path:
    folder = root / retrain_all.DRAFTERS / method
    folder.mkdir(parents=True, exist_ok=True)
    record = {"method": method, "training": {"corpus_sha256": sha}}
    if method == "sps":  # a model folder: config.json is the model's, the record is in metadata.json
        (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (folder / "metadata.json").write_text(json.dumps(record))
    else:
        (folder / "config.json").write_text(json.dumps(record))
    return folder


def test_every_step_runs_in_order_with_relative_paths(repo):
    root, commands = repo
    assert retrain_all.main([]) == 0
    modules = [c[0] for c in commands]
    assert modules[:2] == ["training.generate_corpus", "training.extract_features"]
    assert [c[c.index("--method") + 1] for c in commands[2:]] == [t.method for t in retrain_all.PLAN]
    # Paths inside the checkout are relative (the artifacts record the command); the checkpoints
    # are kept in the cache, outside the checkout, and left out of the recorded command.
    for c in commands:
        where = c.index("--checkpoint-dir") + 1 if "--checkpoint-dir" in c else None
        assert all(not Path(a).is_absolute() for i, a in enumerate(c) if i != where)
        if where is not None:
            assert c[where] == str(root / "cache" / "retrain" / c[c.index("--method") + 1])


def test_a_drafter_trained_on_this_corpus_is_skipped_and_a_stopped_one_resumes(repo):
    root, commands = repo
    from methods.core.file_hash import file_sha256
    sha = file_sha256(retrain_all.BUNDLED_CORPUS)
    for t in retrain_all.PLAN:
        _ship(root, t.method, sha)
    _ship(root, "eagle", "an older corpus")
    _ship(root, "hydra", "an older corpus")
    (root / "cache" / "retrain" / "hydra").mkdir(parents=True)
    (root / "cache" / "retrain" / "hydra" / "training-checkpoint.pt").write_bytes(b"")
    assert retrain_all.main(["--no-merge"]) == 0
    assert commands[0][0] == "training.extract_features"
    assert commands[0][commands[0].index("--methods") + 1] == "hydra,eagle"
    trained = {c[c.index("--method") + 1]: c for c in commands[1:]}
    assert set(trained) == {"hydra", "eagle"}
    assert "--resume" in trained["hydra"] and "--resume" not in trained["eagle"]


def test_only_and_its_errors(repo, capsys):
    root, commands = repo
    assert retrain_all.main(["--only", "medusa", "--no-merge", "--threads", "2"]) == 0
    assert [c[0] for c in commands] == ["training.train_drafter"]  # features only with their step
    assert commands[0][commands[0].index("--threads") + 1] == "2"
    with pytest.raises(SystemExit):
        retrain_all.main(["--only", "medusa,nope"])
    assert "nope" in capsys.readouterr().err


def test_train_conversations_trains_on_the_curve_s_subset(repo, capsys):
    root, commands = repo
    from methods.core.file_hash import file_sha256
    from tests.test_data_curve import synthetic_records
    from training.data_curve import write_corpus
    write_corpus(synthetic_records(), retrain_all.BUNDLED_CORPUS)  # 40 conversations, 32 for training
    assert retrain_all.main(["--no-merge", "--train-conversations", "10"]) == 0
    subset = retrain_all.SUBSETS / "10.jsonl.gz"
    assert (root / subset).is_file()
    assert all(c[c.index("--corpus") + 1] == str(subset) for c in commands)
    trainers = [c for c in commands if c[0] == "training.train_drafter"]
    assert len(trainers) == len(retrain_all.PLAN)
    assert all("retrain-10" in c[c.index("--checkpoint-dir") + 1] for c in trainers)

    # A drafter trained on the subset is done; one trained on the whole corpus is not.
    commands.clear()
    _ship(root, "hydra", file_sha256(root / subset))
    _ship(root, "eagle", file_sha256(retrain_all.BUNDLED_CORPUS))
    assert retrain_all.main(["--no-merge", "--train-conversations", "10"]) == 0
    trained = [c[c.index("--method") + 1] for c in commands if c[0] == "training.train_drafter"]
    assert "hydra" not in trained and "eagle" in trained

    for bad in ("0", "33"):
        with pytest.raises(SystemExit):
            retrain_all.main(["--no-merge", "--train-conversations", bad])
        assert "--train-conversations" in capsys.readouterr().err
