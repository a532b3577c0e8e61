"""SuffixDecoding's speculation: score every match length, grow the draft by frequency.

The algorithm (Oliaro et al., 2024; frontier-methods.md A.4-A.6), for one index and a context
whose last token is the root:

    ctx = the last min(D, len(context)) tokens
    for every match length m = 1 .. len(ctx) - 1 whose suffix ctx[-m:] occurs in the index:
        budget = clamp(floor(alpha * m + offset), 0, max_spec_tokens)     # adaptive size
        grow a draft under the match, at most budget tokens and D - m deep: the children of a
        node are its continuations c with probability count(S + c) / count(S); a token's
        probability p is the product of those ratios along its path, and only tokens with
        p >= min_token_prob are drafted; as a chain (the most frequent child each time) or as
        a tree (best first: the most probable token not yet drafted, over all branches)
        score = the sum of the drafted tokens' p (the draft's expected accepted length under
                the frequency model)
    keep the best score; a tie goes to the longer match

and the request's own index and the global one each give their best; the request's wins ties.

Doing that literally costs one walk and one expansion per m. Here the suffixes of the context are
taken from the suffix-link chain of the index's match (methods/drafters/suffix_index.py): all
lengths of one chain state have the same occurrences, so the same continuations and counts, and
differ only in budget and depth limit. For a fixed depth limit the score cannot fall as the budget
grows and the budget cannot fall as m grows, so of the lengths sharing a depth limit only the
longest needs drafting (and it wins any tie, as the longer match). The depth limit D - m (or the
engine's room) only binds where it is below the budget, so a state needs one draft, plus one
per length of the rare band where D - m < budget. A draft also cannot score more than its depth
times the share of its match's occurrences that continue (each level's probabilities sum to at
most the level above's), so a state whose bound does not beat the best so far is skipped: most
long matches of the request's own text occur only once, as the context itself.
tests/test_suffix.py checks the result against the literal algorithm on random sequences.

A node of an index is a pair (state in the corpus index or -1, state in an online automaton or
-1): the global index sums the counts of the corpus and of the run's answers, the request's index
has no corpus part.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from methods.drafters.suffix_index import CorpusSuffixIndex, CountingSuffixAutomaton

NO_STATE = -1
# Children are pre-selected by an integer count bound, then checked exactly with the reference's
# floating-point rule p * (count(S + c) / count(S)) >= min_token_prob; the bound is loosened by
# this much so rounding can never drop a child the exact rule keeps.
BOUND_SLACK = 1e-9


@dataclass(frozen=True)
class SpeculationConfig:
    max_depth: int = 64  # D: match length + draft depth <= D
    max_spec_tokens: int = 32  # cap on the draft's size
    spec_factor: float = 1.0  # alpha: budget = alpha * match length + offset
    spec_offset: float = 0.0
    min_token_prob: float = 0.1  # on the cumulative (path) probability
    tree: bool = True  # best-first tree; False: the most frequent chain

    def budget(self, match_length: int) -> int:
        """The adaptive size: alpha * m + offset tokens, rounded down, within [0, max_spec_tokens]."""
        raw = math.floor(match_length * self.spec_factor + self.spec_offset + 1e-6)
        return max(0, min(self.max_spec_tokens, raw))


@dataclass
class Speculation:
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)  # -1: a child of the root
    probs: list[float] = field(default_factory=list)
    score: float = 0.0
    match_length: int = 0


class IndexView:
    """Counts and ranked continuations over a corpus index and an online automaton together."""

    def __init__(self, corpus: Optional[CorpusSuffixIndex], online: Optional[CountingSuffixAutomaton],
                 vocab_size: Optional[int] = None) -> None:
        self.corpus, self.online = corpus, online
        self.vocab_size = vocab_size if vocab_size is not None else 2**31

    def count(self, node: tuple[int, int]) -> int:
        corpus_state, online_state = node
        total = int(self.corpus.occ[corpus_state]) if corpus_state != NO_STATE else 0
        if online_state != NO_STATE:
            total += self.online.occ[online_state]
        return total

    def children(self, node: tuple[int, int], need: float) -> list[tuple[int, int, tuple[int, int]]]:
        """(count, token, child) of the continuations seen at least ``need`` times, most frequent
        first (ties: smaller token). The counts of both parts add up. The corpus's continuations
        are ranked, so only those that could reach ``need`` with the online part's most frequent
        continuation added are looked at; one left out falls short whatever the online part adds."""
        corpus_state, online_state = node
        found: dict[int, list] = {}  # token -> [count, corpus child, online child]
        most_online = 0
        if online_state != NO_STATE:
            occ = self.online.occ
            for token, target in self.online.next[online_state].items():
                count = occ[target]
                found[token] = [count, NO_STATE, target]
                most_online = max(most_online, count)
        if corpus_state != NO_STATE:
            for count, token, target in self._ranked_corpus_children(corpus_state, need - most_online):
                entry = found.get(token)
                if entry is None:
                    found[token] = [count, target, NO_STATE]
                else:
                    entry[0] += count
                    entry[1] = target
        # An online continuation whose corpus part was not looked at keeps its online count: exact
        # if the corpus never has it, and short of ``need`` either way otherwise.
        vocab = self.vocab_size
        kids = [(count, token, (corpus_child, online_child))
                for token, (count, corpus_child, online_child) in found.items()
                if count >= need and 0 <= token < vocab]  # never a separator or an id the model lacks
        kids.sort(key=lambda kid: (-kid[0], kid[1]))
        return kids

    def _ranked_corpus_children(self, state: int, floor: float) -> list[tuple[int, int, int]]:
        """(count, token, target) of the corpus state's continuations seen at least ``floor``
        times. They are ranked by count, so the slice is read in small chunks (one array read
        per chunk, not one per element) until a count falls below ``floor``."""
        index = self.corpus
        lo, hi = index.edge_start[state: state + 2].tolist()
        out: list[tuple[int, int, int]] = []
        chunk = 8
        while lo < hi:
            end = min(hi, lo + chunk)
            counts = index.ranked_count[lo:end].tolist()
            keep = next((i for i, count in enumerate(counts) if count < floor), len(counts))
            out.extend(zip(counts[:keep], index.ranked_token[lo: lo + keep].tolist(),
                           index.ranked_target[lo: lo + keep].tolist()))
            if keep < len(counts):
                break  # every later one is rarer
            lo, chunk = end, chunk * 4
        return out


# ---------------------------------------------------------------------------------- the context's suffixes
def chain_segments(link, length, state: int, matched: int, longest: int) -> list[tuple[int, int, int]]:
    """(shortest m, longest m, state) for the suffixes of a match of ``matched`` tokens ending in
    ``state``, longest first, m <= ``longest``: the suffix-link chain, each state holding the
    lengths above its link's."""
    top = min(matched, longest)
    segments = []
    while state > 0 and top > 0:
        shorter = int(length[int(link[state])])
        if shorter < top:
            segments.append((shorter + 1, top, state))
            top = shorter
        state = int(link[state])
    return segments


def merge_segments(corpus: list[tuple[int, int, int]], online: list[tuple[int, int, int]]
                   ) -> list[tuple[int, int, tuple[int, int]]]:
    """Segments over which both parts' states stay the same (NO_STATE above a part's match)."""
    merged = []
    top = max(corpus[0][1] if corpus else 0, online[0][1] if online else 0)
    i = j = 0
    while top > 0:
        while i < len(corpus) and corpus[i][0] > top:
            i += 1
        while j < len(online) and online[j][0] > top:
            j += 1
        c_state, c_low = (corpus[i][2], corpus[i][0]) if i < len(corpus) and corpus[i][1] >= top else \
            (NO_STATE, corpus[i][1] + 1 if i < len(corpus) else 1)
        o_state, o_low = (online[j][2], online[j][0]) if j < len(online) and online[j][1] >= top else \
            (NO_STATE, online[j][1] + 1 if j < len(online) else 1)
        low = max(c_low, o_low)
        merged.append((low, top, (c_state, o_state)))
        top = low - 1
    return merged


# ---------------------------------------------------------------------------------- drafting
def _need(min_prob: float, count: int, p: float) -> float:
    return min_prob * count / p * (1.0 - BOUND_SLACK)


def expand_chain(view: IndexView, node, length: int, min_prob: float) -> tuple[list[int], list[float]]:
    """The most frequent continuation, token by token, while its path probability stays >=
    min_prob; at most ``length`` tokens."""
    tokens: list[int] = []
    probs: list[float] = []
    count, p = view.count(node), 1.0
    while len(tokens) < length:
        kids = view.children(node, _need(min_prob, count, p))
        if not kids:
            break
        child_count, token, child = kids[0]
        q = p * (child_count / count)
        if q < min_prob:
            break
        tokens.append(token)
        probs.append(q)
        p, node, count = q, child, child_count
    return tokens, probs


def expand_tree(view: IndexView, node, budget: int, depth_cap: int, min_prob: float) -> Speculation:
    """Best first: draft the most probable token not yet drafted (ties: the one queued first) and
    queue its children that keep p >= min_prob, until ``budget`` tokens; at most ``depth_cap`` deep."""
    out = Speculation()
    if budget < 1 or depth_cap < 1:
        return out
    queue: list = []
    order = 0

    def push_children(parent_node, parent_count: int, p: float, parent_index: int, depth: int) -> None:
        nonlocal order
        for child_count, token, child in view.children(parent_node, _need(min_prob, parent_count, p)):
            q = p * (child_count / parent_count)
            if q < min_prob:
                break  # ranked: the rest are rarer
            heapq.heappush(queue, (-q, order, token, child, child_count, parent_index, depth + 1))
            order += 1

    push_children(node, view.count(node), 1.0, -1, 0)
    while queue and len(out.tokens) < budget:
        neg_q, _, token, child, child_count, parent, depth = heapq.heappop(queue)
        index = len(out.tokens)
        out.tokens.append(token)
        out.parents.append(parent)
        out.probs.append(-neg_q)
        if depth < depth_cap and len(out.tokens) < budget:
            push_children(child, child_count, -neg_q, index, depth)
    out.score = sum(out.probs)
    return out


def _representatives(config: SpeculationConfig, low: int, high: int, room: int) -> list[tuple[int, int, int]]:
    """(m, budget, depth limit) worth drafting among match lengths low..high of one state: per
    distinct binding depth limit the longest m (longest first). Below the first m whose depth
    limit does not bind, every shorter m has a smaller budget and a looser limit: dominated."""
    picks = []
    seen_caps = set()
    for m in range(high, low - 1, -1):
        budget = config.budget(m)
        cap = min(config.max_depth - m, room)
        if cap >= budget:
            picks.append((m, budget, budget))
            break
        if cap not in seen_caps:
            seen_caps.add(cap)
            picks.append((m, budget, cap))
    return picks


def speculate(view: IndexView, segments: Sequence[tuple[int, int, tuple[int, int]]], config: SpeculationConfig,
              room: int, beat: float = 0.0, open_length: int = 0) -> Optional[Speculation]:
    """The best draft over the match lengths in ``segments`` (longest first) whose score is
    strictly above ``beat`` (None if none is): later, shorter matches need a strictly higher
    score, since ties go to the longer match, and a global draft must beat the request's.

    ``open_length``: how many of the context's last tokens end the online part's open sequence
    (the request's text, the answer being generated); a match no longer than that has one
    occurrence, the context itself, that nothing follows yet. The first level of a draft holds
    at most the continuing share of the occurrences and no level holds more than the one above,
    so a draft cannot score more than that share times its depth: a state whose bound does not
    beat the best so far is not drafted."""
    best: Optional[Speculation] = None
    best_score = beat
    for low, high, node in segments:
        count = view.count(node)
        ending = 1 if node[1] != NO_STATE and low <= open_length else 0
        if count <= ending:
            continue  # nothing ever followed it
        share = (count - ending) / count * (1 + BOUND_SLACK)
        picks = [pick for pick in _representatives(config, low, high, room)
                 if min(pick[1], pick[2]) * share > best_score]
        if not picks:
            continue
        if config.tree:
            drafts = [(m, expand_tree(view, node, budget, cap, config.min_token_prob)) for m, budget, cap in picks]
        else:
            tokens, probs = expand_chain(view, node, max(min(b, c) for _, b, c in picks), config.min_token_prob)
            drafts = []
            for m, budget, cap in picks:
                n = min(budget, cap, len(tokens))
                drafts.append((m, Speculation(tokens[:n], list(range(-1, n - 1)), probs[:n], sum(probs[:n]))))
        for m, draft in drafts:  # longest first: a shorter one must score strictly higher
            if draft.score > best_score:
                draft.match_length = m
                best, best_score = draft, draft.score
    return best
