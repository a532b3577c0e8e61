"""Train a drafter's heads on a frozen target from a self-distillation corpus.

    python -m training.train_drafter --method medusa --model-path embedded \\
        --corpus data/corpus/smollm2_corpus.jsonl.gz --out data/drafters/smollm2-135m-instruct/medusa

Steps: load the target (any Hugging Face causal LM, a .gguf file or the embedded model) in
float32 and freeze it; run it once over the corpus to get the hidden states the method learns
from (training/features.py, cached); train the method's recipe (training/recipes/) with AdamW
and a linear-warm-up cosine schedule; after every epoch print the held-out top-1 accuracy per
head; write the artifact folder (config.json with the metrics, the base's name and weight
fingerprint; fp16 safetensors without the base's shared tensors; a README.md with the command).
Seeds are fixed (--seed); apart from thread scheduling a run repeats exactly. --resume continues
a stopped run from its checkpoint; --init-from starts a new run from a finished artifact's weights
(training/warm_start.py), e.g. to train a shipped drafter further in a later sitting.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from methods.core.model_loading import EMBEDDED, EMBEDDED_MODEL_ID, load_model
from methods.core.paths import BUNDLED_CORPUS, REPO_ROOT
from training.checkpoint import FILE as CHECKPOINT_FILE
from training.checkpoint import Checkpoint, CheckpointError, generator_states, restore_generators
from training.draft_vocab import VocabularyMismatch
from training.features import build_features
from training.recipes import RECIPES, recipe_class
from training.warm_start import WarmStartError, artifact_vocabulary, warm_start

DEFAULT_CORPUS = BUNDLED_CORPUS


def method_defaults(key: str) -> str:
    """Each recipe's default for a trainer option, for the help text (e.g. "medusa 3, hydra 3")."""
    values = [(name, recipe_class(name).defaults.get(key)) for name in RECIPES]
    return ", ".join(f"{name} {value:g}" for name, value in values if value is not None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train_drafter", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--method", required=True, choices=list(RECIPES), help="which drafter to train")
    parser.add_argument("--model-path", default=EMBEDDED,
                        help="the frozen target: 'embedded', a .gguf file, a local Hugging Face folder or a hub id")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS),
                        help="self-distillation corpus (gzip JSONL conversations, see training/features.py)")
    parser.add_argument("--out", required=True, help="artifact folder to write: a new or empty folder, or one "
                        "holding this method's artifact (trained again in place); another method's is refused")
    parser.add_argument("--epochs", type=float, default=None, help="passes over the training positions "
                        f"(method default: {method_defaults('epochs')}); fractions allowed")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"peak learning rate (method default: {method_defaults('lr')})")
    parser.add_argument("--warmup", type=float, default=None, help="fraction of the steps spent warming up linearly")
    parser.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay")
    parser.add_argument("--batch-size", type=int, default=None, help="corpus positions per optimiser step "
                        f"(method default: {method_defaults('batch_size')})")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (quick trials, tests)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N conversations of the corpus")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per conversation at most")
    parser.add_argument("--heldout-fraction", type=float, default=0.1,
                        help="share of conversations held out when the corpus has no 'split' field")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation and batch order")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="device for the target and the training")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="arithmetic of the training steps: bfloat16 runs them under autocast (weights and "
                             "optimiser stay float32, as in the published recipes), several times faster on CPUs "
                             "with AMX or AVX512-BF16 and on GPUs; held-out accuracy is always measured in float32")
    parser.add_argument("--no-cache", action="store_true", help="recompute the target features even if cached")
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run whose checkpoint is in --checkpoint-dir (same command "
                             "otherwise)")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0,
                        help="write a checkpoint this often, and after every epoch (0 = after every step)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="folder of the checkpoint (default: --out); e.g. one outside a checkout that may be "
                             "replaced before the run is resumed. Not part of the recorded command")
    parser.add_argument("--init-from", default=None, metavar="DIR",
                        help="start from the weights of an artifact of this method trained here for this base "
                             "(e.g. the shipped one, to train it further, also on another corpus such as the next slice "
                             "of training/corpus_slice.py); optimiser and schedule start afresh, and the run keeps "
                             "the artifact's draft vocabulary (no larger than this run's size); a DFlash run with more "
                             "--dflash-layers than the artifact starts its added layers as identities")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    for name in RECIPES:
        recipe_class(name).add_arguments(parser.add_argument_group(f"method {name}"))
    return parser


def apply_method_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options the command line left unset (None) with the method's recipe defaults."""
    for key, value in recipe_class(args.method).defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def artifact_owner(config: dict) -> str:
    """Which drafter a folder's config.json belongs to, in words: ours record ``method``; the
    published formats are told by their keys."""
    if config.get("method"):
        method = str(config["method"])
        return f"{'an' if method[:1] in 'aeiou' else 'a'} {method} artifact"
    if config.get("speculators_model_type"):
        return f"a speculators {config['speculators_model_type']} head"
    for key, owner in (("medusa_num_heads", "published Medusa heads"), ("hydra_head_arch", "published Hydra heads"),
                       ("hydra_num_heads", "published Hydra heads"), ("draft_vocab_size", "a published EAGLE-3 draft")):
        if key in config:
            return owner
    return "a published EAGLE draft or a model (a config.json of another kind)"


def out_folder_problem(out: Path, method: str) -> str | None:
    """Why ``--out`` may not be written by ``method``'s trainer, or None: a new or empty folder,
    or one that holds this method's own artifact (trained again in place), may be; a folder that
    holds another method's artifact, or files that are no artifact of this method, may not,
    since writing there would overwrite what another method owns."""
    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {out} is a file, not a folder"
    if not any(out.iterdir()):
        return None
    if {p.name for p in out.iterdir()} <= {CHECKPOINT_FILE}:
        return None  # a run stopped before its first artifact: the checkpoint names its settings
    config_path = out / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        return (f"--out {out} is not empty and holds no {method} artifact (no config.json); "
                f"choose a new or empty folder")
    except (OSError, ValueError) as exc:
        return f"--out {out}: its config.json cannot be read ({exc}); choose a new or empty folder"
    if isinstance(config, dict) and config.get("method") == method:
        return None
    owner = artifact_owner(config) if isinstance(config, dict) else "a config.json of another kind"
    return (f"--out {out} holds {owner}, not this method's ({method}): training {method} there would overwrite its "
            f"config.json; choose a new or empty folder")


def cosine_with_warmup(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def repo_relative(arg: str) -> str:
    """Paths inside the checkout are recorded relative to it, so a shipped artifact's command is
    the same on every machine."""
    path = Path(arg)
    if path.is_absolute() and path.exists() and path.resolve().is_relative_to(REPO_ROOT):
        return str(path.resolve().relative_to(REPO_ROOT))
    return arg


COMMAND_PREFIX = "python -m training.train_drafter "


class RecordedCommandError(ValueError):
    pass


def parse_recorded_command(command: str) -> argparse.Namespace:
    """The options of a command this trainer recorded in an artifact (``COMMAND_PREFIX`` and its
    arguments), read by this trainer's parser; RecordedCommandError says why one cannot be read."""
    if not command.startswith(COMMAND_PREFIX):
        raise RecordedCommandError("its recorded command is not a train_drafter command")
    try:
        return build_parser().parse_args(shlex.split(command[len(COMMAND_PREFIX):]))
    except (SystemExit, ValueError):  # argparse exits on unknown options; shlex raises on bad quoting
        raise RecordedCommandError("its recorded command does not parse with this trainer") from None


def recorded_argv(argv: list[str]) -> list[str]:
    """The command of the run, whatever sittings it took and wherever it kept its checkpoint:
    --resume and --checkpoint-dir say how the run went, not what it trained."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--checkpoint-dir":
            skip = True
        elif arg != "--resume" and not arg.startswith("--checkpoint-dir="):
            kept.append(arg)
    return kept


def _warm_start_lines(record: dict | None) -> list[str]:
    if not record:
        return []
    before = ""
    if record.get("steps") is not None:
        corpus = record.get("corpus_sha256") or ""
        before = (f", which had trained {record['steps']} steps ({record.get('epochs')} epochs)"
                  + (f" on corpus sha256 `{corpus[:16]}...`" if corpus else ""))
    return [f"- started from the weights of `{record['folder']}` (weights sha256 `{record['weights_sha256'][:16]}...`)"
            f"{before}; the steps and epochs above are this run's"
            + ("; the layers it did not have started as identities (zero output projections)"
               if record.get("started_as_identity") else "")]


def write_readme(out: Path, method: str, command: str, meta: dict, recipe) -> None:
    training, metrics = meta["training"], meta["metrics"]
    last = metrics["heldout"][-1]
    extra_keys = [k for k in recipe.extra_metrics if k in last]  # e.g. DFlash's mean accepted tokens
    extra_labels = [recipe.extra_metrics[k] for k in extra_keys]
    lines = [
        f"# {method} drafter for {meta['base_model']}",
        "",
        f"Trained by `training/train_drafter.py` on a frozen base; {recipe.shared_note}",
        f"Loading onto another base is refused (weight fingerprint in `config.json`).",
        "",
        "Command:",
        "",
        f"    {command}",
        "",
        f"- corpus: `{training['corpus']}` (sha256 `{training['corpus_sha256'][:16]}...`), "
        f"{training['train_positions']} training / {training['heldout_positions']} held-out positions",
        f"- {training['steps']} steps of {training['batch_size']} positions, {training['epochs']} epochs, "
        f"lr {training['lr']} (cosine, {training['warmup']:.0%} warm-up), seed {training['seed']}",
        f"- wall time {training['wall_time_s']:.0f} s (features {training['feature_time_s']:.0f} s, "
        f"training {training['train_time_s']:.0f} s) on {training['device']}, {training['threads']} threads, "
        f"{training.get('precision', 'float32')} training steps",
        *_warm_start_lines(training.get("initialised_from")),
        "",
        f"{recipe.metric_label}, per epoch:",
        "",
        "| epoch | " + " | ".join(recipe.metric_names_for(len(last["top1"])) + extra_labels) + " |",
        "|---|" + "---|" * (len(last["top1"]) + len(extra_labels)),
    ]
    for e, row in enumerate(metrics["heldout"], 1):
        lines.append(f"| {e} | " + " | ".join([f"{a:.3f}" for a in row["top1"]] + [f"{row[k]:.3f}" for k in extra_keys])
                     + " |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = out_folder_problem(Path(args.out), args.method)
    if problem is not None:
        parser.error(problem)
    recipe_cls = recipe_class(args.method)
    apply_method_defaults(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = Checkpoint(Path(args.checkpoint_dir or args.out), args, args.checkpoint_minutes)
    if checkpoint.exists() and not args.resume:
        parser.error(f"{checkpoint.path} holds an unfinished run: add --resume to continue it, or delete it to start over")
    if args.resume and not checkpoint.exists():
        parser.error(f"--resume: no checkpoint in {checkpoint.path.parent}")
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()

    loaded = load_model(args.model_path, dtype="float32", device=args.device)
    base, tokenizer = loaded.model, loaded.tokenizer
    recipe = recipe_cls(args)
    recipe.prepare(base)
    corpus = Path(args.corpus)
    features = build_features(base, tokenizer, corpus, recipe.request(), limit=args.limit,
                              max_length=args.max_length, heldout_fraction=args.heldout_fraction,
                              cache=not args.no_cache, progress=not args.no_progress)
    feature_time = time.perf_counter() - started
    if args.init_from is not None:  # a drafter trained further scores the tokens it learned to score
        recipe.inherited_vocab = artifact_vocabulary(recipe_cls, base, args.init_from)
    try:
        module = recipe.build(base, features, generator)
    except VocabularyMismatch as exc:
        parser.error(f"--init-from {args.init_from}: {exc}")
    print(f"{args.method}: {recipe.summary()}", flush=True)
    initialised_from = None
    if args.init_from is not None:  # on --resume the checkpoint's weights replace these below
        try:
            initialised_from = {"folder": repo_relative(args.init_from), **warm_start(recipe, base, args.init_from)}
        except WarmStartError as exc:
            parser.error(str(exc))
        print(f"initialised from {initialised_from['folder']}", flush=True)

    steps_per_epoch = recipe.steps_per_epoch(args.batch_size)
    total = max(1, round(steps_per_epoch * args.epochs))
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, betas=recipe.betas)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, max(1, round(args.warmup * total))))

    heldout = []
    step = epoch = skip = 0
    trained_before = 0.0  # training seconds of the run's earlier sittings
    if args.resume:
        try:
            state = checkpoint.load()
        except CheckpointError as exc:
            parser.error(str(exc))
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, epoch, heldout, trained_before = state["step"], state["epoch"], state["heldout"], state["train_time_s"]
        torch.set_rng_state(state["torch_rng"])
        restore_generators(recipe, state["recipe_generators"])
        rng.bit_generator.state = json.loads(state["rng"])
        if state["batches_done"] is not None:  # stopped inside an epoch: replay its batch order
            epoch, skip = epoch - 1, state["batches_done"]
        print(f"resumed at step {step} of {total} (epoch {epoch + 1})", flush=True)

    def snapshot(batches_done, rng_state) -> dict:
        return {"module": module.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "step": step, "epoch": epoch, "heldout": heldout, "batches_done": batches_done, "rng": rng_state,
                "torch_rng": torch.get_rng_state(), "recipe_generators": generator_states(recipe),
                "train_time_s": trained_before + time.perf_counter() - train_start}

    # Mixed precision: the matrix products of the forward and backward in bfloat16, the master
    # weights, optimiser state and evaluation in float32.
    autocast = torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16,
                              enabled=args.precision == "bfloat16")
    train_start = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc=f"training {args.method}", unit="step", disable=args.no_progress)
    while step < total:
        epoch += 1
        epoch_rng = json.dumps(rng.bit_generator.state)  # what this epoch's batch order is drawn from
        module.train()
        for done, batch in enumerate(recipe.train_batches(rng, args.batch_size), 1):
            if done <= skip:
                continue  # replayed: a resumed run's epoch up to where it stopped
            with autocast:
                loss = recipe.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip_value is not None:  # EAGLE's recipe clips gradients by value
                torch.nn.utils.clip_grad_value_(params, recipe.clip_value)
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            if step >= total:
                break
            if checkpoint.due():
                checkpoint.save(snapshot(done, epoch_rng))
        skip = 0
        module.eval()
        metrics = recipe.evaluate()
        heldout.append(metrics)
        bar.write(f"epoch {epoch}: held-out top-1 " + ", ".join(
            f"{name} {a:.3f}" for name, a in zip(recipe.metric_names_for(len(metrics["top1"])), metrics["top1"]))
            + "".join(f", {label} {metrics[key]}" for key, label in recipe.extra_metrics.items() if key in metrics))
        checkpoint.save(snapshot(None, json.dumps(rng.bit_generator.state)))
    bar.close()
    train_time = trained_before + time.perf_counter() - train_start

    command = COMMAND_PREFIX + " ".join(
        shlex.quote(repo_relative(a)) for a in recorded_argv(argv if argv is not None else sys.argv[1:]))
    from training.features import file_sha256

    meta = {
        "base_model": EMBEDDED_MODEL_ID if args.model_path in (EMBEDDED, "", None) else str(args.model_path),
        "training": {
            "command": command, "corpus": corpus.name, "corpus_sha256": file_sha256(corpus),
            "conversations": int(len(features.heldout)), "train_positions": int(len(recipe.train_positions)),
            "heldout_positions": int(len(recipe.heldout_positions)), "steps": step, "epochs": epoch,
            "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup, "weight_decay": args.weight_decay,
            "seed": args.seed, "device": str(loaded.device), "threads": torch.get_num_threads(),
            "precision": args.precision,
            "wall_time_s": round(trained_before + time.perf_counter() - started, 1),
            "feature_time_s": round(feature_time, 1),
            "train_time_s": round(train_time, 1),
            **({} if initialised_from is None else {"initialised_from": initialised_from}),
        },
        "metrics": {"heldout": heldout},
    }
    out = Path(args.out)
    recipe.save(out, meta)
    write_readme(out, args.method, command, meta, recipe)
    checkpoint.remove()  # the artifact is complete: nothing left to resume
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.1f} MB) in {meta['training']['wall_time_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
