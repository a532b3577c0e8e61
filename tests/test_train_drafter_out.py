"""The trainer's --out folder: never another method's artifact. A new or empty folder, or one
holding the same method's artifact (trained again in place), is written; anything else is
refused before the model loads, and left exactly as it was."""

from __future__ import annotations

import json

import pytest

from tests.test_eagle import write_published as write_published_eagle
from tests.test_train_drafter import tiny_training_setup
from tests.tiny_model import make_tiny_llama
from training.train_drafter import main, out_folder_problem

QUICK = ["--max-steps", "1", "--batch-size", "16", "--no-progress"]


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_training_medusa_into_an_eagle_draft_is_refused_and_the_draft_kept(tmp_path, monkeypatch, capsys):
    base, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / "eagle-draft"
    write_published_eagle(out, make_tiny_llama(vocab_size=97), suffix=".safetensors")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "method": "eagle"}))  # as our trainer writes it
    before = snapshot(out)
    with pytest.raises(SystemExit) as exit_:
        main(["--method", "medusa", "--model-path", str(base), "--corpus", str(corpus), "--out", str(out), *QUICK])
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(out) in message and "an eagle artifact" in message and "new or empty folder" in message
    assert snapshot(out) == before


def test_the_same_methods_artifact_is_trained_again_in_place(tmp_path, monkeypatch):
    base, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / "medusa"
    args = ["--method", "medusa", "--model-path", str(base), "--corpus", str(corpus), "--out", str(out), *QUICK]
    assert main(args) == 0
    assert main(args + ["--seed", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["training"]["seed"] == 1


@pytest.mark.parametrize("content,expected", [
    (None, None),
    ({}, None),
    ({"config.json": {"method": "hydra"}}, "holds a hydra artifact"),
    ({"config.json": {"medusa_num_heads": 5}}, "holds published Medusa heads"),
    ({"config.json": {"speculators_model_type": "eagle3"}}, "holds a speculators eagle3 head"),
    ({"config.json": {"architectures": ["LlamaForCausalLM"]}}, "a published EAGLE draft or a model"),
    ({"notes.txt": "mine"}, "not empty and holds no medusa artifact"),
    ({"config.json": "{not json"}, "config.json cannot be read"),
    ({"config.json": {"method": "medusa"}}, None),
], ids=["new", "empty", "other-method", "published-medusa", "speculators", "unknown", "stray-files", "bad-json",
        "same-method"])
def test_what_an_out_folder_may_hold(tmp_path, content, expected):
    out = tmp_path / "out"
    if content is not None:
        out.mkdir()
        for name, value in content.items():
            (out / name).write_text(value if isinstance(value, str) else json.dumps(value))
    problem = out_folder_problem(out, "medusa")
    assert problem is None if expected is None else expected in problem


def test_an_out_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in out_folder_problem(tmp_path / "file", "eagle")
