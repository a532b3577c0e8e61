"""Which question categories form which reported subtask, and their display names.

The one place that knows the grouping: the question loader, the runner, speed.py, equal.py and
the leaderboard all ask here.
"""

from __future__ import annotations

# The eight MT-bench categories are reported together as one subtask.
MT_BENCH_CATEGORIES: tuple[str, ...] = (
    "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities",
)

# Subtasks in report order, with the column names of Spec-Bench's Leaderboard.md.
SUBTASK_DISPLAY_NAMES: dict[str, str] = {
    "mt_bench": "Multi-turn Conversation",
    "translation": "Translation",
    "summarization": "Summarization",
    "qa": "Question Answering",
    "math_reasoning": "Mathematical Reasoning",
    "rag": "Retrieval-aug. Generation",
    # Extra subtasks of our own bundled set (and of our seed experiments).
    "law_analytics": "Law Analytics",
    "grammar_correction": "Grammar Correction",
}
SPEC_BENCH_SUBTASKS: tuple[str, ...] = (
    "mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag",
)
OVERALL = "overall"

# Spellings seen in other answer files for our extra subtasks.
_ALIASES = {"law analytics": "law_analytics", "grammar correction": "grammar_correction"}

KNOWN_CATEGORIES: frozenset[str] = frozenset(MT_BENCH_CATEGORIES) | frozenset(
    name for name in SUBTASK_DISPLAY_NAMES if name != "mt_bench"
) | frozenset(_ALIASES)


def subtask_of(category: str) -> str:
    """The reported subtask of a question category (an unknown category is its own subtask)."""
    if category in MT_BENCH_CATEGORIES:
        return "mt_bench"
    return _ALIASES.get(category, category)


def display_name(subtask: str) -> str:
    if subtask == OVERALL:
        return "Overall"
    return SUBTASK_DISPLAY_NAMES.get(subtask, subtask.replace("_", " ").title())


def ordered_subtasks(present: set[str] | list[str]) -> list[str]:
    """Known subtasks in report order first, then any others alphabetically."""
    present = set(present)
    known = [s for s in SUBTASK_DISPLAY_NAMES if s in present]
    return known + sorted(present - set(known))
