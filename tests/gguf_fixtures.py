"""Tiny GGUF files and a stand-in for transformers' GGUF de-quantisation, for the conversion
cache's tests (a real conversion of the embedded model takes half a minute).

``write_tiny_gguf`` writes a structurally complete GGUF file (a header, metadata and two
tensors), which is what the cache keys on and what a truncation damages. ``fake_gguf_loading``
makes ``from_pretrained(..., gguf_file=...)`` return a tiny saved model and its tokenizer, after
``delay`` seconds, so that two conversions overlap; every other load is transformers' own.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np


def write_tiny_gguf(path: Path) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_layer_norm_rms_eps(1e-5)
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((32, 8)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@contextlib.contextmanager
def fake_gguf_loading(tiny_folder: Path, delay: float = 0.0, on_load=None):
    """Within the block, loading a GGUF file gives the model and tokenizer saved in
    ``tiny_folder`` (``on_load``, if given, is called first, e.g. to count the conversions)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # What each class defines itself (None: it inherits from_pretrained), to put back after.
    originals = {cls: cls.__dict__.get("from_pretrained") for cls in (AutoModelForCausalLM, AutoTokenizer)}

    def patched(cls):
        original = getattr(cls, "from_pretrained")

        def from_pretrained(name, *args, gguf_file=None, **kwargs):
            if gguf_file is None:
                return original(name, *args, **kwargs)
            if on_load is not None:
                on_load(cls.__name__)
            time.sleep(delay)
            return original(str(tiny_folder), **kwargs)
        return from_pretrained

    try:
        for cls in originals:
            setattr(cls, "from_pretrained", patched(cls))
        yield
    finally:
        for cls, original in originals.items():
            if original is None:
                delattr(cls, "from_pretrained")
            else:
                setattr(cls, "from_pretrained", original)
