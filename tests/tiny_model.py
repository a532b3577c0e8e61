"""A tiny randomly initialised llama-family model for engine tests.

float64 by default so that numerics cannot flip an argmax between a 1-token forward, a chain
forward and a tree forward: greedy equality must then hold exactly.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def make_tiny_llama(vocab_size: int = 97, seed: int = 0, dtype=torch.float64, layers: int = 2,
                    attn_implementation: str = "sdpa") -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        attn_implementation=attn_implementation,
    )
    model = LlamaForCausalLM(config).to(dtype)
    # Sharper logits than the default init, so that greedy text is not one token repeated.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    model.eval()
    return model
