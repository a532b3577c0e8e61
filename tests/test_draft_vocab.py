"""The draft vocabulary every trained drafter scores: the most frequent answer tokens, one rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.drafters.medusa import MedusaDrafter
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.medusa import load_medusa
from tests.engine_helpers import random_prompts
from tests.test_inference import VOCAB
from tests.test_train_drafter import tiny_training_setup
from training.draft_vocab import UNKNOWN, coverage, frequent_answer_ids, token_to_column
from training.train_drafter import main


def test_most_frequent_ids_ascending_ties_to_the_smaller_id():
    tokens = np.array([5, 5, 5, 9, 9, 2, 2, 7, 1, 1])
    counted = np.ones(len(tokens), dtype=bool)
    counted[-2:] = False  # the 1s are prompt tokens: never counted
    assert frequent_answer_ids(tokens, counted, 0).tolist() == [2, 5, 7, 9]
    assert frequent_answer_ids(tokens, counted, 1).tolist() == [5]
    assert frequent_answer_ids(tokens, counted, 2).tolist() == [2, 5]  # 2 and 9 tie at two: the smaller id stays
    assert frequent_answer_ids(tokens, counted, 3).tolist() == [2, 5, 9]
    assert frequent_answer_ids(tokens, counted, 50).tolist() == [2, 5, 7, 9]
    with pytest.raises(ValueError, match="0 .every answer token. or positive"):
        frequent_answer_ids(tokens, counted, -1)


def test_columns_and_coverage():
    vocab = np.array([2, 5, 9])
    t2d = token_to_column(vocab, 12)
    assert t2d[[2, 5, 9]].tolist() == [0, 1, 2]
    assert (np.delete(t2d, [2, 5, 9]) == UNKNOWN).all()
    tokens = np.array([2, 5, 5, 7, 1])
    assert coverage(tokens, np.array([1, 1, 1, 1, 0], dtype=bool), vocab) == pytest.approx(0.75)
    assert coverage(tokens, np.zeros(5, dtype=bool), vocab) == 1.0


def test_heads_trained_on_a_cut_vocabulary_score_only_it_and_stay_lossless(tmp_path, monkeypatch):
    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / "heads"
    assert main(["--method", "medusa", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
                 "--epochs", "1", "--batch-size", "64", "--medusa-heads", "2", "--medusa-draft-vocab", "6",
                 "--no-progress"]) == 0
    state = load_file(str(out / "medusa_lm_head.safetensors"))
    assert len(state["draft_vocab"]) == 6
    assert json.loads((out / "config.json").read_text())["draft_vocab_size"] == 6
    heads = load_medusa(out, loaded.model)
    drafter = MedusaDrafter(heads, choices=[[0], [1], [0, 0]])
    engine = SpeculativeEngine(loaded.model)
    config = DecodingConfig(max_new_tokens=12)
    for prompt in random_prompts(2, VOCAB, seed=51):
        assert engine.generate(prompt, drafter, config)[0] == engine.generate(prompt, VanillaDrafter(), config)[0]


def test_a_recipes_draft_vocabulary_comes_from_the_training_split_and_is_measured_on_the_heldout_one():
    from types import SimpleNamespace

    from training.draft_vocab import draft_vocabulary

    # Two conversations: the first trains (answers 5, 5, 7), the second is held out (answers 7, 9).
    features = SimpleNamespace(tokens=np.array([1, 5, 5, 7, 1, 7, 9]),
                               answer=np.array([0, 1, 1, 1, 0, 1, 1], dtype=bool),
                               heldout=np.array([False, True]), sequence_of_position=np.array([0, 0, 0, 0, 1, 1, 1]))
    top = draft_vocabulary(features, 1, 12)
    assert top.ids.tolist() == [5] and top.t2d[5] == 0 and top.t2d[7] == -1 and top.coverage == 0.0
    every = draft_vocabulary(features, 0, 12)
    assert every.ids.tolist() == [5, 7] and every.coverage == 0.5
    whole = draft_vocabulary(features, 0, 12, zero_is_whole_vocabulary=True)
    assert whole.ids.tolist() == list(range(12)) and whole.coverage == 1.0
