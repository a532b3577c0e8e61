"""Acceptance: which drafted nodes the target keeps, and the target's own next token.

Both rules walk the tree from the root. ``logits`` rows are [root, node 0, ..., node n-1]: row
``i + 1`` is the target's prediction for the token that follows node ``i``.

- Greedy: a candidate is accepted iff its parent was accepted (the root always is) and its token
  equals the argmax at its parent. The deepest accepted node wins (the first one on ties), and the
  argmax at it is the bonus token.
- Sampling (temperature > 0): at the current node, its candidate children are tried in order.
  A child x drawn from q (one-hot on x when the drafter gives no probabilities) is accepted with
  probability min(1, p(x) / q(x)); on rejection p becomes norm(max(p - q, 0)) and the next child
  is tried. If a child is accepted the walk moves to it with the target's distribution there; if
  all are rejected the committed token is sampled from the residual p. This is the SpecInfer/EAGLE
  multi-candidate rule and reduces to Leviathan et al.'s rule for a chain; the committed tokens
  are distributed exactly as if sampled from p one at a time.
- Typical acceptance (Medusa's option, LOSSY): a candidate x is accepted iff its parent was and
  p(x) > min(eps, delta * exp(-H(p))) at the parent, with p the target distribution there and H
  its entropy. The deepest accepted node wins (ties: the larger sum of log p along the path) and
  the next token is sampled from p at it. Committed text no longer follows p exactly, so only a
  drafter that marks itself lossy may use it (see ``Drafter.sampling_acceptance``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from methods.core.drafter import DecodingConfig
from methods.core.sampling import sample, target_probs
from methods.core.tree import DraftTree


@dataclass
class Acceptance:
    accepted_nodes: list[int]  # root's child first
    next_token: int  # the target's own token after the last accepted node


def accept_greedy(tree: DraftTree, logits: torch.Tensor) -> Acceptance:
    predicted = logits.argmax(dim=-1).tolist()
    n = len(tree)
    if n == 0:
        return Acceptance([], predicted[0])
    tokens = tree.tokens.tolist()
    parents = tree.parents.tolist()
    candidate = tree.candidates.tolist()
    accepted = [False] * n
    depth = [0] * n
    best, best_depth = -1, 0
    for i in range(n):
        parent = parents[i]
        if not candidate[i] or (parent >= 0 and not accepted[parent]):
            continue
        if tokens[i] == predicted[parent + 1]:
            accepted[i] = True
            depth[i] = 1 if parent < 0 else depth[parent] + 1
            if depth[i] > best_depth:
                best, best_depth = i, depth[i]
    return Acceptance(tree.path_to(best), predicted[best + 1])


def accept_sampling(tree: DraftTree, logits: torch.Tensor, config: DecodingConfig,
                    generator: torch.Generator | None) -> Acceptance:
    probs = target_probs(logits, config)
    children = tree.children()
    tokens = tree.tokens.tolist()
    draft_probs = tree.draft_probs
    node = -1
    path: list[int] = []
    while True:
        p = probs[node + 1]
        moved = False
        for child in children[node + 1]:
            x = tokens[child]
            if draft_probs is None:
                q_x = 1.0
            else:
                q = draft_probs[child].to(p.dtype)
                q_x = float(q[x])
            p_x = float(p[x])
            u = float(torch.rand((), generator=generator, device=p.device))
            if q_x > 0.0 and u * q_x < p_x:  # u < min(1, p/q) without dividing by zero
                path.append(child)
                node = child
                moved = True
                break
            if draft_probs is None:
                residual = p.clone()
                residual[x] = 0.0
            else:
                residual = torch.clamp(p - q, min=0.0)
            total = float(residual.sum())
            # total == 0 only when p was already all on rejected mass: rejection then had
            # probability 0 and cannot happen except through rounding; keep p as it was.
            if total > 0.0:
                p = residual / total
        if not moved:
            return Acceptance(path, sample(p, generator))


def accept_typical(tree: DraftTree, logits: torch.Tensor, config: DecodingConfig,
                   generator: torch.Generator | None, posterior_threshold: float = 0.09,
                   posterior_alpha: float = 0.3) -> Acceptance:
    """Medusa's typical acceptance (eps = posterior_threshold, delta = posterior_alpha)."""
    probs = target_probs(logits, config)
    entropy = -(probs * torch.log(probs + 1e-5)).sum(dim=-1)
    threshold = torch.minimum(torch.full_like(entropy, posterior_threshold),
                              posterior_alpha * torch.exp(-entropy)).tolist()
    n = len(tree)
    tokens = tree.tokens.tolist()
    parents = tree.parents.tolist()
    candidate = tree.candidates.tolist()
    accepted = [False] * n
    depth = [0] * n
    score = [0.0] * n
    best, best_key = -1, (0, 0.0)
    for i in range(n):
        parent = parents[i]
        if not candidate[i] or (parent >= 0 and not accepted[parent]):
            continue
        p_x = float(probs[parent + 1, tokens[i]])
        if p_x > threshold[parent + 1]:
            accepted[i] = True
            depth[i] = 1 if parent < 0 else depth[parent] + 1
            score[i] = math.log(p_x) + (0.0 if parent < 0 else score[parent])
            if (depth[i], score[i]) > best_key:
                best, best_key = i, (depth[i], score[i])
    return Acceptance(tree.path_to(best), sample(probs[best + 1], generator))
