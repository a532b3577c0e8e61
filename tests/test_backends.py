"""The lean backend computes what the hf backend computes: logits, cache and hidden states.

float64 tiny models for exact comparisons (torch's matmul then, the native kernel is float32),
float32 ones for the native kernel, a Qwen2-style model (biased q/k/v) for the other layout, and a
Qwen3-style one (per-head q/k norms, a head width that is not hidden / heads).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from methods.core.backends import BackendError, make_target, resolve_backend, native_kernels
from methods.core.backends.hf import HfTarget
from methods.core.backends.lean import LeanTarget, unsupported_reason
from methods.core.hidden_states import HiddenStateRequest
from methods.core.tree import DraftTree
from tests.tiny_model import make_tiny_llama

VOCAB = 97


def make_tiny_qwen2(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, attn_implementation="sdpa")
    model = Qwen2ForCausalLM(config).to(dtype)
    with torch.no_grad():
        for layer in model.model.layers:  # non-zero biases, so that they are really checked
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model.eval()


def make_tiny_qwen3(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                         tie_word_embeddings=False, attn_implementation="sdpa")
    model = Qwen3ForCausalLM(config).to(dtype)
    with torch.no_grad():
        for layer in model.model.layers:  # norms that are not all ones, so that they are really applied
            layer.self_attn.q_norm.weight.normal_(1, 0.5)
            layer.self_attn.k_norm.weight.normal_(1, 0.5)
    return model.eval()


def blocks():
    """A chain, a tree with an auxiliary node, a deeper tree, a single root."""
    return [
        DraftTree.chain([5, 6, 7, 8]),
        DraftTree(torch.tensor([11, 12, 13, 14, 15]), torch.tensor([-1, -1, 0, 0, 2]),
                  is_candidate=torch.tensor([True, True, True, False, True])),
        DraftTree(torch.tensor([20, 21, 22, 23, 24, 25, 26]), torch.tensor([-1, 0, 1, -1, 3, 0, 5])),
        DraftTree.empty(),
    ]


def run_steps(target, prompt, request=HiddenStateRequest(final=True, layer_inputs=(0, 1))):
    """Prefill, then verify each block in turn and keep its first path (compacting between)."""
    out = []
    with torch.inference_mode(), target.capturing(request):
        cache = target.new_cache()
        states = target.prefill(cache, prompt[:-1])
        out.append(("prefill", states.final, states.layer_inputs))
        context = list(prompt)
        for tree in blocks():
            past = len(context) - 1
            logits, states = target.verify(cache, past, context[-1], tree)
            out.append(("verify", logits, states.final, states.layer_inputs))
            accepted = tree.path_to(len(tree) - 1) if len(tree) else []
            target.compact(cache, past, len(tree) + 1, accepted)
            context += tree.tokens[accepted].tolist() + [3]
    return out


def assert_same(a, b, tol):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y, tol)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k], tol)
    else:
        assert a == b


@pytest.mark.parametrize("make_model", [lambda: make_tiny_llama(vocab_size=VOCAB, layers=3),
                                        lambda: make_tiny_qwen2(), lambda: make_tiny_qwen3()],
                         ids=["llama", "qwen2", "qwen3"])
def test_lean_logits_and_states_equal_hf_in_float64(make_model):
    model = make_model()
    prompt = [4, 9, 17, 33, 2, 60, 8]
    assert_same(run_steps(LeanTarget(model), prompt), run_steps(HfTarget(model), prompt), 1e-10)


@pytest.mark.parametrize("make_model", [lambda: make_tiny_llama(vocab_size=VOCAB, layers=3, dtype=torch.float32),
                                        lambda: make_tiny_qwen3(dtype=torch.float32)], ids=["llama", "qwen3"])
def test_lean_with_the_native_kernel_matches_hf_in_float32(make_model):
    if native_kernels.load() is None:
        pytest.skip(f"native kernel unavailable: {native_kernels.why_not()}")
    model = make_model()
    lean = LeanTarget(model)
    assert lean.native_kernel and lean.fused
    prompt = [4, 9, 17, 33, 2, 60, 8]
    assert_same(run_steps(lean, prompt), run_steps(HfTarget(model), prompt), 2e-4)


@contextlib.contextmanager
def model_left_unchanged(model):
    """The model's state dict and its own forward's logits are the same after the block."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.tensor([[4, 9, 17, 33]])
    with torch.inference_mode():
        logits_before = model(ids).logits
    yield
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, logits_before)


def test_fusing_leaves_the_model_unchanged_and_holds_weights_once():
    model = make_tiny_llama(vocab_size=VOCAB, layers=2)
    with model_left_unchanged(model):
        LeanTarget(model)
        second = LeanTarget(model)  # reuses the fused buffers
        attention = model.model.layers[0].self_attn
        assert second.layers[0].qkv.data_ptr() == attention.q_proj.weight.data_ptr()


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 16, 33, 96])
@pytest.mark.parametrize("n,k", [(64, 32), (61, 37), (8, 8), (3, 576)])
def test_native_kernel_equals_torch_matmul(rows, n, k):
    fn = native_kernels.load()
    if fn is None:
        pytest.skip(f"native kernel unavailable: {native_kernels.why_not()}")
    gen = torch.Generator().manual_seed(rows * 1000 + n + k)
    x = torch.randn(rows, k, generator=gen)
    w = torch.randn(n, k, generator=gen)
    expected = (x.double() @ w.double().T).float()
    torch.testing.assert_close(native_kernels.skinny_matmul(fn, x, w), expected, rtol=1e-5, atol=1e-4)
    # A non-contiguous input is made contiguous, never read with the wrong strides.
    xt = torch.randn(k, rows, generator=gen).T
    torch.testing.assert_close(native_kernels.skinny_matmul(fn, xt, w), (xt.double() @ w.double().T).float(),
                               rtol=1e-5, atol=1e-4)


def test_a_rows_product_does_not_depend_on_the_rows_beside_it():
    """Each output is summed in one order whatever M is and wherever its row falls in the
    kernel's blocks, so a verification row gets bit-identical values to a 1-row forward's."""
    fn = native_kernels.load()
    if fn is None:
        pytest.skip(f"native kernel unavailable: {native_kernels.why_not()}")
    gen = torch.Generator().manual_seed(7)
    x, w = torch.randn(17, 579, generator=gen), torch.randn(67, 579, generator=gen)
    together = native_kernels.skinny_matmul(fn, x, w)
    for i in range(17):
        assert torch.equal(native_kernels.skinny_matmul(fn, x[i:i + 1], w)[0], together[i]), i
    assert torch.equal(native_kernels.skinny_matmul(fn, x[5:16], w), together[5:16])


def test_the_avx2_version_of_the_kernel_equals_torch_matmul():
    """On an AVX-512 CPU the compiled kernel is the AVX-512 version; the AVX2 one, which other
    CPUs run, is built here without AVX-512 and checked too."""
    fn = native_kernels.build_variant("-mno-avx512f")
    if fn is None:
        pytest.skip("no C compiler or no AVX2 here")
    gen = torch.Generator().manual_seed(3)
    for rows, n, k in [(1, 64, 32), (5, 61, 37), (16, 3, 576), (33, 67, 579)]:
        x, w = torch.randn(rows, k, generator=gen), torch.randn(n, k, generator=gen)
        torch.testing.assert_close(native_kernels.skinny_matmul(fn, x, w), (x.double() @ w.double().T).float(),
                                   rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("variant", [(), ("-mno-avx512f",)], ids=["native", "avx2"])
def test_the_half_weight_kernel_is_the_float32_product_of_the_half_weights(variant):
    """skinny_hgemm (a float16 weight; draft heads while drafting) widens each weight to
    float32: it equals the product of the rounded weights, in both versions of the kernel, and a
    row's result does not depend on the rows beside it."""
    fn = native_kernels.build_variant(*variant) if variant else native_kernels.load()
    if fn is None:
        pytest.skip("no C compiler or no AVX2 here")
    gen = torch.Generator().manual_seed(11)
    for rows, n, k in [(1, 64, 32), (2, 61, 37), (5, 67, 579), (16, 3, 576), (33, 9, 8)]:
        x, w = torch.randn(rows, k, generator=gen), torch.randn(n, k, generator=gen).half()
        got = native_kernels.skinny_matmul(fn, x, w)
        torch.testing.assert_close(got, (x.double() @ w.double().T).float(), rtol=1e-5, atol=1e-4)
        for i in range(rows):
            assert torch.equal(native_kernels.skinny_matmul(fn, x[i:i + 1], w)[0], got[i]), (rows, n, k, i)


def test_disabling_the_native_kernel_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(native_kernels, "_state", {})
    monkeypatch.setenv(native_kernels.DISABLE_ENV, "0")
    assert native_kernels.load() is None and "SDBENCH_NATIVE_KERNEL=0" in native_kernels.why_not()
    model = make_tiny_llama(vocab_size=VOCAB, dtype=torch.float32)
    assert not LeanTarget(model).native_kernel
    monkeypatch.setattr(native_kernels, "_state", {})


def test_cache_grows_past_its_initial_capacity(monkeypatch):
    import methods.core.backends.lean as lean

    monkeypatch.setattr(lean, "INITIAL_CAPACITY", 4)
    model = make_tiny_llama(vocab_size=VOCAB)
    prompt = list(range(3, 20))
    assert_same(run_steps(LeanTarget(model), prompt), run_steps(HfTarget(model), prompt), 1e-10)


def test_backend_choice_and_clear_refusals():
    llama = make_tiny_llama(vocab_size=VOCAB)
    assert resolve_backend("auto", llama) == "lean"  # on the CPU
    assert make_target("hf", llama).name == "hf"
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2)).eval()
    assert "gpt2" in unsupported_reason(gpt2)
    assert resolve_backend("auto", gpt2) == "hf"
    with pytest.raises(BackendError, match="--backend lean cannot run this model.*gpt2"):
        resolve_backend("lean", gpt2)
    with pytest.raises(BackendError, match="unknown --backend 'fast'"):
        resolve_backend("fast", llama)
    windowed = make_tiny_qwen3()
    windowed.config.layer_types = ["full_attention", "sliding_attention"]  # what max_window_layers makes
    assert "sliding-window" in unsupported_reason(windowed)
    assert resolve_backend("auto", windowed) == "hf"


def test_a_request_for_a_missing_layer_is_refused():
    target = LeanTarget(make_tiny_llama(vocab_size=VOCAB, layers=2))
    with pytest.raises(ValueError, match=r"layer\(s\) \[5\]"):
        with target.capturing(HiddenStateRequest(layer_inputs=(5,))):
            pass


# ---------------------------------------------------------------------------------- embedding overrides
def masked_tree(vectors: torch.Tensor, tokens=(0, 0, 0)) -> DraftTree:
    """Candidates 11 -> 12 under the root; auxiliary nodes entering as ``vectors``: a chain of two
    under the root and one under the first candidate (SPACE's mask groups are laid out so)."""
    return DraftTree(torch.tensor([11, 12, *tokens]), torch.tensor([-1, 0, -1, 2, 0]),
                     is_candidate=torch.tensor([True, True, False, False, False]),
                     embedding_nodes=torch.tensor([2, 3, 4]), embeddings=vectors)


def verify_once(target, prompt, tree, request=HiddenStateRequest(final=True, layer_inputs=(0,))):
    """Prefill, verify ``tree``, keep its candidate path, then verify one more token on that cache."""
    with torch.inference_mode(), target.capturing(request):
        cache = target.new_cache()
        target.prefill(cache, prompt[:-1])
        past = len(prompt) - 1
        logits, states = target.verify(cache, past, prompt[-1], tree)
        target.compact(cache, past, len(tree) + 1, [0, 1])
        after, _ = target.verify(cache, past + 3, 3, DraftTree.empty())
    return logits, states.final, states.layer_inputs, after


@pytest.mark.parametrize("make_model", [lambda: make_tiny_llama(vocab_size=VOCAB, layers=3),
                                        lambda: make_tiny_qwen2(), lambda: make_tiny_qwen3()],
                         ids=["llama", "qwen2", "qwen3"])
def test_embedding_overrides_give_equal_logits_on_both_backends(make_model):
    model = make_model()
    vectors = torch.randn(3, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    prompt = [4, 9, 17, 33, 2, 60, 8]
    hf = verify_once(HfTarget(model), prompt, masked_tree(vectors))
    assert_same(verify_once(LeanTarget(model), prompt, masked_tree(vectors)), hf, 1e-10)
    # The vectors are what layer 0 reads at the overridden rows (row = node + 1).
    torch.testing.assert_close(hf[2][0][3:], vectors, rtol=0, atol=0)
    # The overrides are really used: other vectors change those rows, and only those rows.
    other = verify_once(HfTarget(model), prompt, masked_tree(vectors * 2))
    assert (other[0][3:] - hf[0][3:]).abs().min() > 1e-6
    torch.testing.assert_close(other[0][:3], hf[0][:3], rtol=0, atol=1e-12)


@pytest.mark.parametrize("target_class", [HfTarget, LeanTarget], ids=["hf", "lean"])
def test_an_override_equal_to_a_token_embedding_is_that_token(target_class):
    """The override replaces what the input embedding layer would output, nothing else."""
    model = make_tiny_llama(vocab_size=VOCAB, layers=2)
    tokens = (50, 51, 52)
    vectors = model.get_input_embeddings().weight.detach()[list(tokens)].clone()
    prompt = [4, 9, 17, 33, 2]
    plain = DraftTree(torch.tensor([11, 12, *tokens]), torch.tensor([-1, 0, -1, 2, 0]),
                      is_candidate=torch.tensor([True, True, False, False, False]))
    target = target_class(model)
    assert_same(verify_once(target, prompt, masked_tree(vectors)), verify_once(target, prompt, plain), 1e-12)


def test_overrides_are_checked_and_survive_pruning():
    vectors = torch.arange(6, dtype=torch.float64).reshape(3, 2)
    with pytest.raises(ValueError, match="only auxiliary nodes"):
        DraftTree(torch.tensor([1, 2]), torch.tensor([-1, 0]), embedding_nodes=torch.tensor([1]),
                  embeddings=vectors[:1])
    with pytest.raises(ValueError, match="go together"):
        DraftTree(torch.tensor([1]), torch.tensor([-1]), is_candidate=torch.tensor([False]),
                  embedding_nodes=torch.tensor([0]))
    with pytest.raises(ValueError, match="shape"):
        masked_tree(vectors[:2])
    tree = masked_tree(vectors)
    assert not tree.is_chain()
    pruned = tree.prune(torch.tensor([True, False, True, False, True]))  # nodes 0, 2, 4 stay
    assert pruned.embedding_nodes.tolist() == [1, 2]
    assert torch.equal(pruned.embeddings, vectors[[0, 2]])
