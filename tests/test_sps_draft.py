"""SpS's trained draft model and its lean drafting: the artifact round trip and its refusals, the
default --drafter-path, losslessness through the engine on both backends, and the trainer recipe
(a few steps, and a resume that ends where an uninterrupted run ends)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

from methods.core.backends import native_kernels
from methods.core.drafter import DecodingConfig, DraftSession
from methods.core.engine import SpeculativeEngine
from methods.drafters import sps
from methods.drafters.sps import DraftModelDrafter, truncated_self_draft
from methods.drafters.vanilla import VanillaDrafter
from methods.heads import row_scores
from methods.heads.artifact import ArtifactError, BaseMismatchError
from methods.heads.sps_draft import (draft_with_layers, layers_from_target, load_sps_draft, save_sps_draft,
                                     spread_layers)
from tests.engine_helpers import baseline, random_prompts
from tests.test_acceptance import chi2_critical, chi2_statistic, exact_first_two
from tests.tiny_model import make_tiny_llama

VOCAB = 97


def perturbed_layers(model, sources, seed=7, scale=0.05):
    """Draft layers copied from the target's and nudged, so that the draft is not the target."""
    layers = layers_from_target(model, sources)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layers.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype))
    return layers


def saved_draft(model, folder, sources=(0, 3), **kw):
    layers = perturbed_layers(model, list(sources), **kw)
    save_sps_draft(folder, layers, model, "tiny-test-base", list(sources),
                   {"training": {"command": "python -m training.train_drafter --method sps ..."}})
    return layers


@pytest.fixture(scope="module")
def target():
    return make_tiny_llama(vocab_size=VOCAB, layers=4)


# ---------------------------------------------------------------------- the artifact
def test_a_saved_draft_holds_only_its_layers_and_loads_back_onto_the_target(target, tmp_path):
    layers = saved_draft(target, tmp_path / "draft")
    state = load_file(str(tmp_path / "draft" / "model.safetensors"))
    assert all(k.startswith(("model.layers.0.", "model.layers.1.")) for k in state)  # no embeddings, norm, head
    assert all(v.dtype == torch.float16 for v in state.values())
    config = json.loads((tmp_path / "draft" / "config.json").read_text())
    assert config["method"] == "sps" and config["num_hidden_layers"] == 2 and config["model_type"] == "llama"
    assert config["hidden_size"] == 32 and config["vocab_size"] == VOCAB and config["base_fingerprint"]["tensors"]
    meta = json.loads((tmp_path / "draft" / "metadata.json").read_text())
    assert meta["base_model"] == "tiny-test-base" and meta["layers_initialised_from"] == [0, 3]
    assert meta["training"]["command"].startswith("python -m training.train_drafter --method sps")

    draft = load_sps_draft(tmp_path / "draft", target)
    assert len(draft.model.layers) == 2 and draft.config.num_hidden_layers == 2
    # The target's shared tensors are attached, not copied; the target keeps its own layers.
    assert draft.lm_head is target.lm_head and draft.model.embed_tokens is target.model.embed_tokens
    assert draft.model.norm is target.model.norm and len(target.model.layers) == 4
    assert not any(p.requires_grad for p in draft.model.layers.parameters())
    ids = torch.tensor([[5, 9, 11, 40, 3]])
    expected = draft_with_layers(target, layers.half().double())(input_ids=ids).logits
    assert torch.allclose(draft(input_ids=ids).logits, expected, atol=1e-9)


def test_a_draft_for_another_hidden_size_vocabulary_or_base_is_refused(target, tmp_path):
    saved_draft(target, tmp_path / "draft")
    other_base = make_tiny_llama(vocab_size=VOCAB, layers=4, seed=1)
    with pytest.raises(BaseMismatchError, match="another base"):
        load_sps_draft(tmp_path / "draft", other_base)
    other_vocab = make_tiny_llama(vocab_size=VOCAB + 3, layers=4)
    with pytest.raises(BaseMismatchError, match="vocab_size 97, this target has 100"):
        load_sps_draft(tmp_path / "draft", other_vocab)
    config = json.loads((tmp_path / "draft" / "config.json").read_text())
    (tmp_path / "wide").mkdir()
    (tmp_path / "wide" / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    with pytest.raises(BaseMismatchError, match="hidden_size 48, this target has 32"):
        load_sps_draft(tmp_path / "wide", target)
    (tmp_path / "eagle").mkdir()
    (tmp_path / "eagle" / "config.json").write_text(json.dumps({"method": "eagle"}))
    with pytest.raises(ArtifactError, match="not an SpS draft"):
        load_sps_draft(tmp_path / "eagle", target)


def test_draft_layers_start_from_the_first_and_the_last_target_layer():
    assert spread_layers(30, 2) == [0, 29]
    assert spread_layers(30, 3) == [0, 14, 29] or spread_layers(30, 3) == [0, 15, 29]
    assert spread_layers(30, 1) == [0]
    with pytest.raises(ValueError):
        spread_layers(4, 5)


# ---------------------------------------------------------------------- the default --drafter-path
def test_the_embedded_model_defaults_to_the_shipped_draft_else_self_8(tmp_path, monkeypatch):
    args = argparse.Namespace(model_path="embedded", drafter_path=None)
    monkeypatch.setattr(sps, "shipped_draft", lambda: tmp_path / "missing")
    assert sps.default_drafter_path(args) == "self:8"
    monkeypatch.setattr(sps, "shipped_draft", lambda: tmp_path / "sps")
    saved_draft(make_tiny_llama(vocab_size=VOCAB, layers=4), tmp_path / "sps")
    assert sps.default_drafter_path(args) == str(tmp_path / "sps")
    # A given path wins; another model has no default.
    assert sps.default_drafter_path(argparse.Namespace(model_path="embedded", drafter_path="self:2")) == "self:2"
    other = argparse.Namespace(model_path=str(tmp_path), drafter_path=None)
    assert sps.default_drafter_path(other) is None
    with pytest.raises(ValueError, match="needs --drafter-path"):
        DraftModelDrafter.check_args(argparse.Namespace(model_path=str(tmp_path), drafter_path=None, sps_gamma=None))


def test_a_trained_draft_folder_given_as_drafter_path_is_loaded_and_recorded(target, tmp_path):
    saved_draft(target, tmp_path / "draft")
    args = argparse.Namespace(model_path="some-model", drafter_path=str(tmp_path / "draft"), sps_gamma=2,
                              sps_schedule="constant")
    drafter = DraftModelDrafter.from_args(args, target, None)
    assert len(drafter.draft_model.model.layers) == 2 and drafter.draft_model.lm_head is target.lm_head
    assert drafter.params() == {"drafter": str(tmp_path / "draft"), "gamma": 2, "schedule": "constant",
                                "draft_vocab": None}
    # The shipped draft is recorded by its repository path, the same on every machine.
    assert sps.recorded_path(str(sps.shipped_draft())) == "data/drafters/smollm2-135m-instruct/sps"


# ---------------------------------------------------------------------- drafting through the engine
@pytest.mark.parametrize("backend", ["hf", "lean"])
@pytest.mark.parametrize("draft", ["trained", "self:2"])
def test_sps_greedy_output_is_the_baseline_on_both_backends(target, tmp_path, backend, draft):
    if draft == "trained":
        saved_draft(target, tmp_path / "draft")
        drafter = DraftModelDrafter(load_sps_draft(tmp_path / "draft", target), gamma=3)
    else:
        drafter = DraftModelDrafter(truncated_self_draft(target, 2), gamma=3)
    engine = SpeculativeEngine(target, backend=backend)
    config = DecodingConfig(max_new_tokens=30)
    longest = 1
    for prompt in random_prompts(6, VOCAB, seed=12):
        got, stats = engine.generate(prompt, drafter, config)
        assert got == baseline(engine, prompt, config)
        longest = max(longest, max(stats.accept_lengths))
    assert (drafter.lean is not None) == (backend == "lean")  # the draft runs the way the target does
    assert longest > 1, "no draft was ever accepted: the test proves nothing"


def session(model, backend, temperature=0.0, seed=0):
    config = DecodingConfig(temperature=temperature)
    generator = torch.Generator().manual_seed(seed) if temperature else None
    return DraftSession(model=model, config=config, device=torch.device("cpu"), dtype=torch.float64,
                        vocab_size=VOCAB, generator=generator, backend=backend)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_lean_drafting_gives_the_draft_models_argmax_and_its_q(target, tmp_path, temperature):
    """The same drafts and probabilities on both paths, across steps that crop the draft cache."""
    saved_draft(target, tmp_path / "draft")
    draft = load_sps_draft(tmp_path / "draft", target)
    lean, hf = DraftModelDrafter(draft, gamma=4), DraftModelDrafter(draft, gamma=4)
    prompt = [3, 14, 15, 92, 65, 35]
    lean.begin(prompt, session(target, "lean", temperature))
    hf.begin(prompt, session(target, "hf", temperature))
    context = list(prompt)
    for step in range(5):
        a, b = lean.propose(context, 8), hf.propose(context, 8)
        assert a.tokens.tolist() == b.tokens.tolist()
        if temperature:
            assert torch.allclose(a.draft_probs, b.draft_probs, atol=1e-12)
        else:
            with torch.inference_mode():  # greedy: the draft model's own argmax, token by token
                logits = draft(input_ids=torch.tensor([context + a.tokens.tolist()])).logits[0]
            assert a.tokens.tolist() == logits[len(context) - 1:-1].argmax(-1).tolist()
        context = context + a.tokens.tolist()[: step % 3] + [(7 * step + 1) % VOCAB]  # accept some, then differ
        for drafter in (lean, hf):
            drafter.accept(argparse.Namespace(context=context, tree=a, accepted_nodes=[]))
    lean.end(), hf.end()


def layers_in_half(draft):
    """A copy of ``draft`` whose decoder layers' matrices are rounded to float16 (and back): what
    its native layers read while drafting (methods/core/backends/half_weights.py)."""
    import copy

    rounded = copy.deepcopy(draft)
    with torch.no_grad():
        for layer in rounded.model.layers:
            for module in (*layer.self_attn.children(), *layer.mlp.children()):
                if isinstance(module, torch.nn.Linear):
                    module.weight.copy_(module.weight.half().float())
    return rounded


@pytest.mark.parametrize("weights", ["float16", "float32"])
def test_lean_draft_steps_in_float32_match_the_transformers_draft(weights, monkeypatch):
    """The draft's lean steps (the native layer where it builds, torch ops elsewhere) give the
    transformers forward's last-row logits, over a prefill and single-token steps. While drafting
    the native layers read half-precision copies of their matrices (``float16``, the default): the
    reference is then the draft with those matrices rounded; with SDBENCH_DRAFT_WEIGHTS=float32, the
    draft itself."""
    monkeypatch.setattr(row_scores, "DRAFT_WEIGHTS", weights)
    model = make_tiny_llama(vocab_size=VOCAB, layers=4, dtype=torch.float32)
    draft = draft_with_layers(model, perturbed_layers(model, [0, 3]))
    runner = sps.lean_draft(draft)
    reference = layers_in_half(draft) if weights == "float16" and runner.fused else draft
    cache, ids = runner.new_cache(), [5, 9, 11, 40, 3, 77, 12]
    got = [runner.extend(cache, ids[:4])] + [runner.extend(cache, [t]) for t in ids[4:]]
    with torch.inference_mode():
        want = reference(input_ids=torch.tensor([ids])).logits[0, 3:]
    assert torch.allclose(torch.stack(got), want, atol=1e-4)
    assert cache.length == len(ids) and len(cache.keys) == 2


def test_sampled_sps_with_a_lean_trained_draft_follows_the_target_distribution(tmp_path):
    model = make_tiny_llama(vocab_size=7, seed=3, layers=2)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.15)  # flat logits: every pair of first two tokens gets samples
    layers = perturbed_layers(model, [0], scale=0.5)
    save_sps_draft(tmp_path / "draft", layers, model, "tiny", [0], {})
    drafter = DraftModelDrafter(load_sps_draft(tmp_path / "draft", model), gamma=2)
    engine = SpeculativeEngine(model, backend="lean")
    config = DecodingConfig(max_new_tokens=2, temperature=1.0)
    prompt, draws = [3, 4, 5], 2000
    counts = Counter(tuple(engine.generate(prompt, drafter, config, seed=i)[0]) for i in range(draws))
    assert drafter.lean is not None
    stat, df = chi2_statistic(counts, exact_first_two(model, prompt, config), draws)
    assert stat < chi2_critical(df), (stat, df)


# ---------------------------------------------------------------------- a draft vocabulary
DRAFT_VOCAB = torch.tensor([2, 3, 5, 8, 13, 21, 34, 40, 55, 77, 89])


def test_a_draft_vocabulary_is_stored_loaded_and_refused_when_it_names_ids_the_target_lacks(target, tmp_path):
    layers = perturbed_layers(target, [0, 3])
    save_sps_draft(tmp_path / "draft", layers, target, "tiny", [0, 3], {}, draft_vocab=DRAFT_VOCAB)
    state = load_file(str(tmp_path / "draft" / "model.safetensors"))
    assert torch.equal(state["draft_vocab"], DRAFT_VOCAB) and state["draft_vocab"].dtype == torch.int64
    assert json.loads((tmp_path / "draft" / "config.json").read_text())["draft_vocab_size"] == len(DRAFT_VOCAB)
    assert torch.equal(load_sps_draft(tmp_path / "draft", target).draft_vocab, DRAFT_VOCAB)
    assert load_sps_draft(tmp_path / "draft", target).lm_head is target.lm_head  # still shared, not cut

    save_sps_draft(tmp_path / "bad", layers, target, "tiny", [0, 3], {}, draft_vocab=torch.tensor([1, VOCAB]))
    with pytest.raises(ArtifactError, match="outside the target's vocabulary"):
        load_sps_draft(tmp_path / "bad", target)


def test_a_restricted_lean_output_gives_the_full_logits_columns_of_those_ids():
    model = make_tiny_llama(vocab_size=VOCAB, layers=2, dtype=torch.float32)
    full, cut = sps.lean_draft(model), sps.lean_draft(model)
    cut.restrict_output(DRAFT_VOCAB)
    ids = [5, 9, 11, 40, 3]
    a, b = full.extend(full.new_cache(), ids), cut.extend(cut.new_cache(), ids)
    assert b.shape == (len(DRAFT_VOCAB),)
    assert torch.allclose(b, a[DRAFT_VOCAB], atol=1e-5)
    assert full.extend(full.new_cache(), ids).shape == (VOCAB,)  # the other runner is untouched


@pytest.mark.skipif(native_kernels.load() is None, reason="no native library on this machine")
def test_a_restricted_draft_output_is_scored_on_the_half_precision_rows_while_drafting(monkeypatch):
    model = make_tiny_llama(vocab_size=VOCAB, layers=2, dtype=torch.float32)
    full = sps.lean_draft(model)
    model.draft_vocab = DRAFT_VOCAB  # what a trained draft with a draft vocabulary has
    cut = sps.lean_draft(model)
    full.half_layers = cut.half_layers = None  # float32 layers: only the output rows differ here
    ids = [5, 9, 11, 40, 3]
    a = full.extend(full.new_cache(), ids)[DRAFT_VOCAB]
    half = cut.extend(cut.new_cache(), ids)  # extend runs in inference mode: the float16 rows
    assert not torch.equal(half, a) and torch.allclose(half, a, atol=2e-3, rtol=2e-3)
    monkeypatch.setattr(row_scores, "DRAFT_WEIGHTS", "float32")
    assert torch.allclose(cut.extend(cut.new_cache(), ids), a, atol=1e-5)


@pytest.mark.parametrize("backend", ["hf", "lean"])
def test_a_draft_with_a_draft_vocabulary_proposes_only_its_ids_and_stays_lossless(target, tmp_path, backend):
    layers = perturbed_layers(target, [0, 3], scale=0.02)
    save_sps_draft(tmp_path / "draft", layers, target, "tiny", [0, 3], {}, draft_vocab=DRAFT_VOCAB)
    drafter = DraftModelDrafter(load_sps_draft(tmp_path / "draft", target), gamma=3)
    assert drafter.params()["draft_vocab"] == len(DRAFT_VOCAB)
    proposed = []
    original = drafter.propose

    def recording(context, max_depth):
        tree = original(context, max_depth)
        proposed.extend(tree.tokens.tolist())
        return tree

    drafter.propose = recording
    engine = SpeculativeEngine(target, backend=backend)
    config = DecodingConfig(max_new_tokens=30)
    for prompt in random_prompts(6, VOCAB, seed=12):
        assert engine.generate(prompt, drafter, config)[0] == baseline(engine, prompt, config)
    assert proposed and set(proposed) <= set(DRAFT_VOCAB.tolist())


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_lean_and_transformers_drafting_agree_over_a_draft_vocabulary(target, tmp_path, temperature):
    save_sps_draft(tmp_path / "draft", perturbed_layers(target, [0, 3]), target, "tiny", [0, 3], {},
                   draft_vocab=DRAFT_VOCAB)
    draft = load_sps_draft(tmp_path / "draft", target)
    lean, hf = DraftModelDrafter(draft, gamma=4), DraftModelDrafter(draft, gamma=4)
    prompt = [3, 14, 15, 92, 65, 35]
    lean.begin(prompt, session(target, "lean", temperature))
    hf.begin(prompt, session(target, "hf", temperature))
    a, b = lean.propose(prompt, 8), hf.propose(prompt, 8)
    assert a.tokens.tolist() == b.tokens.tolist()
    if temperature:
        # q is a distribution over every id, zero outside the draft vocabulary.
        assert a.draft_probs.shape == (4, VOCAB) and torch.allclose(a.draft_probs, b.draft_probs, atol=1e-12)
        outside = torch.ones(VOCAB, dtype=torch.bool)
        outside[DRAFT_VOCAB] = False
        assert torch.all(a.draft_probs[:, outside] == 0)
        assert torch.allclose(a.draft_probs.sum(-1), torch.ones(4, dtype=a.draft_probs.dtype))
    lean.end(), hf.end()


def test_sampled_sps_over_a_draft_vocabulary_follows_the_target_distribution(tmp_path):
    """The draft can never propose ids 0, 3 and 6: the target must still sample them as often as
    its own distribution says (the residual distribution carries them)."""
    model = make_tiny_llama(vocab_size=7, seed=3, layers=2)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.15)
    save_sps_draft(tmp_path / "draft", perturbed_layers(model, [0], scale=0.5), model, "tiny", [0], {},
                   draft_vocab=torch.tensor([1, 2, 4, 5]))
    drafter = DraftModelDrafter(load_sps_draft(tmp_path / "draft", model), gamma=2)
    engine = SpeculativeEngine(model, backend="lean")
    config = DecodingConfig(max_new_tokens=2, temperature=1.0)
    prompt, draws = [3, 4, 5], 2000
    counts = Counter(tuple(engine.generate(prompt, drafter, config, seed=i)[0]) for i in range(draws))
    stat, df = chi2_statistic(counts, exact_first_two(model, prompt, config), draws)
    assert stat < chi2_critical(df), (stat, df)
    assert any(t in (0, 3, 6) for pair in counts for t in pair)


# ---------------------------------------------------------------------- the trainer recipe
def train_args(folder, corpus, out, *extra):
    return ["--method", "sps", "--model-path", str(folder), "--corpus", str(corpus), "--out", str(out),
            "--epochs", "2", "--batch-size", "32", "--lr", "1e-3", "--sps-eval-gamma", "3", "--no-progress", *extra]


def test_the_recipe_trains_a_few_steps_and_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch):
    from tests.test_inference import VOCAB as TINY_VOCAB
    from tests.test_train_drafter import interrupt_then_resume, tiny_training_setup
    from training.recipes.sps import SpsRecipe
    from training.train_drafter import main

    folder, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(folder, corpus, straight, "--checkpoint-minutes", "0")) == 0

    config = json.loads((straight / "config.json").read_text())
    assert config["method"] == "sps" and config["num_hidden_layers"] == 2
    meta = json.loads((straight / "metadata.json").read_text())
    assert meta["layers_initialised_from"] == [0, 1] and "--method sps" in meta["training"]["command"]
    # The draft vocabulary: the training split's answer tokens (the tiny corpus has fewer than the default).
    vocab = load_file(str(straight / "model.safetensors"))["draft_vocab"]
    assert 0 < len(vocab) == config["draft_vocab_size"] <= TINY_VOCAB and 0 < meta["draft_vocab_coverage"] <= 1
    epochs = meta["metrics"]["heldout"]
    assert len(epochs) == 2 and all(len(e["top1"]) == 3 for e in epochs)
    last = epochs[-1]
    assert 1 >= last["top1"][0] >= last["top1"][1] >= last["top1"][2] >= 0 and last["positions"][0] > 0
    assert last["mean_accepted"] == pytest.approx(1 + sum(last["top1"]), abs=1e-3)
    assert "mean accepted" in (straight / "README.md").read_text()

    # Crash on the first step of the second epoch.
    steps_per_epoch = meta["training"]["steps"] // 2
    interrupt_then_resume(monkeypatch, SpsRecipe, main, train_args(folder, corpus, resumed), steps_per_epoch + 1,
                          ["--sps-layers", "1"])
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    resumed_meta = json.loads((resumed / "metadata.json").read_text())
    assert resumed_meta["metrics"] == meta["metrics"] and "--resume" not in resumed_meta["training"]["command"]

    # The trained draft drafts losslessly for its base.
    drafter = DraftModelDrafter(load_sps_draft(straight, loaded.model), gamma=3)
    engine = SpeculativeEngine(loaded.model)
    decoding = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(3, TINY_VOCAB, seed=50):
        assert engine.generate(prompt, drafter, decoding)[0] == engine.generate(prompt, VanillaDrafter(), decoding)[0]


def test_the_runner_answers_with_a_trained_draft_on_the_lean_backend_as_the_baseline_does(tmp_path):
    from methods.core.model_loading import load_model
    from tests.test_inference import read, run, save_tiny_model

    folder = save_tiny_model(tmp_path / "tiny")
    base = load_model(str(folder), dtype="float64", device="cpu").model
    saved_draft(base, tmp_path / "draft", sources=(0, 1))
    questions = tmp_path / "question.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "category": "qa", "turns": ["w5 w6 w7 w5 w6", "w9 w10"]}) + "\n")
    runs = {}
    for method, extra in [("vanilla", []), ("sps", ["--drafter-path", str(tmp_path / "draft")])]:
        answer = tmp_path / f"{method}.jsonl"
        assert run(folder, questions, answer, method, "--backend", "lean", *extra) == 0
        runs[method] = read(answer)[0]
    assert runs["sps"]["choices"][0]["token_ids"] == runs["vanilla"]["choices"][0]["token_ids"]
    assert runs["sps"]["method_params"]["drafter"] == str(tmp_path / "draft")
    assert runs["sps"]["environment"]["backend"] == "lean"
