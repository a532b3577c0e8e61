"""Draft layers on the lean backend's native layer (methods/heads/native_layers.py).

1. The native EAGLE and EAGLE-3 draft forwards (and Hydra++'s prefix layer) equal their torch
   forwards up to float32 rounding: several layers, grouped-query attention, with and without an
   input norm on layer 0, q/k/v biases, over a cache of committed pairs and with tree entries that
   see only their ancestors; with the library built for this CPU and its AVX2 version.
2. Drafting on the engine takes the native path where the library is built and the draft is
   float32 on the CPU, and the output stays the baseline's.
3. Where the library is missing, or the draft is not float32, the torch path runs instead.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from methods.core.backends import native_kernels
from methods.core.backends.lean import SKINNY_MAX_ROWS
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.drafters.dflash import DFlashDrafter
from methods.drafters.eagle import EagleDrafter
from methods.drafters.eagle2 import Eagle2Drafter
from methods.drafters.eagle3 import Eagle3Drafter
from methods.drafters.eagle_state import PairTracker, TreeExpansion
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.dflash import DFlashDraftModel, DFlashShape
from methods.heads.eagle import DraftCache, EagleDraftModel, EagleShape, RMSNorm
from methods.heads.eagle3 import Eagle3DraftModel, Eagle3Shape
from methods.drafters.hydra import HydraDrafter
from methods.heads.hydra import PrefixCache, PrefixLayer, load_hydra
from methods.heads import row_scores
from methods.heads.native_layers import NativeDFlashDraft, NativePrefixLayer, native_dflash, native_draft
from tests import test_hydra
from tests.engine_helpers import baseline, random_prompts, run_turns
from tests.test_lean_native import library_version  # noqa: F401  (a fixture: the native and AVX2 builds)

VOCAB = 97
HIDDEN = 32

needs_native = pytest.mark.skipif(native_kernels.load() is None,
                                  reason=f"native kernel unavailable: {native_kernels.why_not()}")

EAGLE_SHAPES = {  # GQA groups 2 and 3, head sizes 8 and 16 (16 * 6 heads is wider than the stream)
    "gqa2-hd8-3layers": EagleShape(HIDDEN, 48, 4, 2, 8, num_layers=3),
    "gqa3-hd16-2layers-bias": EagleShape(HIDDEN, 40, 6, 2, 16, num_layers=2, attention_bias=True, fc_bias=False),
}
EAGLE3_SHAPE = dict(vocab_size=VOCAB, draft_vocab_size=VOCAB)
# name -> (draft class, shape, layer 0 given an input norm)
DRAFTS = {
    "eagle-gqa2-hd8-3layers": (EagleDraftModel, EAGLE_SHAPES["gqa2-hd8-3layers"], False),
    "eagle-gqa2-hd8-3layers-layer0-norm": (EagleDraftModel, EAGLE_SHAPES["gqa2-hd8-3layers"], True),
    "eagle-gqa3-hd16-2layers-bias": (EagleDraftModel, EAGLE_SHAPES["gqa3-hd16-2layers-bias"], False),
    "eagle-gqa3-hd16-2layers-bias-layer0-norm": (EagleDraftModel, EAGLE_SHAPES["gqa3-hd16-2layers-bias"], True),
    "eagle3-gqa2-hd8": (Eagle3DraftModel, Eagle3Shape(HIDDEN, 48, 4, 2, 8, **EAGLE3_SHAPE), False),
    "eagle3-gqa3-hd16-bias-norm-before-residual": (
        Eagle3DraftModel, Eagle3Shape(HIDDEN, 40, 6, 2, 16, attention_bias=True, norm_before_residual=True,
                                      **EAGLE3_SHAPE), False),
}


@pytest.fixture(scope="module")
def target():
    torch.manual_seed(5)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(6.0)
    return model


def random_draft(model, name: str, seed: int = 0):
    """A float32 draft of ``DRAFTS[name]`` with random weights, bound to ``model``; layer 0 may be
    given the input norm that EAGLE's published layout leaves out."""
    kind, shape, layer0_norm = DRAFTS[name]
    torch.manual_seed(seed)
    draft = kind(shape)
    if layer0_norm:
        draft.layers[0].input_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
    return randomised_float32(draft, model)


def randomised_float32(draft, model):
    """``draft`` with random weights (matrices around 0, norm weights and biases around 1, so that
    every norm is really applied), in float32 and bound to ``model``."""
    with torch.no_grad():
        for p in draft.parameters():
            p.normal_(0, 0.25) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    draft.float().eval()
    draft.bind(model)
    return draft


def feature_width(draft) -> int:
    """The width of a real pair's feature: EAGLE's fc reads [embedding, feature], EAGLE-3's the
    three fused target features."""
    return draft.fc.in_features - (HIDDEN if isinstance(draft, EagleDraftModel) else 0)


def float64_copy(draft, model):
    """The same draft in float64, bound to ``model``: the reference both float32 paths are held to."""
    exact = copy.deepcopy(draft).double()
    exact.bind(model)
    return exact


def assert_as_exact_as_torch(native: list, torch32: list, exact: list):
    """The native path's float32 results are as close to the float64 reference as torch's float32
    results are (within twice their error, or 2e-6 of the largest value). The two paths round in
    other orders (and lean_ops.c's exp is a polynomial); over a few layers, softmaxes and tree
    depths of random weights either moves results by some 1e-6 of the largest value, so a direct
    native-vs-torch tolerance would only say how well conditioned the random draft is."""
    native, torch32, exact = (torch.cat([t.detach().double().flatten() for t in ts]) for ts in (native, torch32, exact))
    scale = float(exact.abs().max())
    native_error, torch_error = float((native - exact).abs().max()), float((torch32 - exact).abs().max())
    assert native_error <= 2 * torch_error + 2e-6 * scale, (native_error, torch_error, scale)


def trackers(draft, model, prompt, features):
    """Three pair trackers over the same prompt: the draft on the native path and on torch ops, and
    its float64 copy (torch ops)."""
    native, torch_ops, exact = PairTracker(draft), PairTracker(draft), PairTracker(float64_copy(draft, model))
    for tracker in (native, torch_ops, exact):
        dtype = tracker.draft.fc.weight.dtype
        tracker.begin(prompt, features.to(dtype), torch.device("cpu"), dtype)
    torch_ops.native = None
    assert native.native is not None and exact.native is None
    return native, torch_ops, exact


def cache_rows(cache, rows: int) -> list[torch.Tensor]:
    return [t[:, :rows] for t in (*cache.keys, *cache.values)]


# ---------------------------------------------------------------------------------- the forward
@needs_native
@pytest.mark.parametrize("name", DRAFTS)
def test_native_forward_equals_one_causal_torch_pass(target, name, library_version):
    """Pairs fed in three blocks against the cache give what one causal torch pass gives."""
    draft = random_draft(target, name)
    exact_draft = float64_copy(draft, target)
    native = native_draft(draft)
    assert native is not None
    gen = torch.Generator().manual_seed(1)
    n = 11
    features = torch.randn(n, feature_width(draft), generator=gen)
    tokens = torch.randint(3, VOCAB, (n,), generator=gen)
    causal = torch.ones(n, n, dtype=torch.bool).tril()[None]
    with torch.no_grad():
        full, kv = draft(features[None], draft.embed(tokens)[None], torch.arange(n)[None], None, causal)
        exact, exact_kv = exact_draft(features[None].double(), exact_draft.embed(tokens)[None], torch.arange(n)[None],
                                      None, causal)
    cache = DraftCache(draft.shape, torch.device("cpu"), torch.float32, capacity=4)  # grows twice
    outs = []
    for start, end in ((0, 5), (5, 6), (6, n)):
        m = end - start
        outs.append(native.run(cache, features[start:end], draft.embed(tokens[start:end]), torch.arange(start, end),
                               start, torch.ones(m, m, dtype=torch.bool).tril()))
        cache.length = end
    flat = lambda kv: [t[0] for layer in kv for t in layer]  # noqa: E731
    assert_as_exact_as_torch([torch.cat(outs), *[t[:, :n] for layer in zip(cache.keys, cache.values) for t in layer]],
                             [full[0], *flat(kv)], [exact[0], *flat(exact_kv)])


@needs_native
@pytest.mark.parametrize("name", DRAFTS)
def test_native_tree_entries_equal_the_torch_paths(target, name, library_version):
    """Catch-up over a prompt and a step's pairs, then three depths of tree entries (siblings,
    cousins, a chain) after the committed pairs: the native and torch paths agree on every output
    and every cache row, and the entries of one step are overwritten by the next step's pairs."""
    draft = random_draft(target, name, seed=2)
    gen = torch.Generator().manual_seed(3)
    prompt = torch.randint(3, VOCAB, (8,), generator=gen).tolist()
    paths = trackers(draft, target, prompt, torch.randn(7, feature_width(draft), generator=gen))
    results = [[], [], []]  # per path: every output and cache row, in the same order
    plan = [([-1, -1, -1], [5, 6, 7], 1), ([0, 0, 2], [8, 9, 10], 2), ([4], [11], 3)]
    for step in range(2):
        for tracker, got in zip(paths, results):
            assert tracker.catch_up()
            got.append(tracker.last_output)
            expansion, seen = TreeExpansion(tracker.draft, tracker), {-1: tracker.last_output}
            for parents, tokens, depth in plan:
                out = expansion.run(torch.stack([seen[p] for p in parents]), parents, torch.tensor(tokens), depth)
                seen.update({len(expansion) - len(tokens) + j: out[j] for j in range(len(tokens))})
                got.append(out)
            got.extend(cache_rows(tracker.cache, tracker.n_pairs + len(expansion)))
            rows = torch.randn(3, feature_width(draft), generator=torch.Generator().manual_seed(step))
            tracker.add_step(rows.to(tracker.draft.fc.weight.dtype), [20 + step, 21, 22])  # over the entries' rows
    for tracker, got in zip(paths, results):
        assert tracker.catch_up()
        got.extend(cache_rows(tracker.cache, tracker.n_pairs))
    assert_as_exact_as_torch(*results)
    native, torch_ops, _ = paths
    assert native.passes["torch"] == 0 and native.passes["native"] > 0 and torch_ops.passes["native"] == 0


@needs_native
def test_a_long_catch_up_runs_on_torch_ops_and_later_steps_natively(target):
    """More rows than the native kernel is used for go through the draft's torch module (as the
    lean target's long prefills do); the cache they leave is the one the native steps continue."""
    draft = random_draft(target, "eagle-gqa2-hd8-3layers", seed=4)
    gen = torch.Generator().manual_seed(5)
    n = SKINNY_MAX_ROWS + 10
    prompt = torch.randint(3, VOCAB, (n + 1,), generator=gen).tolist()
    paths = trackers(draft, target, prompt, torch.randn(n, HIDDEN, generator=gen))
    rows = torch.randn(2, HIDDEN, generator=gen)
    for tracker in paths:
        assert tracker.catch_up()
        if tracker is paths[0]:
            assert tracker.passes == {"native": 0, "torch": 1}
        tracker.add_step(rows.to(tracker.draft.fc.weight.dtype), [30, 31])
        assert tracker.catch_up()
    assert paths[0].passes == {"native": 1, "torch": 1}
    assert_as_exact_as_torch(*([t.last_output, *cache_rows(t.cache, t.n_pairs)] for t in paths))


def layers_rounded_to_half(draft, model):
    """A copy of ``draft`` whose decoder layers' matrices (attention and MLP) and fc are rounded
    to float16 and back, bound to ``model``: what its native layers read while drafting."""
    rounded = copy.deepcopy(draft)
    with torch.no_grad():
        for name, module in rounded.named_modules():
            if isinstance(module, torch.nn.Linear) and (".self_attn." in name or ".mlp." in name or name == "fc"):
                module.weight.copy_(module.weight.half().float())
    rounded.bind(model)
    return rounded


@needs_native
@pytest.mark.parametrize("name", DRAFTS)
def test_while_drafting_the_layers_read_their_half_copies_exactly(target, name, monkeypatch, library_version):
    """In inference mode (the engine drafting) the native layers read half-precision copies of
    their matrices: bit for bit what float32 layers holding the rounded weights give, and not what
    the float32 weights give. SDBENCH_DRAFT_WEIGHTS=float32 turns it off."""
    draft = random_draft(target, name, seed=6)
    rounded = layers_rounded_to_half(draft, target)
    gen = torch.Generator().manual_seed(7)
    n = 6
    features = torch.randn(n, feature_width(draft), generator=gen)
    tokens = torch.randint(3, VOCAB, (n,), generator=gen)

    def run(model):
        cache = DraftCache(model.shape, torch.device("cpu"), torch.float32)
        with torch.inference_mode():
            out = native_draft(model).run(cache, features, model.embed(tokens), torch.arange(n), 0,
                                          torch.ones(n, n, dtype=torch.bool).tril())
        return [out, *cache_rows(cache, n)]

    drafting = run(draft)
    monkeypatch.setattr(row_scores, "DRAFT_WEIGHTS", "float32")
    float32, reference = run(draft), run(rounded)
    assert all(torch.equal(a, b) for a, b in zip(drafting, reference))
    assert not torch.equal(drafting[0], float32[0])


# ---------------------------------------------------------------------------------- on the engine
@needs_native
@pytest.mark.parametrize("method", ["eagle", "eagle2", "eagle3"])
def test_eagle_drafts_natively_on_the_engine_and_keeps_the_baseline_output(target, method):
    engine = SpeculativeEngine(target, backend="lean")
    draft = random_draft(target, "eagle3-gqa2-hd8" if method == "eagle3" else "eagle-gqa2-hd8-3layers", seed=6)
    drafter = {"eagle": lambda: EagleDrafter(draft, choices=[[0], [1], [0, 0], [0, 1], [0, 0, 0]]),
               "eagle2": lambda: Eagle2Drafter(draft, total_token=8, depth=3, top_k=3),
               "eagle3": lambda: Eagle3Drafter(draft, total_token=8, depth=3, top_k=3)}[method]()
    config = DecodingConfig(max_new_tokens=20)
    for prompt in random_prompts(3, VOCAB, seed=7):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)
    assert drafter.tracker.passes["native"] > 10 and drafter.tracker.passes["torch"] == 0
    # The draft's weights (now views of the fused matrices) still train: not inference tensors.
    features, tokens = torch.randn(1, 4, feature_width(draft)), torch.randint(3, VOCAB, (4,))
    out, _ = draft(features, draft.embed(tokens)[None], torch.arange(4)[None], None,
                   torch.ones(4, 4, dtype=torch.bool).tril()[None])
    out.square().sum().backward()
    layers = draft.midlayer if method == "eagle3" else draft.layers
    assert draft.fc.weight.grad is not None and all(p.grad is not None for p in layers.parameters())


# ---------------------------------------------------------------------------------- Hydra++'s prefix layer
@needs_native
def test_native_prefix_layer_equals_its_torch_forward(target, library_version):
    """Hydra++'s prefix layer (GQA, bare norm weights, RoPE scaling) fed in three blocks: the
    native path's outputs and cache rows are the torch path's."""
    torch.manual_seed(10)
    prefix = PrefixLayer(target.config)
    with torch.no_grad():
        for p in prefix.parameters():
            p.normal_(0, 0.25) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    exact_prefix = copy.deepcopy(prefix).double()
    caches = prefix.new_cache(), PrefixCache(), PrefixCache()
    assert caches[0].native is not None
    features = torch.randn(9, HIDDEN, generator=torch.Generator().manual_seed(11))
    results = [[], [], []]
    for start, end in ((0, 4), (4, 5), (5, 9)):
        for layer, cache, got in zip((prefix, prefix, exact_prefix), caches, results):
            got.append(layer(features[start:end].to(layer.norm.dtype), cache))
    for cache, got in zip(caches, results):
        assert cache.length == 9
        got.extend(cache_rows(cache.store, 9))
    assert_as_exact_as_torch(*results)


@needs_native
def test_hydra_prefix_mlp_drafts_natively_on_the_engine_and_keeps_the_baseline_output(target, tmp_path, monkeypatch):
    runs = []
    real_run = NativePrefixLayer.run
    monkeypatch.setattr(NativePrefixLayer, "run", lambda self, *a: runs.append(1) or real_run(self, *a))
    heads = load_hydra(test_hydra.write_published(tmp_path / "prefix", heads=3, layers=2, declared=3,
                                                arch="prefix-mlp"), target)
    assert heads.dtype == torch.float32
    engine = SpeculativeEngine(target, backend="lean")
    drafter = HydraDrafter(heads, choices=[[0], [1], [0, 0], [0, 1], [0, 0, 0]])
    config = DecodingConfig(max_new_tokens=16)
    for prompt in random_prompts(3, VOCAB, seed=12):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)
    assert len(runs) > 10


# ---------------------------------------------------------------------------------- DFlash's block
DFLASH_SHAPES = {  # (heads, kv_heads, head size, layers, attention biases)
    "gqa2-hd8-2layers": (4, 2, 8, 2, False),
    "gqa3-hd16-bias": (6, 2, 16, 1, True),
}


def random_dflash(model, name: str, seed: int = 0) -> DFlashDraftModel:
    """A float32 DFlash draft of ``DFLASH_SHAPES[name]`` reading target layer 0's output, with
    random weights (norms around 1, so that the per-head q/k norms are really checked)."""
    heads, kv_heads, hd, layers, bias = DFLASH_SHAPES[name]
    shape = DFlashShape(hidden_size=HIDDEN, intermediate_size=48, num_attention_heads=heads,
                        num_key_value_heads=kv_heads, head_dim=hd, num_layers=layers, target_layer_ids=(0,),
                        block_size=5, mask_token_id=VOCAB - 1, vocab_size=VOCAB, attention_bias=bias)
    torch.manual_seed(seed)
    return randomised_float32(DFlashDraftModel(shape), model)


def dflash_blocks(draft, native_path, context: int = 9, block: int = 5, seed: int = 12):
    """The context rows of ``context`` committed positions (in two calls), then the block forward
    over them: the torch module's, or the native path's when ``native_path``; returns the block's
    outputs and the cache's context rows after it."""
    gen = torch.Generator().manual_seed(seed)
    dtype = draft.fc.weight.dtype
    features = torch.randn(1, context, draft.shape.feature_width, generator=gen).to(dtype)
    tokens = draft.block_tokens(torch.tensor([7]), block)[0]
    positions = torch.arange(context, context + block)
    cache = DraftCache(draft.shape, torch.device("cpu"), dtype, capacity=8)  # grows
    with torch.no_grad():
        if native_path:
            native = native_dflash(draft)
            assert native is not None
            for start, end in ((0, context - 2), (context - 2, context)):
                native.extend_context(cache, features[0, start:end])
            out = native.block(cache, draft.embed(tokens), positions)
        else:
            cache.append(draft.context_kv(features, torch.arange(context)[None]))
            out = draft(draft.embed(tokens)[None], positions[None], cache.layers())[0]
    assert cache.length == context
    return [out, *cache_rows(cache, context)]


@needs_native
@pytest.mark.parametrize("name", DFLASH_SHAPES)
def test_native_dflash_block_equals_its_torch_forward(target, name, library_version):
    """The context rows (fc, hidden_norm, per layer k/v with k's per-head norm and rope, no input
    norm) and one block (bidirectional inside, every context row visible; input norm, per-head q/k
    norms, rope, grouped heads, with and without biases): the native path's are the torch module's
    up to float32 rounding, and the block leaves the context rows as they were."""
    draft = random_dflash(target, name)
    exact = copy.deepcopy(draft).double()
    exact.bind(target)
    native, torch32, reference = dflash_blocks(draft, True), dflash_blocks(draft, False), dflash_blocks(exact, False)
    assert_as_exact_as_torch(native, torch32, reference)


@needs_native
def test_while_drafting_dflash_reads_its_layers_half_copies_exactly(target, monkeypatch):
    """As for EAGLE's layers above; the context rows' projections (fc, k, v) go through the heads'
    product, which reads half copies too, so the reference rounds fc as well."""
    draft = random_dflash(target, "gqa2-hd8-2layers", seed=3)
    rounded = layers_rounded_to_half(draft, target)
    with torch.no_grad():
        rounded.fc.weight.copy_(rounded.fc.weight.half().float())
    with torch.inference_mode():
        drafting = dflash_blocks(draft, True)
    monkeypatch.setattr(row_scores, "DRAFT_WEIGHTS", "float32")
    with torch.inference_mode():
        float32, reference = dflash_blocks(draft, True), dflash_blocks(rounded, True)
    assert torch.equal(drafting[0], reference[0]) and not torch.equal(drafting[0], float32[0])


@needs_native
@pytest.mark.parametrize("tree_nodes", [0, 6], ids=["chain", "tree"])
def test_dflash_drafts_natively_on_the_engine_and_keeps_the_baseline_output(target, tree_nodes, monkeypatch):
    blocks, contexts = [], []
    real_block, real_context = NativeDFlashDraft.block, NativeDFlashDraft.extend_context
    monkeypatch.setattr(NativeDFlashDraft, "block", lambda self, *a: blocks.append(1) or real_block(self, *a))
    monkeypatch.setattr(NativeDFlashDraft, "extend_context",
                        lambda self, *a: contexts.append(1) or real_context(self, *a))
    engine = SpeculativeEngine(target, backend="lean")
    drafter = DFlashDrafter(random_dflash(target, "gqa3-hd16-bias", seed=4), tree_nodes=tree_nodes, top_k=2)
    config = DecodingConfig(max_new_tokens=20)
    for prompt in random_prompts(3, VOCAB, seed=13):
        assert run_turns(engine, drafter, prompt, config) == run_turns(engine, VanillaDrafter(), prompt, config)
    assert len(blocks) > 10 and len(contexts) >= len(blocks)


# ---------------------------------------------------------------------------------- fallbacks
def test_without_the_native_library_the_draft_runs_on_torch_ops(target, monkeypatch):
    monkeypatch.setattr(native_kernels, "_state", {"library": None, "why_not": "switched off by the test"})
    draft = random_draft(target, "eagle-gqa2-hd8-3layers", seed=8)
    assert native_draft(draft) is None
    engine = SpeculativeEngine(target)
    drafter = Eagle2Drafter(draft, total_token=6, depth=2, top_k=2)
    config = DecodingConfig(max_new_tokens=12)
    prompt = [4, 8, 15, 16, 23]
    assert engine.generate(prompt, drafter, config)[0] == baseline(engine, prompt, config)
    assert drafter.tracker.passes["native"] == 0 and drafter.tracker.passes["torch"] > 0


def test_a_float64_draft_runs_on_torch_ops(target):
    draft = random_draft(target, "eagle3-gqa2-hd8", seed=9).double()
    assert native_draft(draft) is None
