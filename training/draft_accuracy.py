"""Trained drafters' accuracy on a question set's answers, per subtask, beside their held-out figures.

    python -m training.draft_accuracy --questions data/bundled/question.jsonl --per-subtask 2 \\
        --max-new-tokens 128 --threads 2

A trained drafter's figures (its artifact's config.json) are measured on the held-out split of
the corpus it learned from: prompts the target wrote itself, answered by the target. A benchmark
runs other prompts (the bundled set: texts to translate, summarize or quote from, math, code), and
a draft that is right less often there accepts fewer tokens a step than its held-out figures
promise. This tool measures the same figures on a question set:

1. the target answers each chosen question's first turn greedily, through the engine with no
   draft (the baseline's tokens; ``--per-subtask N`` picks the first N questions of every subtask,
   the runner's and the speed benchmark's selection);
2. the answers become a corpus of held-out conversations, whose target states are computed once
   per method (training/features.py, cached like a training corpus's);
3. each drafter's recipe is rebuilt with the options its artifact was trained with (its recorded
   command, read by the trainer's parser), the artifact's weights are loaded into it, and the
   recipe's own held-out measurement runs over the answers of every subtask (teacher-forced,
   greedy, exactly what the trainer reports after an epoch); the row of all of them pools the
   subtasks' figures by the positions each counts.

Reported per method and subtask: the positions measured, depth-1 accuracy (the first drafted token
right) and, where the recipe measures a chain (EAGLE and EAGLE-3's, DFlash's block, SpS's gamma,
the heads' all-right chain), the expected accepted length of that chain, 1 + the sum of the shares
of positions whose first k drafted tokens are all right; the first line is the artifact's own
held-out split. Nothing is timed.

``--corpus FILE`` measures a training corpus's held-out conversations instead, one row per
category, to tell a kind of task that is hard to draft from prompts the corpus does not cover:

    python -m training.draft_accuracy --corpus data/corpus/smollm2_corpus.jsonl.gz --methods eagle hydra
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from evaluation.inference import positive_int
from evaluation.record.questions import QuestionFileError, first_per_subtask, load_questions
from methods.core.backends import CHOICES as BACKEND_CHOICES
from methods.core.backends import resolve_backend
from methods.core.conversation import new_conversation
from methods.core.drafter import DecodingConfig
from methods.core.engine import SpeculativeEngine
from methods.core.model_loading import ModelLoadError, load_model
from methods.core.paths import DATA_DIR
from methods.drafters.trained import SHIPPED
from methods.drafters.vanilla import VanillaDrafter
from methods.heads.artifact import CONFIG_FILE, METADATA_FILE, ArtifactError, read_config, training_record
from training.data_curve import chain_of
from training.features import CorpusError, build_features, corpus_sequences, read_corpus
from training.recipes import RECIPES, recipe_class
from training.train_drafter import RecordedCommandError, apply_method_defaults, parse_recorded_command
from training.train_drafter import build_parser as trainer_parser
from training.warm_start import WarmStartError, artifact_vocabulary, warm_start

ALL = "all"
HELDOUT = "corpus held-out"


class AccuracyError(ValueError):
    """A drafter or question set this tool cannot measure; the message says why."""


# ---------------------------------------------------------------------- the answers
def answer_records(model, tokenizer, questions, max_new_tokens: int, backend: str = "auto",
                   progress: bool = True) -> list[dict]:
    """Corpus records (held out) of the target's greedy answers to each question's first turn, as
    the engine's baseline decodes them (its prompt format, stop tokens and strings)."""
    engine = SpeculativeEngine(model, tokenizer, backend=resolve_backend(backend, model))
    records = []
    for number, question in enumerate(tqdm(questions, desc="answers", unit="question", disable=not progress)):
        conversation = new_conversation(tokenizer, model)
        prompt = conversation.prompt_ids(question.turns[0])
        config = DecodingConfig(max_new_tokens=max_new_tokens, stop_token_ids=conversation.stop_token_ids,
                                stop_strings=conversation.stop_strings)
        answer, _ = engine.generate(prompt, VanillaDrafter(), config)
        text = tokenizer.decode(answer, skip_special_tokens=True)
        records.append({"id": f"q{number}-{question.question_id}", "subtask": question.subtask, "split": "heldout",
                        "turn": 1, "prompt_token_ids": prompt, "answer_token_ids": list(answer), "finished": False,
                        "conversations": [{"role": "user", "content": question.turns[0]},
                                          {"role": "assistant", "content": text}]})
    return records


def write_records(records: list[dict], path: Path) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return path


def heldout_category_masks(corpus: Path, tokenizer, max_length: int) -> dict[str, np.ndarray]:
    """Per 'category' of a training corpus (the most held-out conversations first), which of its
    held-out sequences are measured; sequences as the trainer builds them (cut at ``max_length``, a
    record whose prompt fills it left out; the trainer's split rule where a record has no split)."""
    records = read_corpus(corpus)
    sequences, kept = corpus_sequences(records, tokenizer, corpus, max_length, trainer_default("heldout_fraction"),
                                       both_splits=False)
    categories = np.array([str(records[i].get("category", "uncategorised")) for i in kept])
    heldout = np.array([s.heldout for s in sequences])
    if not heldout.any():
        raise CorpusError(f"{corpus}: no held-out conversation")
    counted = Counter(categories[heldout].tolist())
    return {name: heldout & (categories == name) for name, _ in counted.most_common()}


def subtask_masks(records: list[dict]) -> dict[str, np.ndarray]:
    """Per subtask (in first-seen order), which sequences are measured."""
    subtasks = np.array([r["subtask"] for r in records])
    return {name: subtasks == name for name in dict.fromkeys(subtasks.tolist())}


def pooled(parts: list[dict]) -> dict:
    """The metrics of the union of disjoint sets of sequences from each set's metrics: every share
    weighted by the positions it counts ("chain" counts the first depth's positions, as the heads'
    recipes measure it). The union is not measured as one set because some recipes (SPACE, SpS)
    will not build without a training split, which a mask of every sequence would leave empty."""
    positions = np.array([p["positions"] for p in parts], dtype=np.float64)
    totals = positions.sum(axis=0)

    def share(key: str, weights: np.ndarray, denominators) -> list[float]:
        values = np.array([p[key] for p in parts], dtype=np.float64)
        return [round(float(v), 4) for v in (values * weights).sum(axis=0) / np.maximum(denominators, 1)]

    result = {"top1": share("top1", positions, totals), "positions": [int(t) for t in totals]}
    if all("chain" in p for p in parts):
        result["chain"] = share("chain", positions[:, :1], totals[0])
    return result


def trainer_default(option: str):
    """The trainer's default for ``option`` (e.g. how it cuts and splits a corpus), from its parser."""
    return trainer_parser().get_default(option)


# ---------------------------------------------------------------------- the drafters
def trained_options(method: str, folder: Path) -> argparse.Namespace:
    """The trainer's options the artifact in ``folder`` was trained with (its recorded command,
    read by the trainer's parser, recipe defaults filled in)."""
    try:
        config = read_config(folder)
    except ArtifactError as exc:
        raise AccuracyError(f"{method}: {exc}") from None
    if config.get("method") != method:
        raise AccuracyError(f"{folder} holds {config.get('method')!r}, not a {method} drafter trained here")
    command = training_record(folder).get("command")
    if not command:
        raise AccuracyError(f"{folder}: no recorded training command, so its options are unknown")
    try:
        args = parse_recorded_command(command)
    except RecordedCommandError as exc:
        raise AccuracyError(f"{folder}: {exc}") from None
    return apply_method_defaults(args)


def chain_figures(method: str, metrics: dict) -> tuple[float, list[float] | None]:
    """(depth-1 accuracy, the all-right shares of the recipe's chain, or None where it measures none:
    the curve's ``chain_of`` without its product estimate)."""
    chain, exact = chain_of(method, metrics)
    return float(metrics["top1"][0]), (chain if exact else None)


def measure(method: str, folder: Path, model, tokenizer, corpus: Path, masks: dict[str, np.ndarray],
            max_length: int | None = None, progress: bool = True) -> dict[str, dict]:
    """The recipe's held-out metrics of the artifact in ``folder`` over each mask's sequences of
    ``corpus`` (a corpus whose records are in the masks' order), its sequences cut at ``max_length``
    tokens (None: the artifact's own training --max-length, so that its training corpus gives back
    its recorded figures)."""
    args = trained_options(method, folder)
    args.no_progress = not progress
    recipe_cls = recipe_class(method)
    try:
        recipe = recipe_cls(args)
        recipe.prepare(model)
    except ValueError as exc:
        raise AccuracyError(f"{folder}: {exc}") from None
    features = build_features(model, tokenizer, corpus, recipe.request(), max_length=max_length or args.max_length,
                              progress=progress, both_splits=False)
    recipe.inherited_vocab = artifact_vocabulary(recipe_cls, model, folder)
    results = {}
    for label, mask in masks.items():
        if len(mask) != len(features.heldout):
            raise AccuracyError(f"{corpus}: {len(features.heldout)} sequences, {len(mask)} expected")
        # Every sequence outside the mask stands in the (unused) training split.
        try:
            module = recipe.build(model, dataclasses.replace(features, heldout=mask), torch.Generator().manual_seed(0))
        except ValueError as exc:
            raise AccuracyError(f"{method} on {label}: {exc}") from None
        try:
            warm_start(recipe, model, folder)
        except WarmStartError as exc:
            raise AccuracyError(str(exc).replace("--init-from ", "")) from None
        module.eval()
        results[label] = recipe.evaluate()
    if len(results) > 1:
        results[ALL] = pooled(list(results.values()))
    return results


def recorded_metrics(folder: Path) -> dict:
    """The artifact's recorded metrics ({} if none): beside its training record, in config.json for
    the heads and in metadata.json for an SpS draft model (methods/heads/artifact.py)."""
    for name in (CONFIG_FILE, METADATA_FILE):
        try:
            record = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "training" in record:
            return record.get("metrics") or {}
    return {}


def table_rows(method: str, folder: Path, measured: dict[str, dict]) -> list[dict]:
    rows = []
    own = recorded_metrics(folder).get("heldout") or []
    for label, metrics in [(HELDOUT, own[-1])] * bool(own) + list(measured.items()):
        depth1, chain = chain_figures(method, metrics)
        # The positions depth 1 counts (a recipe's "heldout_positions" may count more: Hydra's, every
        # position some head has a label for).
        counted = int(metrics["positions"][0])
        rows.append({"method": method, "prompts": label, "positions": counted, "depth1": round(depth1, 4),
                     "chain_tokens": None if chain is None else len(chain),
                     "expected_accepted": None if chain is None else round(1.0 + sum(chain), 3)})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| method | prompts | positions | depth-1 accuracy | expected accepted length (chain) |",
             "|---|---|---|---|---|"]
    for r in rows:
        accepted = "n/a" if r["expected_accepted"] is None else f"{r['expected_accepted']:.3f} ({r['chain_tokens']})"
        lines.append(f"| {r['method']} | {r['prompts']} | {r['positions']:,} | {r['depth1']:.3f} | {accepted} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.draft_accuracy", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", default=str(DATA_DIR / "bundled" / "question.jsonl"),
                        help="question file in Spec-Bench's schema; each question's first turn is answered (default: the "
                             "bundled set, data/bundled/question.jsonl)")
    parser.add_argument("--per-subtask", type=positive_int, default=2,
                        help="the first N questions of every subtask (the runner's --per-subtask selection; default: 2)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=128, help="longest greedy answer (default: 128)")
    parser.add_argument("--corpus", default=None,
                        help="instead of answering questions, measure a training corpus's held-out conversations, "
                             "one row per 'category' (the target's states over the whole corpus come from the "
                             "feature cache when a training run stored them; otherwise the target runs over every "
                             "conversation, hours for the corpus at scale)")
    parser.add_argument("--methods", nargs="+", choices=sorted(RECIPES), default=None,
                        help="which trained drafters to measure (default: every one --drafters holds)")
    parser.add_argument("--drafters", default=str(SHIPPED),
                        help="folder of the drafters, one subfolder per method (e.g. <folder>/eagle, which eagle "
                             "and eagle2 both draft with); default: the embedded model's shipped drafters")
    parser.add_argument("--model-path", default="embedded",
                        help="the target: 'embedded' (default), a .gguf file, a local Hugging Face folder or a hub id; "
                             "the drafters must have been trained for it")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                        help="engine backend of the greedy answers (default: auto, as the runner resolves it)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    drafters = Path(args.drafters)
    methods = args.methods or [m for m in RECIPES if (drafters / m / "config.json").is_file()]
    if not methods:
        parser.error(f"--drafters {drafters}: no trained drafter there (expected <folder>/<method>/config.json)")
    missing = [m for m in methods if not (drafters / m / "config.json").is_file()]
    if missing:
        parser.error(f"--drafters {drafters}: no {', '.join(missing)} drafter there")
    questions = None
    if args.corpus is None:
        try:
            questions = first_per_subtask(load_questions(args.questions), args.per_subtask)
        except (QuestionFileError, OSError) as exc:
            parser.error(str(exc))
    elif not Path(args.corpus).is_file():
        parser.error(f"--corpus {args.corpus}: no such file")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        loaded = load_model(args.model_path, dtype="float32", device="cpu")
    except ModelLoadError as exc:
        parser.error(str(exc))
    progress = not args.no_progress
    rows = []
    with tempfile.TemporaryDirectory() as work:
        if questions is None:
            corpus, max_length = Path(args.corpus), trainer_default("max_length")
            try:
                masks = heldout_category_masks(corpus, loaded.tokenizer, max_length)
            except CorpusError as exc:
                parser.error(str(exc))
            source = {"corpus": args.corpus}
        else:
            records = answer_records(loaded.model, loaded.tokenizer, questions, args.max_new_tokens, args.backend,
                                     progress)
            corpus, masks = write_records(records, Path(work) / "answers.jsonl.gz"), subtask_masks(records)
            # Whole sequences: the drafters trained on conversations cut at 1,024 tokens, but a
            # benchmark's prompt (an article to summarize) may be longer, and what is measured is
            # the answer after it.
            max_length = max(trainer_default("max_length"), max(len(r["prompt_token_ids"]) + len(r["answer_token_ids"]) + 1
                                                    for r in records))
            source = {"questions": args.questions, "per_subtask": args.per_subtask,
                      "max_new_tokens": args.max_new_tokens}
        for method in methods:
            try:
                measured = measure(method, drafters / method, loaded.model, loaded.tokenizer, corpus, masks,
                                   max_length, progress)
            except AccuracyError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            rows += table_rows(method, drafters / method, measured)
            print(markdown([r for r in rows if r["method"] == method]) + "\n", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({**source, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
