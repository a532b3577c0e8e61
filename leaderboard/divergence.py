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


def steps_html(token_ids: list[int], accept_lengths: list[int]) -> str:
    """The turn's token ids grouped by the decoding step that committed them, each step tinted
    and titled with its number and size: a long step is a well-guessed draft. Token ids past the
    accept lengths (a file whose lengths do not cover the turn) are shown untinted."""
    style = "font-family: ui-monospace, monospace; font-size: 0.8em; line-height: 1.9;"
    parts, start = [], 0
    for step, length in enumerate(accept_lengths):
        ids = token_ids[start:start + length]
        if not ids:
            break
        tint = STEP_TINTS[step % len(STEP_TINTS)]
        parts.append(f'<span class="step" title="step {step + 1}: {len(ids)} token(s)" '
                     f'style="background: {tint}; padding: 1px 3px; margin-right: 2px;">'
                     f'{html.escape(" ".join(str(t) for t in ids))}</span>')
        start += length
    if start < len(token_ids):
        parts.append(html.escape(" ".join(str(t) for t in token_ids[start:])))
    return f'<div style="{style}">{" ".join(parts)}</div>'
