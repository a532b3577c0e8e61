"""We call transformers only through APIs that the releases requirements.txt allows still have.

A deprecated keyword works until the release that removes it, then every run breaks; transformers
announces that with a FutureWarning (its DeprecationWarnings are hidden by pytest.ini's filter,
so this test records every warning itself, whatever the global filters say).
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.drafters.pld import PromptLookupDrafter
from methods.drafters.sps import DraftModelDrafter, truncated_self_draft
from methods.drafters.vanilla import VanillaDrafter
from tests.engine_helpers import RandomTreeDrafter, random_prompts
from tests.tiny_model import make_tiny_llama

VOCAB = 97
REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"


def deprecations(caught) -> list[str]:
    return [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught
            if issubclass(w.category, (FutureWarning, DeprecationWarning))]


def test_forward_calls_of_engine_and_drafters_emit_no_deprecation():
    model = make_tiny_llama(vocab_size=VOCAB, seed=0, layers=3)
    prompt = random_prompts(1, VOCAB, seed=3)[0]
    config = DecodingConfig(max_new_tokens=12)
    drafters = [VanillaDrafter(), PromptLookupDrafter(max_ngram=2, num_pred=3),
                RandomTreeDrafter(VOCAB, seed=1),  # custom 4D masks (tree verification)
                DraftModelDrafter(truncated_self_draft(model, 1), gamma=2)]  # the draft model's cache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every occurrence, even if pytest.ini ignores the category
        engine = SpeculativeEngine(model)
        engine.supports_tree_attention()
        for drafter in drafters:
            engine.generate(prompt, drafter, config)
            engine.generate(prompt, drafter, DecodingConfig(max_new_tokens=12, temperature=0.8), seed=1)
    assert not deprecations(caught), "\n".join(deprecations(caught))


def test_installed_transformers_is_inside_the_tested_range():
    """requirements.txt's range ends at the newest release the suite was run on; CI installs the
    newest release inside it, so this test sees the top of the range there."""
    lines = [line for line in REQUIREMENTS.read_text().splitlines()
             if re.match(r"transformers\b", line.strip())]
    assert len(lines) == 1, lines
    requirement = Requirement(lines[0])
    assert any(spec.operator == "<" for spec in requirement.specifier), \
        f"{lines[0]!r}: cap the range at the newest tested release"
    assert requirement.specifier.contains(version("transformers"), prereleases=True), \
        f"transformers {version('transformers')} is outside requirements.txt's {requirement.specifier}"
