"""Size a Medusa candidate tree for a device offline, from held-out corpus text.

For every held-out position t whose next token is an answer token, the target's greedy
continuation x_{t+1}, x_{t+2}, ... is known (the corpus is the target's own greedy output) and so
is what each head proposes at f_t. If x_{t+1+d} is head d-1's rank-m_d token, a Medusa step from
t accepts the longest prefix (m_1, ..., m_d) that is a path of the tree. That gives the mean
accepted tokens per step (MAT = 1 + accepted drafts) of any tree without running the engine.

The held-out conversations are split in two halves: the first ranks rank paths by how often they
are accepted and builds the best tree of each size (``best_first_choices``), the second measures
its MAT. Dividing MAT by the cost of a verify forward over (nodes + 1) tokens (``--cost``, ms per
forward by tokens, measured on the device; the default is the 2-core CPU curve of the project's
design notes, interpolated linearly between measured sizes and never extrapolated) ranks the
sizes; head compute (a few small matrix-vector products per step) is left out.

    python -m training.size_medusa_tree --medusa-path data/drafters/smollm2-135m-instruct/medusa \\
        --corpus CORPUS.jsonl.gz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from methods.core.hidden_states import HiddenStateRequest
from methods.core.model_loading import EMBEDDED, load_model
from methods.core.static_tree import MC_SIM_7B_63, StaticTree, best_first_choices
from methods.heads.medusa import load_medusa
from training.features import build_features

CPU_COST = "1:65,2:70,4:130,8:145,16:220,32:245"
SIZES = "1,2,3,4,5,6,8,10,12,16,20,24,31"
TOPK = 10


def parse_cost(text: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        pairs = sorted((int(a), float(b)) for a, b in (item.split(":") for item in text.split(",")))
    except ValueError:
        raise SystemExit(f"--cost: expected TOKENS:MS pairs such as {CPU_COST}, got {text!r}") from None
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def forward_cost(tokens: int, cost) -> float | None:
    sizes, ms = cost
    if tokens < sizes[0] or tokens > sizes[-1]:
        return None  # not measured: no guess
    return float(np.interp(tokens, sizes, ms))


@torch.no_grad()
def match_ranks(heads, features, positions: np.ndarray, depth: int) -> np.ndarray:
    """ranks[i, d] = rank of x_{t+2+d} in head d's top-10 at position t (or -1), -2 past the answer."""
    tokens, answer = features.tokens, features.answer
    end = features.starts[1:][features.sequence_of_position[positions]]
    out = np.full((len(positions), depth), -2, dtype=np.int64)
    dtype = heads.blocks[0].linear.weight.dtype
    for i in range(0, len(positions), 1024):
        chunk = positions[i: i + 1024]
        f = torch.from_numpy(np.asarray(features.final[chunk], dtype=np.float32)).to(dtype)
        h = heads.head_features(f)  # [K, B, H]
        logits = h @ heads._shared_rows.to(dtype).T if heads.projections is None else \
            torch.stack([h[k] @ p.T for k, p in enumerate(heads.projections)])
        top = logits.topk(TOPK, dim=-1).indices
        if heads.draft_vocab is not None:
            top = heads.draft_vocab[top]
        top = top.numpy()
        for d in range(depth):
            target = chunk + d + 2
            ok = target < end[i: i + len(chunk)]
            ok[ok] &= answer[target[ok]]
            label = np.where(ok, tokens[np.minimum(target, len(tokens) - 1)], -1)
            hit = top[d] == label[:, None]
            rank = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
            out[i: i + len(chunk), d] = np.where(ok, rank, -2)
    return out


def accepted_depth(ranks: np.ndarray, paths: set[tuple[int, ...]]) -> np.ndarray:
    depth = np.zeros(len(ranks), dtype=np.int64)
    for i, row in enumerate(ranks):
        d = 0
        while d < len(row) and row[d] >= 0 and tuple(int(r) for r in row[: d + 1]) in paths:
            d += 1
        depth[i] = d
    return depth


def path_frequencies(ranks: np.ndarray) -> dict[tuple[int, ...], float]:
    counts: dict[tuple[int, ...], int] = {}
    for row in ranks:
        for d in range(len(row)):
            if row[d] < 0:
                break
            key = tuple(int(r) for r in row[: d + 1])
            counts[key] = counts.get(key, 0) + 1
    return {k: v / len(ranks) for k, v in counts.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.size_medusa_tree", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--medusa-path", required=True, help="trained or published Medusa folder")
    parser.add_argument("--model-path", default=EMBEDDED, help="the target the heads belong to")
    parser.add_argument("--corpus", required=True, help="the corpus (its held-out split is used)")
    parser.add_argument("--limit", type=int, default=None, help="first N conversations only (as in training)")
    parser.add_argument("--max-length", type=int, default=1024, help="as in training (same feature cache)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1, help="as in training")
    parser.add_argument("--sizes", default=SIZES, help="tree sizes (nodes, root excluded) to build and measure")
    parser.add_argument("--cost", default=CPU_COST, help="ms per verify forward by tokens in it, TOKENS:MS,...")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cost = parse_cost(args.cost)

    loaded = load_model(args.model_path, dtype="float32", device="cpu")
    heads = load_medusa(args.medusa_path, loaded.model)
    features = build_features(loaded.model, loaded.tokenizer, args.corpus, HiddenStateRequest(final=True),
                              limit=args.limit, max_length=args.max_length, heldout_fraction=args.heldout_fraction)
    seq = features.sequence_of_position
    n = len(features.tokens)
    nxt = np.minimum(np.arange(n) + 1, n - 1)
    # Positions t from which a step starts: x_{t+1} (the root) is an answer token of a held-out conversation.
    starts_ok = features.answer[nxt] & (seq[nxt] == seq) & features.heldout[seq]
    heldout_seqs = np.flatnonzero(features.heldout)
    fit_seqs = set(heldout_seqs[::2].tolist())  # every other held-out conversation builds the trees
    positions = np.flatnonzero(starts_ok)
    in_fit = np.array([s in fit_seqs for s in seq[positions]])
    ranks = match_ranks(heads, features, positions, heads.num_heads)
    fit, test = ranks[in_fit], ranks[~in_fit]
    freq = path_frequencies(fit)
    print(f"{len(fit)} positions build the trees, {len(test)} measure them; heads: {heads.num_heads}")
    baseline_ms = forward_cost(1, cost)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        choices = best_first_choices(freq, size)
        mat = 1 + accepted_depth(test, {tuple(p) for p in choices}).mean()
        ms = forward_cost(len(choices) + 1, cost)
        rows.append((f"best {len(choices)}", choices, mat, ms))
    published = StaticTree(MC_SIM_7B_63).truncated(heads.num_heads)
    mat = 1 + accepted_depth(test, set(published.paths)).mean()
    rows.append((f"mc_sim_7b_63 ({len(published)})", [list(p) for p in published.paths], mat,
                 forward_cost(len(published) + 1, cost)))
    print("| tree (nodes) | per depth | MAT | ms per forward | MAT per baseline-forward time |")
    print("|---|---|---|---|---|")
    best = None
    for name, choices, mat, ms in rows:
        per_depth = StaticTree(choices).nodes_per_depth()
        ratio = None if ms is None else mat * baseline_ms / ms
        if ratio is not None and (best is None or ratio > best[0]):
            best = (ratio, name, choices)
        print(f"| {name} | {'/'.join(map(str, per_depth))} | {mat:.3f} | {'n/a' if ms is None else f'{ms:.0f}'} | "
              f"{'n/a (cost not measured)' if ratio is None else f'{ratio:.3f}'} |")
    if best is not None:
        print(f"\nbest for this cost curve: {best[1]} (ratio {best[0]:.3f}); choices = {best[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
