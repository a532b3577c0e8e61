"""The lean backend's native layer (lean_ops.c with the kernel of skinny_gemm.c), float32 on the CPU.

1. Each native op equals its torch definition up to float32 rounding.
2. A whole forward equals the hf backend's (chains, trees with auxiliary nodes, compaction,
   hidden states, input-vector overrides), on Llama and Qwen2 layouts and head sizes that take
   every code path (vector and remainder columns, grouped and plain attention).
3. A row's values do not depend on the rest of its block: a tree node on the accepted path gets
   bit-identical logits to the same token decoded alone. So speculative decoding in float32 gives
   exactly the baseline's tokens, which the last tests check through the engine.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from methods.core.backends import native_kernels
from methods.core.backends.hf import HfTarget
from methods.core.backends.lean import LeanTarget
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.hidden_states import HiddenStateRequest
from methods.core.tree import DraftTree
from methods.drafters.pld import PromptLookupDrafter
from tests.engine_helpers import baseline, check_random_trees_keep_baseline, random_prompts
from tests.test_backends import assert_same, model_left_unchanged, run_steps

VOCAB = 97

pytestmark = pytest.mark.skipif(native_kernels.load() is None,
                                reason=f"native kernel unavailable: {native_kernels.why_not()}")


def make_model(kind: str, hidden: int, heads: int, kv_heads: int, layers: int = 2, seed: int = 0, act="silu"):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=512,
                  tie_word_embeddings=False, hidden_act=act)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif kind == "qwen3":  # per-head q/k norms; heads * head_dim wider than the stream
        model = Qwen3ForCausalLM(Qwen3Config(**common, head_dim=hidden // heads * 2))
        with torch.no_grad():
            for layer in model.model.layers:  # norms that are not all ones, so that they are really applied
                layer.self_attn.q_norm.weight.normal_(1, 0.5)
                layer.self_attn.k_norm.weight.normal_(1, 0.5)
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
        with torch.no_grad():
            for layer in model.model.layers:  # non-zero biases, so that they are really checked
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)
    return model.float().eval()


MODELS = {  # head sizes 8, 64 (whole vectors), 72 (vectors and a remainder); GQA groups 2, 1, 3
    "llama-hd8": lambda: make_model("llama", 32, 4, 2, layers=3),
    "llama-hd64": lambda: make_model("llama", 128, 2, 2),
    "qwen2-hd72": lambda: make_model("qwen2", 216, 3, 1),
    "qwen3-hd16": lambda: make_model("qwen3", 32, 4, 2),
}


# ----------------------------------------------------------------------------- single ops

def avx2_library():
    """The library built without AVX-512: the version AVX2-only CPUs run. On an AVX-512 CPU it is
    another build, so the tests below check both."""
    library = native_kernels.build_variant("-mno-avx512f")
    if library is None:
        pytest.skip("no C compiler or no AVX2 here")
    return library


@pytest.fixture(scope="module", params=["native", "avx2"])
def lib(request):
    return native_kernels.load() if request.param == "native" else avx2_library()


@pytest.fixture(params=["native", "avx2"])
def library_version(request, monkeypatch):
    """Whole forwards with each version of the library (LeanTarget loads it through _state)."""
    if request.param == "avx2":
        monkeypatch.setattr(native_kernels, "_state", {"library": avx2_library(), "why_not": None})
    return request.param


def ptr(t: torch.Tensor) -> int:
    """A tensor's address for the C functions. The tensor must stay referenced until the call
    returns: never pass a temporary (its memory is freed as soon as its address is taken)."""
    assert t.is_contiguous() and t.dtype in (torch.float32, torch.uint8)
    return t.data_ptr()


def test_rms_norm_adds_the_residual_then_normalises(lib):
    gen = torch.Generator().manual_seed(1)
    x, add, w = torch.randn(5, 37, generator=gen), torch.randn(5, 37, generator=gen), torch.randn(37, generator=gen)
    expected_x = x + add
    expected = w * (expected_x * torch.rsqrt(expected_x.pow(2).mean(-1, keepdim=True) + 1e-5))
    out = torch.empty_like(x)
    lib.rms_norm(5, 37, ptr(x), ptr(add), ptr(w), 1e-5, ptr(out))
    torch.testing.assert_close(x, expected_x, rtol=0, atol=0)  # the residual stream, updated in place
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    lib.rms_norm(5, 37, ptr(x), None, ptr(w), 1e-5, ptr(out))  # no add: x is left as it is
    torch.testing.assert_close(x, expected_x, rtol=0, atol=0)


def test_silu_mul_equals_torch_over_the_whole_range(lib):
    gate = torch.linspace(-100, 100, 3 * 1333).reshape(3, 1333)
    up = torch.randn(3, 1333, generator=torch.Generator().manual_seed(2))
    out, gate_up = torch.empty(3, 1333), torch.cat([gate, up], dim=1)
    lib.silu_mul(3, 1333, ptr(gate_up), ptr(out), 2)
    torch.testing.assert_close(out, F.silu(gate) * up, rtol=2e-6, atol=1e-6)


def rotate_half(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


@pytest.mark.parametrize("heads,kv_heads,hd", [(4, 2, 8), (2, 2, 64), (3, 1, 72)])
@pytest.mark.parametrize("past", [0, 37])
def test_rope_store_and_attend_equal_torch(lib, heads, kv_heads, hd, past):
    gen = torch.Generator().manual_seed(heads * 100 + hd + past)
    n, cap = 6, 64
    qkv = torch.randn(n, (heads + 2 * kv_heads) * hd, generator=gen)
    angles = torch.rand(n, hd // 2, generator=gen) * 6
    cos, sin = torch.cat([angles.cos()] * 2, -1).contiguous(), torch.cat([angles.sin()] * 2, -1).contiguous()
    keys, values = torch.randn(kv_heads, cap, hd, generator=gen), torch.randn(kv_heads, cap, hd, generator=gen)
    q, k, v = qkv.split([heads * hd, kv_heads * hd, kv_heads * hd], dim=-1)
    q_rot = rotate_half(q.view(n, heads, hd), cos[:, None], sin[:, None])
    k_rot = rotate_half(k.view(n, kv_heads, hd), cos[:, None], sin[:, None])
    expected_keys, expected_values = keys.clone(), values.clone()
    expected_keys[:, past:past + n] = k_rot.transpose(0, 1)
    expected_values[:, past:past + n] = v.view(n, kv_heads, hd).transpose(0, 1)

    lib.rope_store(n, heads, kv_heads, hd, ptr(qkv), ptr(cos), ptr(sin), ptr(keys), ptr(values), cap, past)
    torch.testing.assert_close(qkv[:, :heads * hd].view(n, heads, hd), q_rot, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(keys, expected_keys, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, expected_values, rtol=0, atol=0)

    tree = DraftTree(torch.arange(n - 1), torch.tensor([-1, 0, 0, 2, -1]))  # a tree over the block
    allowed = torch.zeros(n, n, dtype=torch.bool)
    allowed[:, 0] = True
    allowed[1:, 1:] = tree.ancestors_mask()
    mask = torch.ones(n, past + n, dtype=torch.bool)
    mask[:, past:] = allowed
    scale = hd ** -0.5
    expected = F.scaled_dot_product_attention(
        q_rot.transpose(0, 1)[None], keys[None, :, :past + n], values[None, :, :past + n], attn_mask=mask,
        scale=scale, enable_gqa=heads != kv_heads)[0].transpose(0, 1).reshape(n, heads * hd)
    out, allowed = torch.empty(n, heads * hd), allowed.to(torch.uint8)
    lib.attend(n, heads, kv_heads, hd, ptr(qkv), ptr(keys), ptr(values), cap, past, past, ptr(allowed), scale,
               ptr(out), 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("heads,kv_heads,hd", [(4, 2, 8), (3, 1, 72)])
def test_attend_masks_earlier_cache_rows_after_common(lib, heads, kv_heads, hd):
    """With common < past the mask also covers cache rows of earlier blocks (an EAGLE draft's
    tree entries after its committed pairs): each row sees the first ``common`` rows and exactly
    the later rows its mask allows, as torch's attention with the same mask computes."""
    gen = torch.Generator().manual_seed(heads + hd)
    n, cap, common, past = 3, 32, 11, 16  # 5 rows of earlier entries, then the block's 3
    qkv = torch.randn(n, (heads + 2 * kv_heads) * hd, generator=gen)
    keys, values = torch.randn(kv_heads, cap, hd, generator=gen), torch.randn(kv_heads, cap, hd, generator=gen)
    allowed = torch.rand(n, past + n - common, generator=gen) < 0.5
    allowed[:, :past - common] |= torch.tensor([True, False, True, False, False])  # some shared, some not
    allowed[:, past - common:] = torch.eye(n, dtype=torch.bool)  # each block row sees itself only
    mask = torch.cat([torch.ones(n, common, dtype=torch.bool), allowed], dim=1)
    q = qkv[:, :heads * hd].reshape(n, heads, hd).transpose(0, 1)
    scale = hd ** -0.5
    expected = F.scaled_dot_product_attention(
        q[None], keys[None, :, :past + n], values[None, :, :past + n], attn_mask=mask, scale=scale,
        enable_gqa=heads != kv_heads)[0].transpose(0, 1).reshape(n, heads * hd)
    out, allowed = torch.empty(n, heads * hd), allowed.to(torch.uint8).contiguous()
    lib.attend(n, heads, kv_heads, hd, ptr(qkv), ptr(keys), ptr(values), cap, past, common, ptr(allowed), scale,
               ptr(out), 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=2e-6)


# ----------------------------------------------------------------------------- whole forwards

@pytest.mark.parametrize("name", MODELS)
def test_native_forward_equals_hf_in_float32(name, library_version):
    model = MODELS[name]()
    lean = LeanTarget(model)
    assert lean.fused
    prompt = [4, 9, 17, 33, 2, 60, 8]
    assert_same(run_steps(lean, prompt), run_steps(HfTarget(model), prompt), 2e-4)
    plain = LeanTarget(model)
    plain.fused = False  # torch ops on the same weights
    assert_same(run_steps(lean, prompt), run_steps(plain, prompt), 2e-4)


def test_input_vector_overrides_reach_the_native_forward():
    model = MODELS["llama-hd8"]()
    gen = torch.Generator().manual_seed(5)
    tree = DraftTree(torch.tensor([11, 12, 13]), torch.tensor([-1, -1, 1]),
                     is_candidate=torch.tensor([True, False, False]),
                     embedding_nodes=torch.tensor([1, 2]), embeddings=torch.randn(2, 32, generator=gen))
    results = []
    for target in (LeanTarget(model), HfTarget(model)):
        with torch.inference_mode():
            cache = target.new_cache()
            target.prefill(cache, [4, 9, 17, 33])
            results.append(target.verify(cache, 4, 2, tree)[0])
    torch.testing.assert_close(results[0], results[1], rtol=2e-4, atol=2e-4)


def test_long_blocks_run_on_torch_ops_and_agree():
    """Above skinny_max_rows (a big tree; a long prompt when it is not prefilled in native blocks)
    the forward falls back to torch ops; the cache it leaves is the one the native forward
    continues from."""
    model = MODELS["llama-hd64"]()
    short, long_ = LeanTarget(model), LeanTarget(model)
    long_.skinny_max_rows = 3  # every block of 4+ rows takes the torch path
    long_.prefill_block = 0  # the prompt too
    prompt = list(range(3, 40))
    assert_same(run_steps(short, prompt), run_steps(long_, prompt), 2e-4)


@pytest.mark.parametrize("name", MODELS)
def test_a_long_prompt_prefilled_in_native_blocks_leaves_the_cache_and_states_of_one_block(name, library_version):
    """A prompt longer than skinny_max_rows goes through the native layer a block at a time; a row
    does not depend on the other rows of its block, so the cache and the drafter's states are
    bit-identical to those of the prompt in one native block, and the answer is too."""
    model = MODELS[name]()
    whole, blocks = LeanTarget(model), LeanTarget(model)
    blocks.skinny_max_rows, blocks.prefill_block = 9, 5  # 37 rows: blocks of 5, the last of 2
    prompt = [int(t) for t in torch.randint(3, VOCAB, (37,), generator=torch.Generator().manual_seed(3))]
    request = HiddenStateRequest(final=True, layer_inputs=(0, 1))
    states = {}
    for key, target in (("whole", whole), ("blocks", blocks)):
        cache = target.new_cache()
        with torch.inference_mode(), target.capturing(request):
            states[key] = target.prefill(cache, prompt)
        states[key + " cache"] = cache
    a, b = states["whole"], states["blocks"]
    assert torch.equal(a.final, b.final) and a.final.shape[0] == len(prompt)
    assert a.layer_inputs.keys() == b.layer_inputs.keys() == {0, 1}
    assert all(torch.equal(a.layer_inputs[i], b.layer_inputs[i]) for i in (0, 1))
    ca, cb = states["whole cache"], states["blocks cache"]
    assert ca.length == cb.length == len(prompt)
    for layer in range(len(ca.keys)):
        assert torch.equal(ca.keys[layer][:, :len(prompt)], cb.keys[layer][:, :len(prompt)])
        assert torch.equal(ca.values[layer][:, :len(prompt)], cb.values[layer][:, :len(prompt)])
    config = DecodingConfig(max_new_tokens=12)
    with torch.inference_mode():
        assert SpeculativeEngine(model, backend="lean").generate(prompt, PromptLookupDrafter(), config)[0] == \
            _generate_with(blocks, model, prompt, config)
    assert "prefill blocks of 5" in blocks.native_code


def _generate_with(target, model, prompt, config):
    engine = SpeculativeEngine(model, backend="lean")
    engine.target = target
    return engine.generate(prompt, PromptLookupDrafter(), config)[0]


def test_a_model_with_another_activation_runs_without_the_native_layer():
    model = make_model("llama", 32, 4, 2, act="gelu")
    lean = LeanTarget(model)
    assert lean.native_kernel and not lean.fused
    prompt = [4, 9, 17, 33, 2, 60, 8]
    assert_same(run_steps(lean, prompt), run_steps(HfTarget(model), prompt), 2e-4)


# ----------------------------------------------------------------------------- row independence

@pytest.mark.parametrize("name", MODELS)
def test_a_tree_nodes_logits_are_bit_identical_to_decoding_its_path_alone(name, library_version):
    model = MODELS[name]()
    target = LeanTarget(model)
    prompt = [4, 9, 17, 33, 2, 60, 8, 41, 5]
    # The path to node 5 (nodes 0, 3, 4, 5) lies among a sibling branch with an auxiliary node.
    tree = DraftTree(torch.tensor([21, 22, 23, 24, 25, 26]), torch.tensor([-1, -1, 1, 0, 3, 4]),
                     is_candidate=torch.tensor([True, True, False, True, True, True]))
    path = tree.path_to(5)
    assert path == [0, 3, 4, 5]
    with torch.inference_mode(), target.capturing(HiddenStateRequest(final=True, layer_inputs=(1,))):
        cache = target.new_cache()
        target.prefill(cache, prompt[:-1])
        past = len(prompt) - 1
        logits, states = target.verify(cache, past, prompt[-1], tree)
        cache = target.new_cache()
        target.prefill(cache, prompt[:-1])
        tokens = [prompt[-1], *tree.tokens[path[:-1]].tolist()]
        alone = []
        for step, token in enumerate(tokens):
            row_logits, row_states = target.verify(cache, past + step, token, DraftTree.empty())
            alone.append((row_logits[0], row_states.final[0], row_states.layer_inputs[1][0]))
    rows = [0] + [p + 1 for p in path[:-1]]  # block rows: the root, then the path's nodes
    for (row_logits, final, layer1), row in zip(alone, rows):
        assert torch.equal(row_logits, logits[row]), row
        assert torch.equal(final, states.final[row]), row
        assert torch.equal(layer1, states.layer_inputs[1][row]), row


@pytest.fixture(scope="module")
def engine():
    # Flat logits (no sharpening), so that float32 near-ties are common: only exact row
    # independence keeps every method's output equal to the baseline's.
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False)
    engine = SpeculativeEngine(LlamaForCausalLM(config).float().eval(), backend="lean")
    assert engine.target.fused
    return engine


@pytest.mark.parametrize("with_truth", [False, True])
def test_random_trees_keep_the_baseline_output_exactly_in_float32(engine, with_truth):
    check_random_trees_keep_baseline(engine, VOCAB, with_truth, seed=11, max_new_tokens=30)


def test_prompt_lookup_keeps_the_baseline_output_exactly_in_float32(engine):
    config = DecodingConfig(max_new_tokens=40)
    accepted_more = False
    for prompt in random_prompts(8, VOCAB, seed=12):
        prompt = prompt + prompt  # repeats, so that lookup finds drafts
        expected = baseline(engine, prompt, config)
        got, stats = engine.generate(prompt, PromptLookupDrafter(max_ngram=3, num_pred=5, allow_short=True), config)
        assert got == expected
        accepted_more |= max(stats.accept_lengths) > 1
    assert accepted_more, "no draft was ever accepted: the test proves nothing"


def test_weights_move_into_one_arena_once_and_the_model_is_unchanged():
    model = make_model("qwen2", 64, 4, 2)
    with model_left_unchanged(model):
        LeanTarget(model, native_kernel=False)  # fuses q/k/v and gate/up into plain buffers first
        LeanTarget(model)
        arena = model._lean_arena
        for layer in model.model.layers:
            for lin in (layer.self_attn.q_proj, layer.self_attn.v_proj, layer.self_attn.o_proj, layer.mlp.up_proj,
                        layer.mlp.down_proj):
                assert arena.holds(lin.weight)
        assert arena.holds(model.lm_head.weight)
        LeanTarget(model)  # a second target on the same model moves nothing again
        assert model._lean_arena is arena
