"""How many tokens a model can attend over, and the error for a prompt that leaves no room.

A prompt longer than the model's context is not an empty answer: past the positions the model
was trained on (``max_position_embeddings``) its outputs mean nothing, or it fails outright. So
the engine refuses such a prompt with ``PromptTooLong`` (a ValueError: callers that catch bad
input already catch it), and stops a generation that reaches the context, saying so in the
turn's ``stop_reason``.
"""

from __future__ import annotations

from typing import Optional


class PromptTooLong(ValueError):
    """The prompt, plus the one token an answer needs at least, is longer than the model's context."""

    def __init__(self, prompt_tokens: int, context: int):
        super().__init__(f"the prompt has {prompt_tokens} tokens; the model's context is {context} "
                         f"(max_position_embeddings), so no token can be generated after it: shorten the prompt")
        self.prompt_tokens, self.context = prompt_tokens, context

    def __reduce__(self):  # picklable (Ray sends a worker's exceptions back to the driver)
        return type(self), (self.prompt_tokens, self.context)


def context_limit(model) -> Optional[int]:
    """The most tokens (prompt and answer together) the model can take, or None where its
    config does not say."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None
