"""The draft vocabulary: which target token ids a trained drafter scores.

A drafter that projects onto the vocabulary pays for every row it scores; on a CPU the projection
onto all 49,152 ids of the embedded model costs as much as the draft layer itself. The tokens a
target actually writes are few and skewed, so a drafter scores only the answer tokens of its
training corpus, optionally only the N most frequent of them (as EAGLE-3's published recipe and
FR-Spec do). A label outside the kept ids is never trained on and counts as a miss when held-out
accuracy is measured, so the accuracy a recipe prints already includes what the cut costs.

One rule for every recipe, so that sizes measured on one method mean the same on another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNKNOWN = -1  # the column of a token outside the draft vocabulary

# Every recipe's default size. On the corpus of 16k conversations written by the embedded model
# (2.8M answer tokens, 25,368 distinct), the N most frequent training-split ids cover this share
# of the held-out answer tokens: 4096 -> 90.9%, 8192 -> 95.4%, 16384 -> 98.1%, all -> 99.2%.
# At 8192 the cut caps depth-1 accuracy far above what any of our drafters reaches, and the
# projection reads 8192 x 576 weights, about 1.3 decoder layers of the embedded model, where all
# 25k answer ids would cost 4 layers' worth on every draft token.
DEFAULT_SIZE = 8192


def frequent_answer_ids(tokens: np.ndarray, counted: np.ndarray, size: int) -> np.ndarray:
    """Ascending ids of the ``size`` most frequent tokens among ``tokens[counted]`` (0 = all of
    them). Ties go to the smaller id, so the choice is deterministic."""
    if size < 0:
        raise ValueError(f"a draft vocabulary size must be 0 (every answer token) or positive, not {size}")
    ids, counts = np.unique(tokens[counted], return_counts=True)  # ids ascending
    if size and size < len(ids):
        ids = ids[np.argsort(-counts, kind="stable")[:size]]
    return np.sort(ids).astype(np.int64)


def token_to_column(vocab: np.ndarray, vocab_size: int) -> np.ndarray:
    """For every target id, its column in the draft vocabulary, or UNKNOWN."""
    t2d = np.full(vocab_size, UNKNOWN, dtype=np.int64)
    t2d[vocab] = np.arange(len(vocab))
    return t2d


def coverage(tokens: np.ndarray, counted: np.ndarray, vocab: np.ndarray) -> float:
    """Share of the counted token occurrences whose id the vocabulary keeps (the ceiling on a
    draft's accuracy that the cut imposes)."""
    chosen = tokens[counted]
    return float(np.isin(chosen, vocab).mean()) if len(chosen) else 1.0


@dataclass
class DraftVocabulary:
    ids: np.ndarray  # ascending target ids the drafter scores
    t2d: np.ndarray  # every target id's column, or UNKNOWN
    coverage: float  # share of held-out answer tokens whose id is kept


class VocabularyMismatch(ValueError):
    """An inherited draft vocabulary that the run's options or base cannot take."""


def draft_vocabulary(features, size: int, vocab_size: int, zero_is_whole_vocabulary: bool = False,
                     inherited: np.ndarray | None = None) -> DraftVocabulary:
    """The draft vocabulary of a recipe on a corpus's features: the ``size`` most frequent answer
    tokens of the training split, with the map from target ids and the held-out coverage. Size 0
    keeps every training answer token, or, with ``zero_is_whole_vocabulary``, every target id.

    ``inherited``: the ids of the artifact a run starts from (``--init-from``), kept as they are,
    since its weights score exactly those tokens; a run that trains a drafter further on another
    slice of the corpus would otherwise rank a slightly different set. It may not hold more ids
    than the size asked for (size 0 takes any); fewer is what a corpus with fewer distinct answer
    tokens than the size gives, so it is taken as it is."""
    train = ~features.heldout[features.sequence_of_position]
    tokens, answer = features.tokens, features.answer
    if inherited is not None:
        ids = np.asarray(inherited, dtype=np.int64)
        if size and len(ids) > size:
            raise VocabularyMismatch(f"the artifact scores a draft vocabulary of {len(ids):,} tokens, this run asks "
                                     f"for {size:,} at most: give the size it was trained with")
        if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size or np.any(np.diff(ids) <= 0)):
            raise VocabularyMismatch(f"the artifact's draft vocabulary is not ascending distinct ids below the "
                                     f"base's {vocab_size:,}")
        return DraftVocabulary(ids, token_to_column(ids, vocab_size), coverage(tokens, answer & ~train, ids))
    if size == 0 and zero_is_whole_vocabulary:
        ids = np.arange(vocab_size, dtype=np.int64)
    else:
        ids = frequent_answer_ids(tokens, answer & train, size)
    return DraftVocabulary(ids, token_to_column(ids, vocab_size), coverage(tokens, answer & ~train, ids))
