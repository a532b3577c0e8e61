"""DFlash's block draft on a frozen base (the DFlash training of SpecForge / speculators, sized
for a CPU budget).

Per conversation the frozen target has run once (training/features.py); the draft reads its
fused features [h_a, h_b, ...] (outputs of the target layers ``target_layer_ids``, i.e. inputs
of layers j + 1) at every position. Each optimiser step takes a set of *anchors*: positions a
whose next token is an answer token, sampled afresh every epoch (at most ``--dflash-anchors`` per
conversation). Anchor a makes the block [x_a, MASK x (B - 1)] at positions a .. a + B - 1, exactly
the block the drafter runs when x_a is the root (methods/drafters/dflash.py). All blocks of a
conversation go through the draft in one forward: keys and values are the context rows of the
whole conversation followed by every block row; a block row sees the context rows strictly
before its anchor (the anchor's own feature does not exist yet at drafting time) and the rows of
its own block, both ways; other blocks are invisible.

Block row k (1 <= k < B) predicts the token at a + k. Loss: cross-entropy on those labels where
they are answer tokens inside the draft vocabulary, weighted by exp(-(k - 1) / gamma) (early rows
matter more: a chain is only accepted up to its first miss) and normalised by the weights' sum.
Row 0 is never trained. The labels are the target's own greedy tokens (the corpus answers), the
hard version of speculators' distillation target.

The draft's output goes through its final norm and the base's lm_head restricted to a draft
vocabulary (the N most frequent answer tokens of the training split; cheaper on a CPU, where the
head's rows dominate the draft's cost), stored as ``draft_vocab``. Embeddings and head rows are
the base's and are not stored. The final norm starts from the base's final norm, so the draft
starts out speaking the head's language. The mask token is a base token that never occurs in the
corpus (its embedding row, frozen, as published).

Held-out metrics (no gradient), over every held-out anchor with a whole block of answer tokens
after it: ``depth 1`` = the first drafted token right; ``depth 1-k`` = the first k all right, i.e.
how often a chain would be accepted at least k deep. The mean accepted tokens per step of a
chain of B - 1 drafts is then 1 + the sum of the row (``mean_accepted``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from methods.core.hidden_states import HiddenStateRequest
from methods.heads.artifact import base_fingerprint, save_artifact
from methods.heads.dflash import DFlashDraftModel, DFlashShape, default_target_layer_ids
from methods.heads.eagle import EagleShape
from training.draft_vocab import DEFAULT_SIZE, UNKNOWN, draft_vocabulary
from training.recipes import Recipe, exact_batches


def parse_layer_ids(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        ids = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"--dflash-target-layers {text!r}: give target layer ids, e.g. 1,14,27") from None
    return ids


class DFlashRecipe(Recipe):
    name = "dflash"
    top1_is_chain = True
    # batch_size counts anchors (blocks) per optimiser step.
    defaults = {"epochs": 10, "lr": 1e-3, "batch_size": 256, "warmup": 0.05, "weight_decay": 0.0}
    shared_note = ("the base's embeddings and lm_head are shared and not stored here (the draft scores the "
                   "base's head rows of its draft vocabulary).")
    metric_label = ("Held-out accuracy of one block forward: depth 1 = the first drafted token right; depth 1-k = the "
                    "first k drafted tokens all right (a chain accepted at least k deep); mean accepted tokens per "
                    "step of the whole chain = 1 + the row's sum")
    extra_metrics = {"mean_accepted": "mean accepted"}

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--dflash-block-size", type=int, default=8,
                           help="block size B: the root and B - 1 masked positions filled by one forward")
        group.add_argument("--dflash-layers", type=int, default=1, help="draft decoder layers")
        group.add_argument("--dflash-intermediate", type=int, default=None,
                           help="MLP width of the draft layers (default: the base's intermediate size)")
        group.add_argument("--dflash-target-layers", default=None,
                           help="target layers whose outputs are fused, as published ids j (the output of layer j = "
                                "the input of layer j + 1), e.g. 1,14,27 (default: --dflash-features ids spread from "
                                "layer 1 to L - 3, the published rule)")
        group.add_argument("--dflash-features", type=int, default=3,
                           help="how many target layers the default choice fuses")
        group.add_argument("--dflash-anchors", type=int, default=64,
                           help="blocks per conversation per epoch, sampled afresh every epoch among the positions "
                                "followed by an answer token")
        group.add_argument("--dflash-gamma", type=float, default=4.0,
                           help="loss weight decay over the block: row k weighs exp(-(k - 1) / gamma)")
        group.add_argument("--dflash-draft-vocab", type=int, default=DEFAULT_SIZE,
                           help="draft vocabulary: the N most frequent answer tokens of the corpus, whose base head "
                                "rows the draft scores (0 = the whole vocabulary)")
        group.add_argument("--dflash-mask-token-id", type=int, default=None,
                           help="mask token (default: the lowest id that occurs nowhere in the corpus and is not "
                                "the base's bos, eos or pad)")

    def __init__(self, args) -> None:
        super().__init__(args)
        minimum = {"block_size": 2, "layers": 1, "features": 1, "anchors": 1, "draft_vocab": 0}
        for name, least in minimum.items():
            if getattr(args, f"dflash_{name}") < least:
                raise ValueError(f"--dflash-{name.replace('_', '-')} must be at least {least}")
        if args.dflash_gamma <= 0:
            raise ValueError("--dflash-gamma must be positive")
        self.layer_ids = parse_layer_ids(args.dflash_target_layers)
        self.block = args.dflash_block_size

    @property
    def metric_names(self):
        return tuple("depth 1" if k == 1 else f"depth 1-{k}" for k in range(1, self.block))

    def prepare(self, base) -> None:
        depth = int(base.config.get_text_config().num_hidden_layers)
        if self.layer_ids is None:
            self.layer_ids = default_target_layer_ids(depth, self.args.dflash_features)
        bad = [j for j in self.layer_ids if not -1 <= j <= depth - 2]
        if bad:
            raise ValueError(f"--dflash-target-layers {list(self.layer_ids)}: ids must lie in -1 .. {depth - 2} for a "
                             f"base of {depth} layers (the last layer's raw output is not read)")
        self.depth = depth

    def request(self) -> HiddenStateRequest:
        if self.layer_ids is None:
            raise RuntimeError("request() before the base is known")  # set by prepare()
        return HiddenStateRequest(layer_inputs=tuple(sorted({j + 1 for j in self.layer_ids})))

    # ------------------------------------------------------------------ data
    def _mask_token(self, base, tokens: np.ndarray, vocab_size: int) -> int:
        if self.args.dflash_mask_token_id is not None:
            mask = self.args.dflash_mask_token_id
            if not 0 <= mask < vocab_size:
                raise ValueError(f"--dflash-mask-token-id {mask}: the base has {vocab_size} tokens")
            return mask
        config = base.config.get_text_config()
        reserved = {getattr(config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        seen = np.zeros(vocab_size, dtype=bool)
        seen[tokens] = True
        return int(next(i for i in range(vocab_size) if not seen[i] and i not in reserved))

    def build(self, base, features, generator) -> DFlashDraftModel:
        tokens, answer, starts = features.tokens, features.answer, features.starts
        self.tokens, self.answer, self.starts = tokens, answer, starts
        vocab_size = int(base.get_output_embeddings().weight.shape[0])
        chosen = draft_vocabulary(features, self.args.dflash_draft_vocab, vocab_size, zero_is_whole_vocabulary=True,
                                  inherited=self.inherited_vocab)
        self.vocab, self.t2d, self.vocab_coverage = chosen.ids, chosen.t2d, chosen.coverage
        self.mask_token_id = self._mask_token(base, tokens, vocab_size)
        self._anchors(features)
        self.features = [np.asarray(features.layer_inputs[j + 1]) for j in self.layer_ids]

        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        inner = EagleShape.like_base(base, intermediate_size=self.args.dflash_intermediate)
        self.shape = DFlashShape(
            hidden_size=inner.hidden_size, intermediate_size=inner.intermediate_size,
            num_attention_heads=inner.num_attention_heads, num_key_value_heads=inner.num_key_value_heads,
            head_dim=inner.head_dim, num_layers=self.args.dflash_layers, target_layer_ids=tuple(self.layer_ids),
            block_size=self.block, mask_token_id=self.mask_token_id, vocab_size=vocab_size,
            rms_norm_eps=inner.rms_norm_eps, rope_theta=inner.rope_theta)
        whole = self.args.dflash_draft_vocab == 0
        self.module = DFlashDraftModel(self.shape, draft_vocab=None if whole else torch.from_numpy(self.vocab))
        with torch.no_grad():  # the base's final norm: the head reads what it is used to
            final_norm = getattr(getattr(base, "model", None), "norm", None)
            if final_norm is not None and final_norm.weight.shape == self.module.norm.weight.shape:
                self.module.norm.weight.copy_(final_norm.weight)
        self.module.bind(base)
        self.base = base
        return self.module

    def _anchors(self, features) -> None:
        """Per conversation the anchor candidates (positions followed by an answer token) and the
        held-out anchors with a whole block of answer tokens after them."""
        starts, answer = features.starts, features.answer
        self.candidates: dict[int, np.ndarray] = {}
        full: dict[int, np.ndarray] = {}
        for s in range(len(starts) - 1):
            a, b = int(starts[s]), int(starts[s + 1])
            local = np.flatnonzero(answer[a + 1: b])  # the position before each answer token, 0-based in s
            if len(local):
                self.candidates[s] = local
                ends = local + self.block - 1
                room = ends < b - a
                whole = np.array([bool(answer[a + e - self.block + 2: a + e + 1].all()) for e in ends[room]], dtype=bool)
                full[s] = local[room][whole]
        heldout = features.heldout
        self.train_sequences = np.array([s for s in self.candidates if not heldout[s]], dtype=np.int64)
        self.heldout_sequences = np.array([s for s in full if heldout[s] and len(full[s])], dtype=np.int64)
        self.heldout_blocks = {int(s): full[s] for s in self.heldout_sequences}
        per = [min(self.args.dflash_anchors, len(self.candidates[s])) for s in self.train_sequences]
        self.anchors_per_epoch = int(sum(per))
        # Positions the loss can reach (for the README): every candidate of the training split.
        self.train_positions = np.arange(sum(len(self.candidates[s]) for s in self.train_sequences))
        self.heldout_positions = np.arange(sum(len(v) for v in self.heldout_blocks.values()))

    def summary(self) -> str:
        return (f"{len(self.train_positions)} training anchors ({self.anchors_per_epoch} sampled per epoch) and "
                f"{len(self.heldout_positions)} held-out blocks ({len(self.train_sequences)} / "
                f"{len(self.heldout_sequences)} conversations), target layers {list(self.layer_ids)}, block "
                f"{self.block}, mask token {self.mask_token_id}, draft vocabulary {len(self.vocab)} tokens "
                f"({self.vocab_coverage:.1%} of held-out answer tokens), "
                f"{sum(p.numel() for p in self.module.parameters()) / 1e6:.2f}M parameters")

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.anchors_per_epoch / batch_size)

    def train_batches(self, rng, batch_size: int):
        """One epoch: conversations in an order drawn from rng, each with its anchors drawn afresh,
        cut into batches of ``batch_size`` anchors (a conversation may straddle two batches)."""
        def drawn(s):
            candidates = self.candidates[int(s)]
            take = min(self.args.dflash_anchors, len(candidates))
            return np.sort(rng.choice(candidates, take, replace=False))

        # A generator: each conversation's anchors are drawn when its turn comes, as before.
        yield from exact_batches(((s, drawn(s)) for s in rng.permutation(self.train_sequences)), batch_size)

    # ------------------------------------------------------------------ maths
    def _tensors(self, items: list[tuple[int, np.ndarray]]):
        """A batch of conversations with their anchors: fused features [S, T, n·H], block tokens and
        positions [S, A·B], labels in draft columns with their loss weights, and the visibility."""
        block, gamma = self.block, self.args.dflash_gamma
        spans = [(int(self.starts[s]), int(self.starts[s + 1])) for s, _ in items]
        width = max(int(anchors.max()) for _, anchors in items)  # context rows any block can see
        width = max(width, 1)
        rows = max(len(anchors) for _, anchors in items) * block
        batch = len(items)
        hidden = self.features[0].shape[1]
        feats = torch.zeros(batch, width, len(self.features) * hidden)
        block_tokens = torch.full((batch, rows), self.mask_token_id, dtype=torch.long)
        positions = torch.zeros(batch, rows, dtype=torch.long)
        labels = torch.full((batch, rows), UNKNOWN, dtype=torch.long)
        visible = torch.zeros(batch, rows, width + rows, dtype=torch.bool)
        offsets = torch.arange(block)
        weight_of_row = torch.cat([torch.zeros(1), torch.exp(-(offsets[1:] - 1).float() / gamma)])
        for i, ((a, b), (_, anchors)) in enumerate(zip(spans, items)):
            n = min(width, b - a)
            feats[i, :n] = torch.from_numpy(np.concatenate([f[a: a + n] for f in self.features], axis=1)
                                            .astype(np.float32))
            for j, anchor in enumerate(anchors.tolist()):
                r = slice(j * block, (j + 1) * block)
                block_tokens[i, j * block] = int(self.tokens[a + anchor])
                positions[i, r] = anchor + offsets
                targets = anchor + offsets[1:]
                inside = targets < b - a
                labelled = torch.zeros(block - 1, dtype=torch.long).fill_(UNKNOWN)
                ok = targets[inside]
                trained = torch.from_numpy(self.answer[a + ok.numpy()].copy())
                mapped = torch.from_numpy(self.t2d[self.tokens[a + ok.numpy()]])
                labelled[: len(ok)] = torch.where(trained, mapped, torch.full_like(mapped, UNKNOWN))
                labels[i, j * block + 1: (j + 1) * block] = labelled
                visible[i, r, :anchor] = True  # context strictly before the anchor
                visible[i, r, width + j * block: width + (j + 1) * block] = True  # its own block, both ways
            pad = slice(len(anchors) * block, rows)  # padded blocks see themselves only (no empty row)
            visible[i, pad, width:] = torch.eye(rows, dtype=torch.bool)[pad]
        weights = weight_of_row.repeat(rows // block)[None].expand(batch, -1) * (labels != UNKNOWN)
        return feats, block_tokens, positions, labels, weights, visible

    def _hidden(self, feats, block_tokens, positions, visible):
        context = self.module.context_kv(feats, torch.arange(feats.shape[1])[None])
        return self.module(self.module.embed(block_tokens), positions, context, visible)

    def loss(self, batch) -> torch.Tensor:
        feats, block_tokens, positions, labels, weights, visible = self._tensors(batch)
        hidden = self._hidden(feats, block_tokens, positions, visible)
        trained = weights > 0
        if not bool(trained.any()):
            return hidden.sum() * 0.0  # nothing to learn in this batch (every label outside the vocabulary)
        per_row = F.cross_entropy(self.module.logits(hidden[trained]), labels[trained], reduction="none")
        w = weights[trained]
        return (per_row * w).sum() / w.sum()

    @torch.no_grad()
    def evaluate(self, batch_size: int = 256) -> dict:
        block, per_item = self.block, self.args.dflash_anchors
        right = np.zeros(block - 1, dtype=np.int64)
        counted = 0
        # Held-out blocks in pieces of at most --dflash-anchors per conversation, as in training,
        # so that one forward's size stays that of a training batch.
        items = [(int(s), blocks[i: i + per_item]) for s, blocks in self.heldout_blocks.items()
                 for i in range(0, len(blocks), per_item)]
        batch: list = []
        for item in self.heldout_progress(items + [None], "piece"):
            if item is not None and sum(len(a) for _, a in batch) + len(item[1]) <= max(batch_size, len(item[1])):
                batch.append(item)
                continue
            if batch:
                feats, block_tokens, positions, labels, _, visible = self._tensors(batch)
                predicted = self.module.logits(self._hidden(feats, block_tokens, positions, visible)).argmax(-1)
                for i, (_, anchors) in enumerate(batch):
                    got = predicted[i, : len(anchors) * block].view(-1, block)[:, 1:]
                    want = labels[i, : len(anchors) * block].view(-1, block)[:, 1:]
                    right += torch.cumprod(((got == want) & (want != UNKNOWN)).long(), dim=1).sum(0).numpy()
                    counted += len(anchors)
            batch = [item]
        top1 = [round(float(r) / max(counted, 1), 4) for r in right]
        return {"top1": top1, "positions": [counted] * (block - 1), "mean_accepted": round(1 + sum(top1), 3)}

    # ------------------------------------------------------------------ artifact
    def start_as_identity(self, missing: set[str]) -> bool:
        """A draft of more layers started from one of fewer (--init-from with a larger
        --dflash-layers): the artifact's layers are the first ones, and each added layer starts
        with zero output projections (o_proj, down_proj), so that its attention and MLP add
        nothing to the residual stream and the draft begins exactly where the artifact was. The
        first step's gradients reach those projections, and through them the rest of the layer."""
        layers, names = self.module.layers, self.artifact_tensors()
        own = {i: {name for name in names if name.startswith(f"layers.{i}.")} for i in range(len(layers))}
        added = [i for i in own if own[i] & missing]
        if not added or added != list(range(added[0], len(layers))) or missing != set().union(*(own[i] for i in added)):
            return False  # not whole layers at the end: some other shape of draft
        with torch.no_grad():
            for i in added:
                for projection in (layers[i].self_attn.o_proj, layers[i].mlp.down_proj):
                    projection.weight.zero_()
                    if projection.bias is not None:
                        projection.bias.zero_()
        return True

    def artifact_tensors(self) -> dict:
        tensors = dict(self.module.state_dict())
        if self.module.draft_vocab is not None:
            tensors["draft_vocab"] = torch.from_numpy(self.vocab.astype(np.int32))
        return tensors

    def save(self, out, meta: dict) -> None:
        s = self.shape
        tensors = self.artifact_tensors()
        config = {
            # z-lab's DFlash config (a Qwen3 config of the draft plus dflash_config), so one loader
            # reads both; the keys after "method" are ours.
            "architectures": ["DFlashDraftModel"], "model_type": "qwen3",
            "hidden_size": s.hidden_size, "intermediate_size": s.intermediate_size,
            "num_attention_heads": s.num_attention_heads, "num_key_value_heads": s.num_key_value_heads,
            "head_dim": s.head_dim, "num_hidden_layers": s.num_layers, "num_target_layers": self.depth,
            "rms_norm_eps": s.rms_norm_eps, "rope_theta": s.rope_theta, "hidden_act": "silu",
            "attention_bias": False, "vocab_size": s.vocab_size, "tie_word_embeddings": False,
            "layer_types": ["full_attention"] * s.num_layers, "block_size": s.block_size,
            "dflash_config": {"mask_token_id": s.mask_token_id, "target_layer_ids": list(s.target_layer_ids),
                              "block_size": s.block_size},
            "method": "dflash",
            "base_model_name_or_path": meta["base_model"],
            "shares_base_embeddings": True, "shares_base_lm_head": True,
            "draft_vocab_tokens": int(len(self.vocab)),
            "loss": {"gamma": self.args.dflash_gamma, "anchors_per_conversation": self.args.dflash_anchors},
            "base_fingerprint": base_fingerprint(self.base),
            "training": meta["training"],
            "metrics": meta["metrics"],
        }
        save_artifact(out, config, tensors, self.weights_file)
