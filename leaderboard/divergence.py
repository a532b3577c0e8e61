"""Where a method's answer first leaves the baseline's, and an HTML view that marks it."""

from __future__ import annotations

import html
from typing import Optional


def first_difference(text: str, base: str) -> Optional[int]:
    """Index of the first differing character; None when the texts are equal.

    When one text is a prefix of the other, the difference starts where the shorter one ends.
    """
    for index, (a, b) in enumerate(zip(text, base)):
        if a != b:
            return index
    if len(text) == len(base):
        return None
    return min(len(text), len(base))


def highlighted_html(text: str, index: Optional[int]) -> str:
    """The text as HTML with everything from `index` on tinted and its first character marked.

    Text is escaped first: model answers contain markdown and HTML that must show literally.
    """
    style = "white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.85em;"
    if index is None or index >= len(text):
        # The text stops where the other one goes on: mark the end itself.
        tail = ('<mark class="divergence" style="background: #f8b4b4;">[ends here]</mark>'
                if index is not None else "")
        return f'<div style="{style}">{html.escape(text)}{tail}</div>'
    same, first, rest = text[:index], text[index], text[index + 1:]
    return (
        f'<div style="{style}">{html.escape(same)}'
        f'<mark class="divergence" style="background: #f8b4b4;">{html.escape(first)}</mark>'
        f'<span style="background: #fde8e8;">{html.escape(rest)}</span></div>'
    )


def question_html(text: str) -> str:
    """A user turn of the question as HTML: escaped, line breaks kept, a long one scrolls."""
    style = ("white-space: pre-wrap; font-size: 0.9em; background: #f3f4f6; border-left: 3px solid "
             "#9ca3af; padding: 6px 10px; margin-bottom: 8px; max-height: 16em; overflow-y: auto;")
    return f'<div class="question" style="{style}">{html.escape(text)}</div>'


def divergence_verdict_text(verdict: str, base_margin: Optional[float],
                            threshold: Optional[float], dtype: Optional[str]) -> str:
    """What equal.py made of a first divergence, in words for the drill-down page."""
    if verdict == "near-tie":
        return (f"Near-tie: the baseline's top two logits there were {base_margin:.3g} apart, "
                f"below {threshold:.3g} ({dtype}); rounding alone can swap them, so this is "
                "numerically fragile, not a sign of a broken method.")
    if verdict == "inherited":
        return ("Inherited: an earlier turn of this question already diverged, so this turn "
                "answers a prompt that differs from the baseline's; it is counted apart from "
                "near-ties and real differences.")
    if verdict == "real":
        return (f"Real difference: the baseline's top two logits there were {base_margin:.3g} "
                f"apart, at least {threshold:.3g} ({dtype}); rounding cannot explain it.")
    return ("Near-tie or real difference: unknown (the baseline recorded no logit margins "
            "there, or the runs' dtype is unknown).")



# Alternating tints: neighbouring decoding steps stay apart however many there are.
STEP_TINTS = ("#dbeafe", "#fde68a")


def steps_html(token_ids: list[int], accept_lengths: list[int],
               pieces: Optional[list[str]] = None) -> str:
    """The turn's tokens grouped by the decoding step that committed them, each step tinted
    and titled with its number and size: a long step is a well-guessed draft. With ``pieces``
    (one decoded text piece per id) each token shows as its text, its id in its title;
    without, as its id. Tokens past the accept lengths (a file whose lengths do not cover the
    turn) are shown untinted."""
    if pieces is not None and len(pieces) != len(token_ids):
        pieces = None  # not this turn's pieces: the ids are still right
    as_text = pieces is not None
    style = ("font-family: ui-monospace, monospace; font-size: 0.8em; line-height: 1.9;"
             + (" white-space: pre-wrap;" if as_text else ""))

    def tokens(start: int, stop: int, step_title: str) -> str:
        if not as_text:
            return html.escape(" ".join(str(t) for t in token_ids[start:stop]))
        return "".join(
            f'<span class="token" title="{html.escape(step_title + f"id {token_ids[i]}")}" '
            f'style="box-shadow: inset -1px 0 rgba(0, 0, 0, 0.12);">{html.escape(pieces[i])}</span>'
            for i in range(start, stop))

    parts, start = [], 0
    for step, length in enumerate(accept_lengths):
        stop = min(start + length, len(token_ids))
        if stop <= start:
            break
        tint = STEP_TINTS[step % len(STEP_TINTS)]
        title = f"step {step + 1}: {stop - start} token(s)"
        spacing = "padding: 1px 0;" if as_text else "padding: 1px 3px; margin-right: 2px;"
        parts.append(f'<span class="step" title="{title}" style="background: {tint}; {spacing}">'
                     f'{tokens(start, stop, title + " · ")}</span>')
        start += length
    if start < len(token_ids):
        parts.append(tokens(start, len(token_ids), "past the accept lengths · "))
    return f'<div style="{style}">{("" if as_text else " ").join(parts)}</div>'


def lengths_per_turn(accept_lengths: list[int], turn_sizes: list[int]) -> Optional[list[list[int]]]:
    """The flat accept lengths cut into each turn's (a turn's lengths sum to its token count);
    None where they do not add up that way."""
    turns, index = [], 0
    for size in turn_sizes:
        taken, total = [], 0
        while total < size and index < len(accept_lengths):
            taken.append(accept_lengths[index])
            total += accept_lengths[index]
            index += 1
        if total != size:
            return None
        turns.append(taken)
    return turns if index == len(accept_lengths) else None
