"""row_scores and linear: the heads' vocabulary projection (and a draft's own projections) on the skinny kernel equals torch's, and the kernel
is used exactly where it can run (float32 on the CPU, no gradient, rows the kernel takes)."""

import pytest
import torch

from methods.core.backends import native_kernels
from methods.core.backends.lean import SKINNY_MAX_ROWS
from methods.heads import row_scores as module
from methods.heads.row_scores import linear, row_scores

needs_native = pytest.mark.skipif(native_kernels.load() is None, reason="no native library on this machine")


@pytest.fixture
def kernel_calls(monkeypatch):
    calls = []
    real = native_kernels.skinny_matmul

    def counting(library, x, weight):
        calls.append(tuple(x.shape))
        return real(library, x, weight)

    monkeypatch.setattr(module.native_kernels, "skinny_matmul", counting)
    return calls


@needs_native
@pytest.mark.parametrize("shape", [(1, 48), (2, 48), (7, 48), (SKINNY_MAX_ROWS, 48), (2, 3, 48)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_the_kernel_gives_torchs_scores(shape, with_bias, kernel_calls):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator)
    rows = torch.randn(301, 48, generator=generator)
    bias = torch.randn(301, generator=generator) if with_bias else None
    with torch.no_grad():
        got = row_scores(x, rows, bias)
    expected = x.double() @ rows.double().T + (0 if bias is None else bias.double())
    assert got.shape == (*shape[:-1], 301) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)
    assert kernel_calls == [(x.numel() // 48, 48)]


@needs_native
def test_torch_answers_where_the_kernel_cannot(kernel_calls):
    rows = torch.randn(50, 16)
    x = torch.randn(3, 16, requires_grad=True)
    scored = row_scores(x, rows)  # training: the kernel has no backward
    scored.sum().backward()
    torch.testing.assert_close(x.grad, rows.sum(0).expand(3, -1))
    with torch.no_grad():
        row_scores(torch.randn(3, 16, dtype=torch.float64), rows.double())  # not float32
        row_scores(torch.randn(SKINNY_MAX_ROWS + 1, 16), rows)  # more rows than the kernel takes
        row_scores(torch.randn(3, 16), rows.T.contiguous().T)  # rows not contiguous
        row_scores(torch.randn(0, 16), rows)  # nothing to score
    assert kernel_calls == []


def test_a_width_mismatch_is_torchs_error_not_a_wrong_read():
    with torch.no_grad(), pytest.raises(RuntimeError):
        row_scores(torch.randn(2, 16), torch.randn(50, 17))


@needs_native
@pytest.mark.parametrize("shape", [(1, 40), (8, 40), (1, 8, 40)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_is_the_layer_on_the_kernel(shape, with_bias, kernel_calls):
    torch.manual_seed(0)
    layer = torch.nn.Linear(40, 24, bias=with_bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        got, expected = linear(x, layer), layer(x)
        # A transposed (non-contiguous) input, as the attention's output is before o_proj.
        wide = torch.randn(shape[-1], *shape[:-1]).movedim(0, -1)
        torch.testing.assert_close(linear(wide, layer), layer(wide), rtol=1e-5, atol=1e-5)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert len(kernel_calls) == 2


@needs_native
def test_linear_trains_through_torch(kernel_calls):
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(3, 16)
    linear(x, layer).sum().backward()  # the weights need a gradient: F.linear, as the layer itself
    torch.testing.assert_close(layer.weight.grad, x.sum(0).expand(8, -1))
    with torch.no_grad():
        linear(torch.randn(3, 16, dtype=torch.float64), layer.double())
    assert kernel_calls == []


@pytest.fixture
def weight_dtypes(monkeypatch, kernel_calls):
    """The dtype of the weight every kernel call reads (float16: skinny_hgemm, the drafting copy)."""
    dtypes = []
    counting = module.native_kernels.skinny_matmul

    def recording(library, x, weight):
        dtypes.append(weight.dtype)
        return counting(library, x, weight)

    monkeypatch.setattr(module.native_kernels, "skinny_matmul", recording)
    monkeypatch.setattr(module, "DRAFT_WEIGHTS", "float16")
    return dtypes


@needs_native
def test_drafting_reads_a_half_copy_of_the_weights_kept_until_they_change(weight_dtypes, kernel_calls):
    generator = torch.Generator().manual_seed(1)
    x, rows = torch.randn(3, 64, generator=generator), torch.randn(500, 64, generator=generator)
    layer = torch.nn.Linear(64, 40)
    with torch.inference_mode():  # the engine drafts in inference mode
        drafted = row_scores(x, rows)
        projected = linear(x, layer)
        copy = module.half_copy(rows)
        row_scores(x, rows)
        assert module.half_copy(rows) is copy  # made once, not per step
    assert weight_dtypes == [torch.float16] * 3 and kernel_calls == [(3, 64)] * 3
    torch.testing.assert_close(drafted.double(), x.double() @ rows.half().double().T, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(projected, x @ layer.weight.half().float().T + layer.bias, rtol=1e-5, atol=1e-4)
    with torch.no_grad():  # training's held-out evaluation: the float32 weights
        torch.testing.assert_close(row_scores(x, rows).double(), x.double() @ rows.double().T, rtol=1e-5, atol=1e-4)
    assert weight_dtypes[3:] == [torch.float32]
    rows.mul_(-1)  # changed in place (an optimiser step): the copy is made again
    with torch.inference_mode():
        torch.testing.assert_close(row_scores(x, rows), -drafted)
    assert module.half_copy(rows) is not copy


@needs_native
def test_weights_float16_cannot_hold_and_the_float32_switch_keep_float32(weight_dtypes, kernel_calls, monkeypatch):
    x, rows = torch.randn(2, 32), torch.randn(40, 32)
    big = rows.clone()
    big[3, 5] = 7e4  # past float16's largest value
    with torch.inference_mode():
        torch.testing.assert_close(row_scores(x, big), x @ big.T, rtol=1e-5, atol=1e-2)
        monkeypatch.setattr(module, "DRAFT_WEIGHTS", "float32")
        row_scores(x, rows)
    assert weight_dtypes == [torch.float32, torch.float32] and kernel_calls == [(2, 32), (2, 32)]
