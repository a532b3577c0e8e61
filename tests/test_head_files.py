"""Head loaders on damaged or malformed files: a weights file that is empty, cut short or not
safetensors, and a config whose draft shape disagrees with its weights, are refused with one
sentence that names the file, never a reader's traceback or a giant allocation."""

from __future__ import annotations

import json
import os

import pytest
import torch

from methods.core.safetensors_header import DamagedFileError, read_header
from methods.heads.artifact import ArtifactError, load_state
from methods.heads.eagle3_format import load_eagle3
from methods.heads.eagle_format import load_eagle
from methods.heads.hydra import load_hydra
from methods.heads.medusa import load_medusa
from methods.heads.space import load_space
from tests import test_eagle, test_eagle3, test_hydra, test_medusa, test_space
from tests.tiny_model import make_tiny_llama

VOCAB = 97
# An intermediate size whose float32 matrix (x hidden 32) is larger than any address space: a
# loader that allocates the config's shape before checking it cannot survive it.
ABSURD = 10 ** 13


@pytest.fixture(scope="module")
def model():
    return make_tiny_llama(vocab_size=VOCAB, seed=0, layers=test_eagle3.LAYERS)


def eagle(folder, model):
    test_eagle.write_published(folder, model, suffix=".safetensors")
    return folder / "model.safetensors", load_eagle


def eagle3(folder, model):
    test_eagle3.write_published(folder, model, test_eagle3.DRAFT_IDS, suffix=".safetensors")
    return folder / "model.safetensors", load_eagle3


def medusa(folder, model):
    test_medusa.write_published(folder, suffix=".safetensors", declared=5)  # no head-count warning
    return folder / "medusa_lm_head.safetensors", load_medusa


def hydra(folder, model):
    test_hydra.write_published(folder, suffix=".safetensors", declared=5)
    return folder / "hydra_lm_head.safetensors", load_hydra


def space(folder, model):
    test_space.write_masks(folder, model)
    return folder / "space_masks.safetensors", load_space


WRITERS = {"eagle": eagle, "eagle3": eagle3, "medusa": medusa, "hydra": hydra, "space": space}


def damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(os.urandom(4096))
    else:  # a header cut off in its middle
        path.write_bytes(data[:20])


@pytest.mark.parametrize("how", ["truncated", "empty", "random", "header-cut"])
@pytest.mark.parametrize("method", WRITERS)
def test_a_damaged_weights_file_is_refused_naming_it(model, tmp_path, method, how):
    weights, load = WRITERS[method](tmp_path / method, model)
    load(tmp_path / method, model)  # the intact folder loads
    damage(weights, how)
    with pytest.raises(ArtifactError) as caught:
        load(tmp_path / method, model)
    message = str(caught.value)
    assert str(weights) in message and "\n" not in message
    assert "replace it" in message


def test_the_header_check_accepts_every_file_safetensors_writes(tmp_path):
    from safetensors.torch import save_file

    tensors = {"a": torch.zeros(3, 5, dtype=torch.float16), "b": torch.arange(7), "empty": torch.zeros(0, 4),
               "flag": torch.ones(2, dtype=torch.bool), "c": torch.ones(1, dtype=torch.bfloat16)}
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"format": "pt"})
    header = read_header(tmp_path / "x.safetensors")
    assert {name: entry["shape"] for name, entry in header.items()} == {k: list(v.shape) for k, v in tensors.items()}
    save_file({}, str(tmp_path / "none.safetensors"))
    assert read_header(tmp_path / "none.safetensors") == {}


def test_trailing_bytes_and_a_missing_file_are_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file({"a": torch.zeros(4)}, str(path))
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    with pytest.raises(DamagedFileError, match="8 bytes after its last tensor"):
        read_header(path)
    with pytest.raises(ArtifactError, match="cannot read it"):
        load_state(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------------------------- malformed shapes

@pytest.mark.parametrize("method", ["eagle", "eagle3"])
@pytest.mark.parametrize("key", ["intermediate_size", "num_attention_heads"])
def test_a_config_whose_draft_shape_is_absurd_is_refused_before_allocating(model, tmp_path, method, key):
    """The config says the draft is enormous; the weights say otherwise: the shapes are compared
    before anything of the config's size is allocated."""
    WRITERS[method](tmp_path / method, model)
    path = tmp_path / method / "config.json"
    config = json.loads(path.read_text())
    config[key] = ABSURD if key == "intermediate_size" else 2 ** 20
    if key == "num_attention_heads":
        config["head_dim"] = 2 ** 20
    path.write_text(json.dumps(config))
    load = load_eagle if method == "eagle" else load_eagle3
    with pytest.raises(ArtifactError, match="malformed") as caught:
        load(tmp_path / method, model)
    assert "config.json" in str(caught.value) and "\n" not in str(caught.value)


def test_the_shape_check_names_the_tensor_and_the_loaded_draft_is_unchanged(model, tmp_path):
    folder, state = test_eagle.write_published(tmp_path / "eagle", model, suffix=".safetensors")
    draft = load_eagle(folder, model)
    for key, tensor in draft.state_dict().items():
        torch.testing.assert_close(tensor, state[key].to(tensor.dtype))
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 49
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"layers\.0\.mlp\.gate_proj\.weight has shape \[48, 32\].*\[49, 32\]"):
        load_eagle(folder, model)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")  # unpickling would create the marker file


@pytest.mark.parametrize("name,load", [("medusa_lm_head.pt", load_medusa), ("pytorch_model.bin", load_eagle),
                                       ("hydra_lm_head.pt", load_hydra)])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(model, tmp_path, name, load):
    folder = tmp_path / "heads"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    marker = tmp_path / "ran"
    torch.save({"0.0.linear.weight": torch.zeros(2), "payload": _RunsCodeWhenUnpickled(marker)}, folder / name)
    with pytest.raises(ArtifactError, match="cannot read it as a torch state dict"):
        load(folder, model)
    assert not marker.exists()
