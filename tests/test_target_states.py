"""The feature pass's two ways to run the target (training/target_states.py) give the same states."""

from __future__ import annotations

import pytest
import torch

from methods.core.backends import native_kernels
from methods.core.hidden_states import HiddenStateRequest
from tests.test_lean_native import make_model
from training import target_states
from training.target_states import ForwardUnavailable, TargetStates

needs_native = pytest.mark.skipif(native_kernels.load() is None,
                                  reason=f"native kernel unavailable: {native_kernels.why_not()}")
REQUEST = HiddenStateRequest(final=True, layer_inputs=(0, 2))


def _states(model, forward, tokens, block_rows=None):
    with TargetStates(model, REQUEST, forward) as states:
        if block_rows is not None:  # blocks of a few rows, as a long conversation's pass runs them
            states._target.skinny_max_rows, states._target.prefill_block = block_rows, block_rows
        return states.name, [states(t) for t in tokens]


@needs_native
def test_the_lean_forward_gives_the_transformers_states_and_auto_takes_it():
    model = make_model("llama", 64, 4, 2, layers=3)
    gen = torch.Generator().manual_seed(0)
    # Three sequences of different lengths through one reused cache, the longest in several blocks.
    tokens = [torch.randint(3, 97, (n,), generator=gen).tolist() for n in (23, 9, 40)]
    name, lean = _states(model, "auto", tokens, block_rows=8)
    assert name == "lean"
    assert _states(model, "transformers", tokens)[0] == "transformers"
    reference = _states(model, "transformers", tokens)[1]
    for got, want, t in zip(lean, reference, tokens):
        assert got.final.shape == (len(t), 64)
        torch.testing.assert_close(got.final, want.final.reshape(got.final.shape), rtol=1e-4, atol=1e-4)
        assert got.layer_inputs.keys() == {0, 2}
        for i in (0, 2):
            torch.testing.assert_close(got.layer_inputs[i], want.layer_inputs[i].reshape(got.layer_inputs[i].shape),
                                       rtol=1e-4, atol=1e-4)


def test_where_lean_cannot_run_auto_takes_the_models_forward_and_lean_is_refused_with_the_reason():
    model = make_model("llama", 64, 4, 2, layers=3).double()  # lean's native path runs float32 only
    with TargetStates(model, REQUEST, "auto") as states:
        assert states.name == "transformers"
        assert states([5, 6, 7]).final.shape[-1] == 64
    with pytest.raises(ForwardUnavailable, match="float32 models on the CPU only"):
        TargetStates(model, REQUEST, "lean")
    with pytest.raises(ValueError, match="choose among auto, lean, transformers"):
        TargetStates(model, REQUEST, "fast")


def test_extract_features_reports_an_unavailable_lean_forward_as_an_error(tmp_path, monkeypatch, capsys):
    from tests.test_train_drafter import tiny_training_setup
    from training.extract_features import main as extract

    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    monkeypatch.setattr(target_states, "_lean_target", lambda model: (None, "no native library here"))
    code = extract(["--methods", "eagle", "--model-path", str(folder), "--corpus", str(corpus), "--no-progress",
                    "--forward", "lean"])
    assert code == 2
    assert "the lean forward cannot run this model: no native library here" in capsys.readouterr().err
