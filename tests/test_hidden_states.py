"""Hidden states from the engine: the rows a drafter receives equal a separate full forward."""

from __future__ import annotations

import pytest
import torch

from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.hidden_states import HiddenStateCapture, HiddenStateRequest, request_of
from methods.drafters.vanilla import VanillaDrafter
from tests.engine_helpers import RandomTreeDrafter, baseline, random_prompts
from tests.tiny_model import make_tiny_llama

VOCAB = 97
LAYERS = 4
REQUEST = HiddenStateRequest(layer_inputs=(0, 2, 3), final=True)


@pytest.fixture(scope="module")
def model():
    return make_tiny_llama(vocab_size=VOCAB, seed=0, layers=LAYERS)


class Recorder(RandomTreeDrafter):
    """Random trees (the true continuation planted, so paths get accepted) that keep every
    hidden state the engine hands over."""

    hidden_state_request = REQUEST

    def begin(self, prompt_ids, session):
        super().begin(prompt_ids, session)
        self.prompt = list(prompt_ids)
        self.prompt_features = session.prompt_features
        self.steps = []

    def accept(self, step):
        root = step.context[len(step.context) - len(step.committed) - 1]
        prefix = step.context[: len(step.context) - len(step.committed) - 1]
        self.steps.append((prefix, root, step.tree, step.features, step.logits))


class PassThrough(torch.nn.Module):
    """A wrapper without ``get_decoder``: the capture must fall back to output_hidden_states."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, **kwargs):
        return self.inner(**kwargs)


def full_forward(model, tokens):
    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states


def check_rows(model, recorder):
    # The prompt: rows for prompt[:-1] (what the engine prefilled).
    if len(recorder.prompt) > 1:
        hs = full_forward(model, recorder.prompt[:-1])
        torch.testing.assert_close(recorder.prompt_features.final, hs[-1][0], rtol=1e-9, atol=1e-9)
        for i in REQUEST.layer_inputs:
            torch.testing.assert_close(recorder.prompt_features.layer_inputs[i], hs[i][0], rtol=1e-9, atol=1e-9)
    trees = 0
    for prefix, root, tree, features, logits in recorder.steps:
        assert features.final.shape[0] == logits.shape[0] == len(tree) + 1
        paths = [[]] + [tree.path_to(i) for i in range(len(tree))]
        trees += not tree.is_chain()
        for row, path in enumerate(paths):
            tokens = prefix + [root] + tree.tokens[path].tolist()
            hs = full_forward(model, tokens)
            torch.testing.assert_close(features.final[row], hs[-1][0, -1], rtol=1e-9, atol=1e-9)
            for i in REQUEST.layer_inputs:
                torch.testing.assert_close(features.layer_inputs[i][row], hs[i][0, -1], rtol=1e-9, atol=1e-9)
    return trees


@pytest.mark.parametrize("wrapped,backend", [(False, "hf"), (True, "hf"), (False, "lean")],
                         ids=["hooks", "output_hidden_states", "lean"])
def test_rows_equal_a_separate_forward_for_chains_and_trees(model, wrapped, backend):
    engine = SpeculativeEngine(PassThrough(model) if wrapped else model, backend=backend)
    config = DecodingConfig(max_new_tokens=12)
    trees = 0
    for i, prompt in enumerate(random_prompts(3, VOCAB, seed=11)):
        expected = baseline(SpeculativeEngine(model), prompt, config)
        recorder = Recorder(VOCAB, seed=i, oracle=expected, max_nodes=6)
        got, stats = engine.generate(prompt, recorder, config)
        assert got == expected
        trees += check_rows(model, recorder)
    assert trees > 0  # trees, not only chains, were checked


def test_hooks_are_used_and_removed(model):
    engine = SpeculativeEngine(model)
    norm, layer = model.model.norm, model.model.layers[2]
    seen = []

    def on_step(step):
        seen.append((len(norm._forward_hooks), len(layer._forward_pre_hooks)))

    recorder = Recorder(VOCAB, seed=0, max_nodes=3)
    engine.generate([5, 6, 7], recorder, DecodingConfig(max_new_tokens=4), on_step=on_step)
    assert seen and all(s == (1, 1) for s in seen)
    assert not norm._forward_hooks and not layer._forward_pre_hooks


def test_a_drafter_that_asks_for_nothing_gets_nothing_and_registers_no_hook(model):
    engine = SpeculativeEngine(model)
    steps = []

    def on_step(step):
        steps.append(step)
        assert not model.model.norm._forward_hooks
        assert not any(l._forward_pre_hooks for l in model.model.layers)

    engine.generate([5, 6, 7], VanillaDrafter(), DecodingConfig(max_new_tokens=3), on_step=on_step)
    assert steps and all(s.features is None for s in steps)


def test_a_drafter_asks_only_through_its_hidden_state_request():
    class Asking(VanillaDrafter):
        hidden_state_request = HiddenStateRequest(final=True)

    assert request_of(Asking()) == HiddenStateRequest(final=True)
    assert not request_of(VanillaDrafter())
    # The second, older spelling of the same request is gone from the contract.
    assert not hasattr(VanillaDrafter(), "wants_hidden_states")


def test_a_layer_index_out_of_range_is_refused(model):
    with pytest.raises(ValueError, match="layer"):
        HiddenStateCapture(model, HiddenStateRequest(layer_inputs=(LAYERS,)))
