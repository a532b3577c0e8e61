"""Target features at scale: one run serves every drafter, and an interrupted run resumes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from methods.core.hidden_states import HiddenStateRequest
from tests.test_train_drafter import tiny_training_setup
from training import features as features_module
from training.features import build_features, union
from training.target_states import TargetStates


def test_union_of_requests():
    r = union(HiddenStateRequest(final=True), HiddenStateRequest(layer_inputs=(3, 1)),
              HiddenStateRequest(layer_inputs=(1, 2)))
    assert r.final and r.layer_inputs == (1, 2, 3)
    assert not union(HiddenStateRequest(layer_inputs=(0,))).final


def test_a_run_that_stored_more_serves_a_smaller_request(tmp_path, monkeypatch):
    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    model, tok = loaded.model, loaded.tokenizer
    everything = build_features(model, tok, corpus, HiddenStateRequest(final=True, layer_inputs=(0, 1)),
                                progress=False)
    calls = []
    monkeypatch.setattr(features_module, "corpus_sequences", lambda *a, **k: calls.append(1))  # no second run
    final_only = build_features(model, tok, corpus, HiddenStateRequest(final=True), progress=False)
    assert not calls and final_only.folder == everything.folder and final_only.layer_inputs == {}
    np.testing.assert_array_equal(final_only.final, everything.final)
    layer = build_features(model, tok, corpus, HiddenStateRequest(layer_inputs=(1,)), progress=False)
    assert layer.final is None and list(layer.layer_inputs) == [1]
    np.testing.assert_array_equal(layer.layer_inputs[1], everything.layer_inputs[1])


def test_an_interrupted_run_resumes_and_ends_equal_to_an_uninterrupted_one(tmp_path, monkeypatch):
    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    model, tok = loaded.model, loaded.tokenizer
    request = HiddenStateRequest(final=True, layer_inputs=(1,))
    reference = build_features(model, tok, corpus, request, progress=False, cache=False)
    reference_final = np.array(reference.final)
    reference_layer = np.array(reference.layer_inputs[1])
    shutil.rmtree(reference.folder)

    forwards = []
    real_call = TargetStates.__call__

    def failing(self, tokens):
        forwards.append(1)
        if len(forwards) == 7:
            raise KeyboardInterrupt
        return real_call(self, tokens)

    monkeypatch.setattr(TargetStates, "__call__", failing)
    with pytest.raises(KeyboardInterrupt):
        build_features(model, tok, corpus, request, progress=False, save_every_s=0.0)
    monkeypatch.setattr(TargetStates, "__call__", real_call)
    progress = list((tmp_path / "cache" / "features").glob("*.tmp/progress.json"))
    assert len(progress) == 1 and '"done": 6' in progress[0].read_text()

    counted = _counting_forward(monkeypatch, model)
    resumed = build_features(model, tok, corpus, request, progress=False)
    assert len(counted) == len(resumed.heldout) - 6  # only the sequences not saved before
    np.testing.assert_array_equal(np.array(resumed.final), reference_final)
    np.testing.assert_array_equal(np.array(resumed.layer_inputs[1]), reference_layer)
    assert not list((tmp_path / "cache" / "features").glob("*.tmp"))


def test_extract_once_then_every_trainer_finds_its_states(tmp_path, monkeypatch, capsys):
    from training.extract_features import main as extract
    from training.train_drafter import main as train

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    dflash = ["--dflash-target-layers", "0"]  # the tiny base has two layers
    assert extract(["--model-path", str(folder), "--corpus", str(corpus), "--no-progress", *dflash]) == 0
    out = capsys.readouterr().out
    assert "eagle3: final feature no, layer inputs" in out and "positions of" in out
    runs = list((tmp_path / "cache" / "features").glob("*/meta.json"))
    assert len(runs) == 1

    def no_second_run(*args, **kwargs):
        raise AssertionError("the target ran again")

    monkeypatch.setattr(features_module, "corpus_sequences", no_second_run)
    for method, extra in (("eagle", []), ("eagle3", []), ("hydra", ["--hydra-heads", "2"]), ("dflash", dflash)):
        assert train(["--method", method, "--model-path", str(folder), "--corpus", str(corpus),
                      "--out", str(tmp_path / method), "--max-steps", "1", "--no-progress", *extra]) == 0
    assert len(list((tmp_path / "cache" / "features").glob("*/meta.json"))) == 1


def test_extract_refuses_unknown_methods_and_options_the_base_cannot_take(tmp_path, monkeypatch, capsys):
    from training.extract_features import main as extract

    with pytest.raises(SystemExit):
        extract(["--methods", "eagle,nope"])
    assert "nope" in capsys.readouterr().err
    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    with pytest.raises(SystemExit):
        extract(["--methods", "dflash", "--model-path", str(folder), "--corpus", str(corpus)])
    assert "dflash: --dflash-target-layers" in capsys.readouterr().err


def _first_records(corpus, path, count):
    import gzip

    with gzip.open(corpus, "rt") as f:
        lines = f.readlines()
    with gzip.open(path, "wt") as f:
        f.writelines(lines[:count])
    return path


def _counting_forward(monkeypatch, model):
    """Counts the target's runs over a sequence, whichever forward the pass takes (lean or the model's)."""
    real, counted = TargetStates.__call__, []
    monkeypatch.setattr(TargetStates, "__call__", lambda self, tokens: counted.append(1) or real(self, tokens))
    return counted


def test_a_larger_corpus_copies_the_states_of_the_sequences_an_earlier_run_holds(tmp_path, monkeypatch, capsys):
    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    model, tok = loaded.model, loaded.tokenizer
    request = HiddenStateRequest(final=True, layer_inputs=(1,))
    reference = build_features(model, tok, corpus, request, progress=False, cache=False)
    reference_final, reference_layer = np.array(reference.final), np.array(reference.layer_inputs[1])
    shutil.rmtree(reference.folder)

    subset = _first_records(corpus, tmp_path / "first.jsonl.gz", 10)
    build_features(model, tok, subset, HiddenStateRequest(final=True, layer_inputs=(0, 1)), progress=False)
    counted = _counting_forward(monkeypatch, model)
    whole = build_features(model, tok, corpus, request, progress=False)
    assert len(counted) == len(whole.heldout) - 10  # the ten earlier sequences are not run again
    assert "10 of 24 sequences taken from earlier runs" in capsys.readouterr().out
    np.testing.assert_array_equal(np.array(whole.final), reference_final)
    np.testing.assert_array_equal(np.array(whole.layer_inputs[1]), reference_layer)


def test_only_runs_on_the_same_base_that_stored_every_requested_state_are_reused(tmp_path, monkeypatch):
    import json

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    model, tok = loaded.model, loaded.tokenizer
    subset = _first_records(corpus, tmp_path / "first.jsonl.gz", 10)
    earlier = build_features(model, tok, subset, HiddenStateRequest(final=True), progress=False)
    meta_file = earlier.folder / "meta.json"
    meta = json.loads(meta_file.read_text())

    counted = _counting_forward(monkeypatch, model)
    layer = build_features(model, tok, corpus, HiddenStateRequest(layer_inputs=(1,)), progress=False)
    assert len(counted) == len(layer.heldout)  # the earlier run has no layer inputs: nothing to take

    def run_again():
        for cached in (tmp_path / "cache" / "features").iterdir():
            if cached != earlier.folder:
                shutil.rmtree(cached)
        counted.clear()
        build_features(model, tok, corpus, HiddenStateRequest(final=True), progress=False)
        return len(counted)

    meta_file.write_text(json.dumps({**meta, "base": "another base"}))
    assert run_again() == 24
    legacy = {k: v for k, v in meta.items() if k != "base"}  # recorded before runs named their base
    meta_file.write_text(json.dumps(legacy))
    assert run_again() == 14  # its family key, recomputed from its corpus, shows the same base
    meta_file.write_text(json.dumps({**legacy, "family": "another"}))
    assert run_again() == 24
