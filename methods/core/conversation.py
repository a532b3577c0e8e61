"""Turning a question's turns into prompt token ids, and generated ids back into answer text.

Two formats:
- ``chat``: the tokenizer's own chat template (SmolLM2 and most current models);
- a fastchat template name (``vicuna`` for Vicuna, as Spec-Bench does): the prompt string and
  the answer clean-up are byte-identical to Spec-Bench's, so answers stay comparable.
``auto`` picks ``chat`` when the tokenizer has a chat template, else ``vicuna``.
Multi-turn questions carry the conversation across turns: turn 2's prompt holds turn 1's
cleaned answer, as Spec-Bench does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Conversation:
    tokenizer: object
    template: str  # "chat" or a fastchat template name
    stop_token_ids: frozenset[int] = frozenset()
    stop_strings: tuple[str, ...] = ()
    _messages: list[tuple[str, str]] = field(default_factory=list)  # (question, answer) pairs

    def prompt_ids(self, question: str) -> list[int]:
        """Token ids of the prompt for the next turn, after the turns already answered."""
        if self.template == "chat":
            messages = []
            for q, a in self._messages:
                messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            messages.append({"role": "user", "content": question})
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(self.tokenizer(text, add_special_tokens=False).input_ids)
        from fastchat.model import get_conversation_template

        conv = get_conversation_template(self.template)
        for q, a in self._messages:
            conv.append_message(conv.roles[0], q)
            conv.append_message(conv.roles[1], a)
        conv.append_message(conv.roles[0], question)
        conv.append_message(conv.roles[1], None)
        return list(self.tokenizer([conv.get_prompt()]).input_ids[0])

    def answer_text(self, generated: list[int]) -> str:
        """The cleaned answer text (what is stored and what the next turn's prompt holds)."""
        if self.template == "chat":
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            for stop in self.stop_strings:
                text = text.split(stop, 1)[0]
            return text.strip()
        # Spec-Bench's clean-up, step by step (reference: harness output post-processing).
        ids = [t for t in generated]
        text = self.tokenizer.decode(ids, spaces_between_special_tokens=False)
        for stop in self.stop_strings:
            if text.find(stop) > 0:
                text = text[: text.find(stop)]
        for special in self.tokenizer.special_tokens_map.values():
            if isinstance(special, list):
                for s in special:
                    text = text.replace(s, "")
            else:
                text = text.replace(special, "")
        return text.strip()

    def record(self, question: str, answer: str) -> None:
        self._messages.append((question, answer))


def resolve_template(tokenizer, requested: str) -> str:
    if requested == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "vicuna"
    if requested == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("--conv-template chat: this tokenizer has no chat template; name a "
                         "fastchat template instead (e.g. vicuna)")
    return requested


def stop_conditions(tokenizer, model, template: str) -> tuple[frozenset[int], tuple[str, ...]]:
    """EOS ids of the tokenizer and generation config, plus the template's stop tokens/strings."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        ids.update(int(i) for i in gen_eos)
    strings: tuple[str, ...] = ()
    if template != "chat":
        from fastchat.model import get_conversation_template

        conv = get_conversation_template(template)
        ids.update(conv.stop_token_ids or [])
        stop = conv.stop_str or ("</s>" if template == "vicuna" else None)
        if isinstance(stop, str):
            strings = (stop,)
        elif stop:
            strings = tuple(stop)
    return frozenset(ids), strings


def new_conversation(tokenizer, model, requested_template: str = "auto") -> Conversation:
    template = resolve_template(tokenizer, requested_template)
    ids, strings = stop_conditions(tokenizer, model, template)
    return Conversation(tokenizer=tokenizer, template=template, stop_token_ids=ids, stop_strings=strings)
