"""The feature pass runs the target on the engine's backends (training/target_states.py): both give
the same states, and the backend is resolved and refused as the engine does it."""

from __future__ import annotations

import pytest
import torch

from methods.core.backends import BackendError, native_kernels
from methods.core.backends import lean as lean_backend
from methods.core.hidden_states import HiddenStateRequest
from tests.test_lean_native import make_model
from training.target_states import TargetStates

needs_native = pytest.mark.skipif(native_kernels.load() is None,
                                  reason=f"native kernel unavailable: {native_kernels.why_not()}")
REQUEST = HiddenStateRequest(final=True, layer_inputs=(0, 2))


def _states(model, backend, tokens, block_rows=None):
    with TargetStates(model, REQUEST, backend) as states:
        if block_rows is not None:  # blocks of a few rows, as a long conversation's pass runs them
            states._target.skinny_max_rows, states._target.prefill_block = block_rows, block_rows
        return states.name, [states(t) for t in tokens]


@needs_native
def test_the_lean_backend_gives_the_hf_states_and_auto_takes_it_on_the_cpu():
    model = make_model("llama", 64, 4, 2, layers=3)
    gen = torch.Generator().manual_seed(0)
    # Three sequences of different lengths, the longest in several native blocks.
    tokens = [torch.randint(3, 97, (n,), generator=gen).tolist() for n in (23, 9, 40)]
    name, lean = _states(model, "auto", tokens, block_rows=8)
    assert name == "lean"
    name, reference = _states(model, "hf", tokens)
    assert name == "hf"
    for got, want, t in zip(lean, reference, tokens):
        assert got.final.shape == (len(t), 64)
        torch.testing.assert_close(got.final, want.final.reshape(got.final.shape), rtol=1e-4, atol=1e-4)
        assert got.layer_inputs.keys() == {0, 2}
        for i in (0, 2):
            torch.testing.assert_close(got.layer_inputs[i], want.layer_inputs[i].reshape(got.layer_inputs[i].shape),
                                       rtol=1e-4, atol=1e-4)


def test_a_model_lean_cannot_run_takes_hf_under_auto_and_lean_is_refused_with_the_reason(monkeypatch):
    model = make_model("llama", 64, 4, 2, layers=3)
    monkeypatch.setattr(lean_backend, "unsupported_reason", lambda model: "no such layout here")
    with TargetStates(model, REQUEST, "auto") as states:
        assert states.name == "hf"
        assert states([5, 6, 7]).final.shape[-1] == 64
    with pytest.raises(BackendError, match="cannot run this model: no such layout here"):
        TargetStates(model, REQUEST, "lean")
    with pytest.raises(BackendError, match="unknown --backend 'fast'"):
        TargetStates(model, REQUEST, "fast")


def test_extract_features_reports_a_backend_the_model_cannot_take_as_an_error(tmp_path, monkeypatch, capsys):
    from tests.test_train_drafter import tiny_training_setup
    from training.extract_features import main as extract

    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    monkeypatch.setattr(lean_backend, "unsupported_reason", lambda model: "no such layout here")
    code = extract(["--methods", "eagle", "--model-path", str(folder), "--corpus", str(corpus), "--no-progress",
                    "--backend", "lean"])
    assert code == 2
    assert "cannot run this model: no such layout here" in capsys.readouterr().err
