"""SpS's draft model: K decoder layers on the frozen target's embeddings, final norm and lm_head.

The draft is the target's own architecture cut to K layers (methods/heads/sps_draft.py), so it
runs wherever the target runs (the lean backend included) and needs no tensors of its own but
its layers. Its layers start as copies of K target layers (``--sps-init-layers``; default the
first and the last, the rest evenly between: see ``spread_layers`` for why) and are all trained;
the shared tensors stay frozen and are not stored.

Loss: teacher-forced cross-entropy of the draft's next-token logits at every position whose next
token is an answer token, against that token. The logits are those of the draft vocabulary
(``--sps-draft-vocab``, training/draft_vocab.py): the shared lm_head's rows of the corpus's most
frequent answer tokens, the only ids the draft will ever propose; a label outside it is not
trained on and counts as a miss in the held-out metrics. The corpus answers are the target's own greedy
tokens, so the label is exactly what greedy verification accepts there. No target features are
needed: the trainer's feature pass reads only the tokens and the answer mask.

Held-out metrics (no gradient), over every held-out position followed by an answer token:
``depth 1`` = the draft's argmax is the next token; ``depth 1-k`` = the next k all right, i.e.
how often a greedy chain drafted from there is accepted at least k deep (a greedy chain drafted
from its own tokens sees, while it is right, exactly the teacher-forced context, so one forward
gives every chain). The expected accepted tokens per step of a gamma-chain (``--sps-eval-gamma``)
is then 1 + the row's sum (``mean_accepted``), counting every position as a step's start.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from methods.core.hidden_states import HiddenStateRequest
from methods.heads.sps_draft import WEIGHTS_FILE as SPS_WEIGHTS_FILE
from methods.heads.sps_draft import (draft_tensors, draft_with_layers, layers_from_target, save_sps_draft,
                                     spread_layers)
from training.draft_vocab import DEFAULT_SIZE, UNKNOWN, draft_vocabulary
from training.recipes import Recipe, exact_batches


def parse_layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in str(text).split(",")]
    except ValueError:
        raise ValueError(f"--sps-init-layers {text!r}: give target layer indices, e.g. 0,29") from None


class SpsRecipe(Recipe):
    name = "sps"
    top1_is_chain = True
    # batch_size counts labelled positions (answer tokens) per optimiser step. Starting values for
    # a 2-layer draft on the bundled corpus, not swept.
    defaults = {"epochs": 4, "lr": 3e-4, "batch_size": 4096, "warmup": 0.05, "weight_decay": 0.0}
    shared_note = "the base's embeddings, final norm and lm_head are shared and not stored here."
    metric_label = ("Held-out accuracy of the draft: depth 1 = its next token right (teacher-forced); depth 1-k = the "
                    "next k all right (a greedy chain accepted at least k deep); mean accepted tokens per step of a "
                    "gamma-chain = 1 + the row's sum")
    extra_metrics = {"mean_accepted": "mean accepted"}

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--sps-layers", type=int, default=2, help="decoder layers of the draft model (K)")
        group.add_argument("--sps-init-layers", default=None,
                           help="target layers the K draft layers start from, comma-separated, e.g. 0,29 (default: "
                                "the first and the last, the rest evenly between)")
        group.add_argument("--sps-draft-vocab", type=int, default=DEFAULT_SIZE,
                           help="draft vocabulary: the N most frequent answer tokens of the corpus, whose rows of the "
                                "shared lm_head the draft scores (0 = every answer token of the training split)")
        group.add_argument("--sps-eval-gamma", type=int, default=3,
                           help="chain length gamma of the held-out accepted-length metric (SpS's CPU default)")

    def __init__(self, args) -> None:
        super().__init__(args)
        if args.sps_layers < 1:
            raise ValueError("--sps-layers must be at least 1")
        if args.sps_eval_gamma < 1:
            raise ValueError("--sps-eval-gamma must be at least 1")
        self.sources = parse_layers(args.sps_init_layers)
        if self.sources is not None and len(self.sources) != args.sps_layers:
            raise ValueError(f"--sps-init-layers names {len(self.sources)} layers, --sps-layers is {args.sps_layers}")

    @property
    def metric_names(self):
        return tuple("depth 1" if k == 1 else f"depth 1-{k}" for k in range(1, self.args.sps_eval_gamma + 1))

    def prepare(self, base) -> None:
        depth = len(base.model.layers)
        if self.sources is None:
            self.sources = spread_layers(depth, self.args.sps_layers)
        bad = [s for s in self.sources if not 0 <= s < depth]
        if bad:
            raise ValueError(f"--sps-init-layers {self.sources}: indices must lie in 0 .. {depth - 1}")

    def request(self) -> HiddenStateRequest:
        return HiddenStateRequest()  # tokens and the answer mask only: the draft runs on the tokens

    # ------------------------------------------------------------------ data
    def build(self, base, features, generator):
        self.base = base
        self.tokens, self.starts = features.tokens.astype(np.int64), features.starts
        answer = features.answer
        # Per conversation, the positions (0-based in it) whose next token is an answer token.
        self.labelled: dict[int, np.ndarray] = {}
        for s in range(len(self.starts) - 1):
            a, b = int(self.starts[s]), int(self.starts[s + 1])
            local = np.flatnonzero(answer[a + 1: b])
            if len(local):
                self.labelled[s] = local
        heldout = features.heldout
        self.train_sequences = np.array([s for s in self.labelled if not heldout[s]], dtype=np.int64)
        self.heldout_sequences = np.array([s for s in self.labelled if heldout[s]], dtype=np.int64)
        if not len(self.train_sequences) or not len(self.heldout_sequences):
            raise ValueError("SpS draft training needs answers in both the train and the held-out split")
        self.train_positions = np.arange(sum(len(self.labelled[s]) for s in self.train_sequences))
        self.heldout_positions = np.arange(sum(len(self.labelled[s]) for s in self.heldout_sequences))
        chosen = draft_vocabulary(features, self.args.sps_draft_vocab, int(base.config.get_text_config().vocab_size),
                                  inherited=self.inherited_vocab)
        self.vocab, self.t2d, self.vocab_coverage = chosen.ids, chosen.t2d, chosen.coverage
        self.module = layers_from_target(base, self.sources)
        self.draft = draft_with_layers(base, self.module)
        # The shared lm_head is frozen: its draft-vocabulary rows are gathered once, not per batch.
        head, rows = base.get_output_embeddings(), torch.from_numpy(self.vocab)
        with torch.no_grad():
            rows = rows.to(head.weight.device)
            self._head_weight = head.weight[rows].contiguous()
            self._head_bias = None if head.bias is None else head.bias[rows].contiguous()
        return self.module

    def summary(self) -> str:
        return (f"{len(self.train_positions)} training / {len(self.heldout_positions)} held-out positions "
                f"({len(self.train_sequences)} / {len(self.heldout_sequences)} conversations), {len(self.module)} "
                f"layers from target layers {self.sources}, draft vocabulary {len(self.vocab)} tokens "
                f"({self.vocab_coverage:.1%} of held-out answer tokens), "
                f"{sum(p.numel() for p in self.module.parameters()) / 1e6:.2f}M parameters")

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.train_positions) / batch_size)

    def train_batches(self, rng, batch_size: int):
        """One epoch: conversations in an order drawn from rng, their labelled positions cut into
        batches of exactly ``batch_size`` (a conversation may straddle two batches)."""
        order = rng.permutation(self.train_sequences)
        yield from exact_batches(((s, self.labelled[int(s)]) for s in order), batch_size)

    # ------------------------------------------------------------------ maths
    def _logits(self, sequence: int, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The draft's logits over the draft vocabulary at ``positions`` of one conversation (a
        forward over its tokens up to the last of them) and the labels: the columns of the tokens
        after them, UNKNOWN where the vocabulary lacks one."""
        a = int(self.starts[sequence])
        end = int(positions.max()) + 1
        device = self._head_weight.device
        ids = torch.from_numpy(self.tokens[a: a + end])[None].to(device)
        hidden = self.draft.model(input_ids=ids, use_cache=False).last_hidden_state[0]
        rows = torch.from_numpy(positions).to(device)
        labels = torch.from_numpy(self.t2d[self.tokens[a + positions + 1]]).to(device)
        return F.linear(hidden[rows], self._head_weight, self._head_bias), labels

    def loss(self, batch) -> torch.Tensor:
        total, counted = None, 0
        for sequence, positions in batch:
            logits, labels = self._logits(sequence, positions)
            part = F.cross_entropy(logits.float(), labels, reduction="sum", ignore_index=UNKNOWN)
            total = part if total is None else total + part
            counted += len(positions)
        return total / max(counted, 1)

    @torch.no_grad()
    def evaluate(self) -> dict:
        gamma = self.args.sps_eval_gamma
        deep = np.zeros(gamma, dtype=np.int64)  # anchors whose next k drafts are all right, k = 1..gamma
        anchors = 0
        for sequence in self.heldout_progress(self.heldout_sequences, "conversation"):
            positions = self.labelled[int(sequence)]
            logits, labels = self._logits(int(sequence), positions)
            hit = np.zeros(int(positions.max()) + 2, dtype=bool)  # by position; unlabelled ones miss
            hit[positions] = (logits.argmax(-1) == labels).cpu().numpy()
            for k in range(gamma):
                # A chain from anchor p is right k + 1 deep when positions p .. p + k all hit.
                run = np.ones(len(positions), dtype=bool)
                for j in range(k + 1):
                    run &= hit[np.minimum(positions + j, len(hit) - 1)]  # the last entry is a miss
                deep[k] += int(run.sum())
            anchors += len(positions)
        top = [round(float(d) / max(anchors, 1), 4) for d in deep]
        return {"top1": top, "positions": [anchors] * gamma, "mean_accepted": round(1 + sum(top), 3)}

    # ------------------------------------------------------------------ artifact
    weights_file = SPS_WEIGHTS_FILE

    def artifact_tensors(self) -> dict:
        return draft_tensors(self.module, torch.from_numpy(self.vocab))

    def save(self, out, meta: dict) -> None:
        save_sps_draft(out, self.module, self.base, meta["base_model"], self.sources,
                       {"training": meta["training"], "metrics": meta["metrics"],
                        "draft_vocab_coverage": round(self.vocab_coverage, 4)},
                       draft_vocab=torch.from_numpy(self.vocab))
