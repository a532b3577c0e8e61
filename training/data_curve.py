"""Held-out acceptance of trained drafters against the amount of training data.

    python -m training.data_curve --methods eagle hydra --sizes 1000 2000 5000 10000 all \\
        --out results/data_curve/

For every method and size the shared trainer (training/train_drafter.py, called in-process) trains
a drafter on the first N training conversations of the corpus and measures it on the corpus's
whole held-out split, then the held-out depth-1 accuracy and expected accepted length of every
point are written as a table (``data_curve.json``, ``data_curve.md``) and a plot
(``data_curve.png``: matplotlib, else plotly's static export; without either, the Markdown table
only, and a message says so).

The subsets:
- a size counts conversations, not corpus lines: a conversation's second turn (id ``<id>/2``,
  ``turn`` 2) goes with its first;
- the training conversations are ranked once by the SHA-256 of their id and a size takes the
  first N of that ranking, so the subsets are nested (the 1,000 are inside the 2,000) and do not
  depend on the corpus file's order, which groups conversations by task;
- every subset holds the whole held-out split, so every point is measured on the same
  conversations; ``all`` is the corpus file itself;
- a size larger than the corpus's training conversations is refused before anything is trained.
Each subset is written as a corpus file under ``<out>/corpora/`` (the same records give the same
bytes, so the feature cache, keyed by the file's sha256, serves a rerun). When ``all`` is asked for
(or the sizes add up to the corpus) the target runs once over the whole corpus and every subset's
features are cut out of that run (training/features.py: ``subset_features``), not computed again:
together the subsets hold more conversations than the corpus, the held-out split once per size.
Without ``all``, the target runs over the largest size's subset and the smaller ones are cut out of
it, so a curve that stops short of the corpus (one sitting's worth of target time) pays for its
largest point only.

What is the same at every size: the method's recipe and every trainer option (its defaults,
``--seed``, ``--max-length`` and whatever ``--train-args`` adds). What scales: the number of
optimiser steps, since ``--epochs`` counts passes over the training positions (and the warm-up,
a fraction of the steps, with it). A point then means "this recipe trained on N conversations";
fixing the steps instead would give the small sizes dozens of passes over the same data and the
large ones less than one, mixing over-fitting with under-training.

The ``all`` point of a method is the drafter a full retraining ships (training/retrain_all.py), and a
drafter shipped from a subset (``retrain_all --train-conversations N``) is the point N. With
``--reuse FOLDER`` a point takes its figures from ``FOLDER/<method>`` instead of training again,
when that artifact records the checksum of the point's corpus (the subset file's or, for ``all``,
the corpus's) and its recorded command, read by the trainer's parser, sets every training option
as the point would (paths, threads and checkpointing aside); otherwise the point is trained and
the log says which option differed. A reused point costs no target features either.
``--method-args`` gives one method options of its own, so that each method's points can use the
recipe its shipped drafter was trained with.

Resuming: a point whose result file (``<out>/<method>/<size>.json``) exists with the same settings
is skipped; one with a training checkpoint in its folder (``<out>/<method>/<size>/``) is continued
with the trainer's ``--resume``; rerunning the same command therefore finishes what is left. A
result made with other settings is refused, naming the point, rather than mixed into the table.

The metrics, from each artifact's held-out figures after its last epoch:
- depth-1 accuracy: the share of held-out answer positions whose first drafted token is the
  target's (EAGLE: "depth 1"; Medusa/Hydra: head 0, the token x_{t+2});
- expected accepted length: tokens committed per verification step by a chain draft at greedy
  decoding, 1 (the target's own token) + the sum over k of the share of positions whose first k
  drafted tokens are all right. EAGLE's metrics measure a chain of 2 (depth 1, depth 1+2), the
  heads' a chain of as many tokens as heads; ``accepted (2-token chain)`` is the same figure cut at
  2 drafted tokens for every method, so the methods compare on equal terms.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from evaluation.inference import positive_int
from training.checkpoint import FILE as CHECKPOINT_FILE
from training.features import CorpusError, file_sha256, is_heldout, read_corpus, subset_features
from training.recipes import recipe_class
from training.train_drafter import COMMAND_PREFIX, DEFAULT_CORPUS, RecordedCommandError, parse_recorded_command
from training.train_drafter import build_parser as trainer_parser
from training.train_drafter import main as train_main

METHODS = ("eagle", "hydra", "medusa")  # the methods whose held-out metrics give a chain's acceptance
DEFAULT_SIZES = ("1000", "2000", "5000", "10000", "all")
ALL = "all"


# ---------------------------------------------------------------------- subsets
def conversation_id(record: dict, where: str) -> str:
    """The id of the conversation a turn record belongs to: a later turn's id is its
    conversation's plus "/<turn>"."""
    if "id" not in record:
        raise CorpusError(f"{where}: a record without an 'id'; conversations cannot be counted")
    record_id = str(record["id"])
    turn = record.get("turn")
    if turn is not None and int(turn) > 1 and record_id.endswith(f"/{turn}"):
        return record_id[: -len(f"/{turn}")]
    return record_id


def record_is_heldout(record: dict, where: str, fraction: float) -> bool:
    """The trainer's rule (training/features.py): the 'split' field, else a hash of the id."""
    split = record.get("split")
    if split is None:
        return is_heldout(record.get("id", where), fraction)
    return split == "heldout"


def id_rank(conversation: str) -> str:
    return hashlib.sha256(conversation.encode("utf-8")).hexdigest()


@dataclass
class Split:
    records: list[dict]
    train_ranking: list[str]  # training conversation ids, in the fixed order sizes take them in
    heldout_conversations: int
    heldout: list[bool]  # per record


def split_corpus(records: list[dict], heldout_fraction: float = 0.1) -> Split:
    """``heldout_fraction``: the trainer's --heldout-fraction, for corpora without a 'split' field."""
    train, heldout, flags = set(), set(), []
    for number, record in enumerate(records, 1):
        where = f"corpus record {number}"
        flags.append(record_is_heldout(record, where, heldout_fraction))
        (heldout if flags[-1] else train).add(conversation_id(record, where))
    ranking = sorted(train, key=lambda c: (id_rank(c), c))
    return Split(records=records, train_ranking=ranking, heldout_conversations=len(heldout), heldout=flags)


def subset_records(split: Split, size: int) -> list[dict]:
    """Every held-out record and the records of the first ``size`` training conversations of the
    ranking, in the corpus file's order."""
    if size > len(split.train_ranking):
        raise ValueError(f"{size} conversations asked for, the corpus has {len(split.train_ranking)} training "
                         f"conversations")
    chosen = set(split.train_ranking[:size])
    return [r for n, (r, held) in enumerate(zip(split.records, split.heldout), 1)
            if held or conversation_id(r, f"corpus record {n}") in chosen]


def write_corpus(records: list[dict], path: Path) -> None:
    """gzip JSONL without a timestamp: the same records give the same bytes (and cached features)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
        for record in records:
            f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    if path.is_file() and path.read_bytes() == temporary.read_bytes():
        temporary.unlink()  # unchanged: keep the file (and its modification time)
    else:
        temporary.replace(path)


def parse_size(text: str) -> str:
    if text == ALL:
        return text
    try:
        return str(positive_int(text))
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"a size is a number of conversations or '{ALL}': {exc}") from None


# ---------------------------------------------------------------------- metrics
def chain_of(method: str, heldout: dict) -> tuple[list[float], bool]:
    """The shares of held-out positions whose first 1, 2, ... drafted tokens are all right, and
    whether they are exact (False: estimated as a product of per-head accuracies, for artifacts
    written before the heads' recipe measured the chain)."""
    top1 = [float(a) for a in heldout["top1"]]
    if recipe_class(method).top1_is_chain:
        return top1, True  # EAGLE's [depth 1, depth 1 and 2]: already joint
    if "chain" in heldout:
        return [float(a) for a in heldout["chain"]], True
    chain, product = [], 1.0
    for accuracy in top1:
        product *= accuracy
        chain.append(product)
    return chain, False


def point_row(method: str, label: str, conversations: int, config: dict) -> dict:
    last = config["metrics"]["heldout"][-1]
    chain, exact = chain_of(method, last)
    training = config["training"]
    return {
        "method": method, "size": label, "conversations": conversations,
        "train_positions": training["train_positions"], "heldout_positions": training["heldout_positions"],
        "depth1_accuracy": round(chain[0], 4),
        "chain": [round(a, 4) for a in chain], "chain_exact": exact,
        "expected_accepted_length": round(1.0 + sum(chain), 4),
        "expected_accepted_length_2": round(1.0 + sum(chain[:2]), 4),
        "steps": training["steps"], "epochs": training["epochs"], "train_time_s": training["train_time_s"],
    }


# ---------------------------------------------------------------------- table and plot
def markdown_table(rows: list[dict]) -> str:
    lines = ["| method | conversations | training positions | depth-1 accuracy | expected accepted length "
             "(drafted chain) | accepted (2-token chain) | steps | training time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['conversations']:,}" + (" (all)" if r["size"] == ALL else "")
        estimated = "" if r["chain_exact"] else " (est.)"
        lines.append(f"| {r['method']} | {size} | {r['train_positions']:,} | {r['depth1_accuracy']:.3f} | "
                     f"{r['expected_accepted_length']:.3f} ({len(r['chain'])}){estimated} | "
                     f"{r['expected_accepted_length_2']:.3f} | {r['steps']:,} | {r['train_time_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], out: Path, header: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "data_curve.json", out / "data_curve.md"
    json_path.write_text(json.dumps({**header, "rows": rows}, indent=1) + "\n")
    md = [f"# Held-out acceptance against training conversations", "",
          f"Corpus `{header['corpus']}` (sha256 `{header['corpus_sha256'][:16]}...`), "
          f"{header['train_conversations']:,} training conversations; every point measured on the same "
          f"{header['heldout_conversations']:,} held-out conversations.", "",
          f"    {header['command']}", "", markdown_table(rows),
          "Expected accepted length: 1 + the shares of held-out positions whose first 1, 2, ... drafted "
          "tokens are all right (chain length in brackets); greedy decoding."]
    md_path.write_text("\n".join(md) + "\n")
    return json_path, md_path


def plot_backend() -> str | None:
    """'matplotlib', 'plotly' (static export needs kaleido) or None."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:
        return "matplotlib"
    if importlib.util.find_spec("plotly") is not None and importlib.util.find_spec("kaleido") is not None:
        return "plotly"
    return None


def _series(rows: list[dict]) -> dict[str, list[dict]]:
    series: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["method"], r["conversations"])):
        series.setdefault(r["method"], []).append(r)
    return series


PANELS = (("depth1_accuracy", "held-out depth-1 accuracy"),
          ("expected_accepted_length_2", "expected accepted length (2-token chain)"))


def write_plot(rows: list[dict], path: Path, backend: str | None = None) -> str:
    """Writes the PNG and returns what happened, in words (also when no plot could be made)."""
    backend = backend if backend is not None else plot_backend()
    if backend is None:
        return ("no plot: neither matplotlib nor plotly with kaleido is installed (pip install matplotlib); "
                "the Markdown table has the figures")
    series = _series(rows)
    if backend == "matplotlib":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 2, figsize=(10, 4))
        for axis, (key, label) in zip(axes, PANELS):
            for method, points in series.items():
                axis.plot([p["conversations"] for p in points], [p[key] for p in points], marker="o", label=method)
            axis.set_xscale("log")
            sizes = sorted({r["conversations"] for r in rows})
            # "5k" rather than "5,000": neighbouring sizes (5,000 and 6,000) sit close on a log axis;
            # three digits at most ("18.7k", not "18.729k", for a whole corpus of 18,729).
            axis.set_xticks(sizes, labels=[f"{n / 1000:.3g}k" if n >= 1000 else str(n) for n in sizes], minor=False)
            axis.minorticks_off()
            axis.set_xlabel("training conversations")
            axis.set_ylabel(label)
            axis.grid(True, alpha=0.3)
        axes[0].legend(loc="lower right")  # the curves rise to the upper right
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
    else:
        from plotly.subplots import make_subplots

        figure = make_subplots(rows=1, cols=2, subplot_titles=[label for _, label in PANELS])
        for column, (key, _) in enumerate(PANELS, 1):
            for method, points in series.items():
                figure.add_scatter(x=[p["conversations"] for p in points], y=[p[key] for p in points],
                                   mode="lines+markers", name=method, showlegend=column == 1, row=1, col=column)
            figure.update_xaxes(type="log", title_text="training conversations", row=1, col=column)
        try:
            figure.write_image(str(path), width=1000, height=400)
        except Exception as exc:  # kaleido present but unable to render (e.g. no browser for kaleido 1.x)
            return f"no plot: plotly's static export failed ({exc}); the Markdown table has the figures"
    return f"wrote {path} ({backend})"


# ---------------------------------------------------------------------- the curve
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.data_curve", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["eagle", "hydra"], choices=METHODS,
                        help="drafters to train at every size")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=list(DEFAULT_SIZES),
                        help="training conversations per point (a conversation's turns count once), or 'all'; "
                             "a size above the corpus's training conversations is refused")
    parser.add_argument("--out", required=True,
                        help="folder for the subset corpora, one artifact and result file per point, the tables "
                             "and the plot; rerunning the same command there skips finished points and resumes "
                             "an interrupted one")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="the self-distillation corpus (gzip JSONL)")
    parser.add_argument("--model-path", default="embedded", help="the frozen target, as the trainer takes it")
    parser.add_argument("--seed", type=int, default=0, help="the trainer's seed, the same at every point")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per conversation at most (trainer)")
    parser.add_argument("--train-args", default="",
                        help="more trainer options, the same for every point, as one quoted string (e.g. "
                             "\"--eagle-steps 2 --hydra-heads 4\"); the trainer takes every method's options and "
                             "uses its own, but a general one such as --epochs applies to every method")
    parser.add_argument("--method-args", action="append", default=[], metavar="METHOD=ARGS",
                        help="trainer options for one method's points only, after --train-args (repeatable), e.g. "
                             "\"eagle=--epochs 3 --eagle-steps 2\"")
    parser.add_argument("--reuse", default=None, metavar="FOLDER",
                        help="a folder of trained drafters, one subfolder per method (e.g. "
                             "data/drafters/smollm2-135m-instruct): a point takes the figures of FOLDER/<method> "
                             "when that drafter was trained on the point's corpus (the subset, or the whole corpus "
                             "for 'all') with the same options")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for training (trainer's default)")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0,
                        help="how often an unfinished point writes its checkpoint (trainer option)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars inside a training")
    return parser


def parse_method_args(entries: list[str], methods: list[str]) -> dict[str, list[str]]:
    """``--method-args`` entries (``METHOD=ARGS``) as a method's extra trainer argv."""
    parsed: dict[str, list[str]] = {}
    for entry in entries:
        method, sep, text = entry.partition("=")
        method = method.strip()
        if not sep or method not in methods:
            raise ValueError(f"--method-args {entry!r}: expected METHOD=ARGS with METHOD one of {', '.join(methods)}")
        parsed[method] = parsed.get(method, []) + shlex.split(text)
    return parsed


def method_args(args, method: str) -> list[str]:
    return parse_method_args(args.method_args, args.methods).get(method, [])


def trainer_argv(args, method: str, corpus: Path, folder: Path) -> list[str]:
    return ["--method", method, "--model-path", args.model_path, "--corpus", str(corpus), "--out", str(folder),
            "--seed", str(args.seed), "--max-length", str(args.max_length), *shlex.split(args.train_args),
            *method_args(args, method)]


def point_settings(args, method: str, corpus_sha: str) -> dict:
    """What decides a point's result: the trainer's options apart from paths, and the subset's bytes."""
    settings = {"method": method, "model_path": args.model_path, "seed": args.seed, "max_length": args.max_length,
                "train_args": shlex.split(args.train_args), "corpus_sha256": corpus_sha}
    extra = method_args(args, method)
    if extra:  # absent when unused, so that results written before the option still match
        settings["method_args"] = extra
    return settings


# Trainer options that say where and how fast a run went, not what it trained.
NOT_TRAINING = {"out", "corpus", "resume", "threads", "checkpoint_minutes", "checkpoint_dir", "no_progress"}


ANOTHER_CORPUS = "was trained on another corpus"


def reuse_mismatch(args, method: str, corpus: Path, artifact: Path) -> str | None:
    """Why the trained drafter in ``artifact`` is not this method's point on ``corpus`` (a subset
    file or the whole corpus), or None when it is (same corpus bytes, same training options)."""
    try:
        training = json.loads((artifact / "config.json").read_text())["training"]
        command = training["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{artifact} holds no trained drafter with a recorded command"
    if training.get("corpus_sha256") != file_sha256(corpus):
        return f"{artifact} {ANOTHER_CORPUS}"
    try:
        theirs = vars(parse_recorded_command(command))
    except RecordedCommandError as exc:
        return f"{artifact}: {exc}"
    mine = vars(trainer_options(args, method, corpus))
    differ = sorted(k for k in set(mine) | set(theirs) if k not in NOT_TRAINING and mine.get(k) != theirs.get(k))
    if differ:
        shown = ", ".join(f"{k} {theirs.get(k)!r} there, {mine.get(k)!r} here" for k in differ[:4])
        return f"{artifact} was trained with other options ({shown})"
    return None


class CurveError(RuntimeError):
    pass


def run_point(args, method: str, label: str, corpus: Path, conversations: int, out: Path, where: str,
              not_reused: str | None) -> dict:
    """The point's row: from its result file, from the shipped drafter (``--reuse`` given and
    ``not_reused`` None: ``reuse_mismatch`` found nothing against it), or trained now."""
    folder = out / method / label
    result_path = out / method / f"{label}.json"
    settings = point_settings(args, method, file_sha256(corpus))
    if result_path.is_file():
        saved = json.loads(result_path.read_text())
        if saved.get("settings") == settings:
            print(f"{where} {method}, {label} conversations: done, skipped", flush=True)
            return saved["row"]
        raise CurveError(f"{result_path} was made with other settings ({saved.get('settings')} there, {settings} "
                         f"now): use another --out, or delete {result_path} and {folder} to train this point again")
    if args.reuse:
        artifact = Path(args.reuse) / method
        if not_reused is None:
            print(f"{where} {method}, {label} conversations: the figures of {artifact}, trained on this corpus "
                  f"with the same options", flush=True)
            row = point_row(method, label, conversations, json.loads((artifact / "config.json").read_text()))
            result_path.parent.mkdir(parents=True, exist_ok=True)
            result_path.write_text(json.dumps({"settings": settings, "row": row, "reused": str(artifact)},
                                              indent=1) + "\n")
            return row
        if label == ALL or not not_reused.endswith(ANOTHER_CORPUS):  # a subset point rarely has a shipped drafter
            print(f"{where} {method}, {label} conversations: not reused: {not_reused}", flush=True)
    argv = trainer_argv(args, method, corpus, folder)
    resume = (folder / CHECKPOINT_FILE).is_file()
    print(f"{where} {method}, {label} conversations: {'resuming' if resume else 'training'} into {folder}",
          flush=True)
    extra = ["--checkpoint-minutes", str(args.checkpoint_minutes)]
    extra += ["--threads", str(args.threads)] if args.threads else []
    extra += ["--no-progress"] if args.no_progress else []
    try:
        code = train_main(argv + extra + (["--resume"] if resume else []))
    except SystemExit as exc:  # the trainer's parser refused (e.g. a checkpoint of other settings)
        code = exc.code
    if code not in (0, None):
        raise CurveError(f"training {method} on {label} conversations failed (exit {code}); the command was "
                         f"{COMMAND_PREFIX}{shlex.join(argv)}")
    config = json.loads((folder / "config.json").read_text())
    row = point_row(method, label, conversations, config)
    result_path.write_text(json.dumps({"settings": settings, "row": row}, indent=1) + "\n")
    return row


def trainer_options(args, method: str, corpus: Path) -> argparse.Namespace:
    """The trainer's options of a point, as its parser reads them (defaults included)."""
    return trainer_parser().parse_args(trainer_argv(args, method, corpus, Path("unused")))


def share_features(args, source: Path, subsets: list[Path], methods: list[str]) -> None:
    """Run the target once over ``source`` and cut every subset's features out of that run
    (training/features.py: subset_features), instead of running it again over every subset: the
    subsets hold the held-out split each time. ``source`` is the whole corpus when ``all`` is asked
    for (or the sizes add up to it), else the largest subset, which holds every smaller one (the
    subsets are nested), so a curve that stops short of the corpus costs one run over its largest
    point and no more."""
    from methods.core.model_loading import load_model
    from training.features import build_features

    print(f"target features: computed once over {source}, the {len(subsets)} subsets cut out of them", flush=True)
    loaded = load_model(args.model_path, dtype="float32", device="cpu")
    requests = []
    for method in methods:
        options = trainer_options(args, method, source)
        recipe = recipe_class(method)(options)
        recipe.prepare(loaded.model)
        if (recipe.request(), options.heldout_fraction) not in requests:
            requests.append((recipe.request(), options.heldout_fraction))
    for request, fraction in requests:
        for subset in subsets:
            if Path(subset) == Path(source):
                build_features(loaded.model, loaded.tokenizer, source, request, max_length=args.max_length,
                               heldout_fraction=fraction, progress=not args.no_progress)
            else:
                subset_features(loaded.model, loaded.tokenizer, source, subset, request, max_length=args.max_length,
                                heldout_fraction=fraction, progress=not args.no_progress)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out, corpus = Path(args.out), Path(args.corpus)
    sizes = list(dict.fromkeys(args.sizes))  # repeated sizes once, in the order given
    try:
        parse_method_args(args.method_args, args.methods)
    except ValueError as exc:
        parser.error(str(exc))
    if args.reuse and not Path(args.reuse).is_dir():
        parser.error(f"--reuse {args.reuse}: no such folder")
    try:
        split = split_corpus(read_corpus(corpus), trainer_options(args, args.methods[0], corpus).heldout_fraction)
    except CorpusError as exc:
        parser.error(str(exc))
    total = len(split.train_ranking)
    too_big = [s for s in sizes if s != ALL and int(s) > total]
    if too_big:
        parser.error(f"--sizes {' '.join(too_big)}: the corpus {corpus} has only {total:,} training conversations "
                     f"({split.heldout_conversations:,} more are held out); use sizes up to {total:,} or '{ALL}'")
    print(f"{corpus}: {total:,} training and {split.heldout_conversations:,} held-out conversations; "
          f"{len(args.methods)} methods x {len(sizes)} sizes", flush=True)

    corpora = {}
    for label in sizes:
        if label == ALL:
            corpora[label] = (corpus, total)
        else:
            path = out / "corpora" / f"{label}.jsonl.gz"
            write_corpus(subset_records(split, int(label)), path)
            corpora[label] = (path, int(label))

    rows, points = [], [(m, s) for m in args.methods for s in sizes]
    # Why each point's shipped drafter is not its figures (None: it is), asked once per point.
    not_reused = ({(m, s): reuse_mismatch(args, m, corpora[s][0], Path(args.reuse) / m) for m, s in points}
                  if args.reuse else {})
    # A point another run trained may have its features in the cache; a reused one never ran the target.
    trained = [(m, s) for m, s in points if not (args.reuse and not_reused[(m, s)] is None)]
    todo = [(m, s) for m, s in trained if not (out / m / f"{s}.json").is_file()]
    subsets = sorted({s for _, s in todo if s != ALL}, key=int)
    if subsets and (any(s == ALL for _, s in trained) or sum(int(s) for s in subsets) >= total):
        share_features(args, corpus, [corpora[s][0] for s in subsets], sorted({m for m, _ in todo}))
    elif subsets:
        # The largest trained size (trained already, or not) holds every smaller subset: cut them from its run.
        largest = max((s for _, s in trained if s != ALL), key=int)
        if len(subsets) > 1 or subsets[-1] != largest:
            share_features(args, corpora[largest][0], [corpora[s][0] for s in subsets], sorted({m for m, _ in todo}))
    for number, (method, label) in enumerate(points, 1):
        path, conversations = corpora[label]
        try:
            rows.append(run_point(args, method, label, path, conversations, out, f"[{number}/{len(points)}]",
                                  not_reused.get((method, label))))
        except CurveError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    command = "python -m training.data_curve " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = {"command": command, "corpus": corpus.name, "corpus_sha256": file_sha256(corpus),
              "train_conversations": total, "heldout_conversations": split.heldout_conversations}
    json_path, md_path = write_tables(rows, out, header)
    print(markdown_table(rows), end="")
    print(f"wrote {json_path} and {md_path}; {write_plot(rows, out / 'data_curve.png')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
