"""The acceptance-vs-data curve: nested subsets of conversations with one fixed held-out split,
finished points skipped and interrupted ones resumed, the table and the plot's fallback."""

from __future__ import annotations

import json
import shutil

import pytest

import training.data_curve as curve
import training.train_drafter as trainer
from tests.test_train_drafter import tiny_training_setup
from training.checkpoint import FILE as CHECKPOINT_FILE
from training.features import read_corpus
from training.target_states import TargetStates

# A few steps per point; the trainer accepts every method's options, so one string serves both.
QUICK = "--max-steps 2 --batch-size 64 --eagle-intermediate 48"


def synthetic_records(conversations=40, second_turn_every=3):
    """Records in task order (as a merged corpus is), every 5th conversation held out, some with a
    second turn sharing their conversation's id and split."""
    records = []
    for i in range(conversations):
        split = "heldout" if i % 5 == 0 else "train"
        records.append({"id": f"task{i % 4}-{i:03d}", "split": split, "turn": 1})
        if i % second_turn_every == 0:
            records.append({"id": f"task{i % 4}-{i:03d}/2", "split": split, "turn": 2})
    return sorted(records, key=lambda r: r["id"])


def count_target_forwards(monkeypatch) -> list:
    """A list that gets an item per sequence the feature run sends through the target."""
    forwards = []
    real = TargetStates.__call__
    monkeypatch.setattr(TargetStates, "__call__", lambda self, tokens: forwards.append(1) or real(self, tokens))
    return forwards


def conversations_of(records):
    return {curve.conversation_id(r, "test") for r in records}


def test_subsets_count_conversations_are_nested_and_share_the_heldout_split():
    split = curve.split_corpus(synthetic_records())
    assert len(split.train_ranking) == 32 and split.heldout_conversations == 8
    subsets = {n: curve.subset_records(split, n) for n in (4, 8, 16, 32)}
    heldout = [[r for r in s if r["split"] == "heldout"] for s in subsets.values()]
    assert all(h == heldout[0] for h in heldout) and len(conversations_of(heldout[0])) == 8
    train = {n: conversations_of([r for r in s if r["split"] == "train"]) for n, s in subsets.items()}
    assert {n: len(c) for n, c in train.items()} == {4: 4, 8: 8, 16: 16, 32: 32}  # conversations, not lines
    assert train[4] < train[8] < train[16] < train[32]
    for records in subsets.values():  # a second turn comes with its first, never alone
        ids = {r["id"] for r in records}
        assert all(r["id"].split("/")[0] in ids for r in records)
    # The order is the hash ranking, not the file's (which is grouped by task).
    first_in_file = sorted(conversations_of([r for r in split.records if r["split"] == "train"]))[:4]
    assert train[4] != set(first_in_file)
    # The same corpus in another order gives the same subsets.
    shuffled = curve.split_corpus(list(reversed(synthetic_records())))
    assert conversations_of(curve.subset_records(shuffled, 8)) == conversations_of(subsets[8])


def test_a_size_above_the_training_conversations_is_refused(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl.gz"
    curve.write_corpus(synthetic_records(), corpus)
    with pytest.raises(SystemExit) as exit_:
        curve.main(["--corpus", str(corpus), "--out", str(tmp_path / "out"), "--sizes", "8", "33", "all"])
    assert exit_.value.code == 2
    message = capsys.readouterr().err
    assert "--sizes 33" in message and "only 32 training conversations" in message
    assert not (tmp_path / "out").exists()  # refused before anything was written
    with pytest.raises(SystemExit):
        curve.build_parser().parse_args(["--out", "x", "--sizes", "0"])


def test_subset_corpora_are_written_byte_for_byte_the_same(tmp_path):
    split = curve.split_corpus(synthetic_records())
    curve.write_corpus(curve.subset_records(split, 8), tmp_path / "a.jsonl.gz")
    curve.write_corpus(curve.subset_records(split, 8), tmp_path / "b.jsonl.gz")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert read_corpus(tmp_path / "a.jsonl.gz") == curve.subset_records(split, 8)


def test_curve_trains_every_point_skips_finished_ones_and_resumes_an_interrupted_one(tmp_path, monkeypatch, capsys):
    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)  # 24 conversations, 18 training
    out = tmp_path / "curve"
    args = ["--methods", "eagle", "hydra", "--sizes", "6", "12", "all", "--out", str(out), "--corpus", str(corpus),
            "--model-path", str(folder), "--train-args", QUICK, "--no-progress"]
    calls = []
    real_main = trainer.main

    def spy(argv):
        calls.append(argv)
        return real_main(argv)

    monkeypatch.setattr(curve, "train_main", spy)
    # The last point is interrupted after its final checkpoint, before the artifact is complete.
    real_readme = trainer.write_readme

    def crash_on_hydra_all(out_folder, *rest):
        if out_folder == out / "hydra" / "all":
            raise KeyboardInterrupt("stopped")
        return real_readme(out_folder, *rest)

    monkeypatch.setattr(trainer, "write_readme", crash_on_hydra_all)
    forwards = count_target_forwards(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        curve.main(args)
    assert len(calls) == 6 and (out / "hydra" / "all" / CHECKPOINT_FILE).is_file()
    assert len(forwards) == 24  # the target ran once per corpus conversation, not once per subset
    assert "target features: computed once" in capsys.readouterr().out
    assert not (out / "hydra" / "all.json").exists()

    monkeypatch.setattr(trainer, "write_readme", real_readme)
    calls.clear()
    assert curve.main(args) == 0
    assert len(calls) == 1 and calls[0][-1] == "--resume" and str(out / "hydra" / "all") in calls[0]
    assert not (out / "hydra" / "all" / CHECKPOINT_FILE).exists()
    log = capsys.readouterr().out
    assert log.count("done, skipped") == 5 and "[6/6] hydra, all conversations: resuming" in log

    table = json.loads((out / "data_curve.json").read_text())
    assert table["train_conversations"] == 18 and table["heldout_conversations"] == 6
    rows = table["rows"]
    assert [(r["method"], r["conversations"]) for r in rows] == [
        ("eagle", 6), ("eagle", 12), ("eagle", 18), ("hydra", 6), ("hydra", 12), ("hydra", 18)]
    # Every point is measured on the same held-out positions; training positions grow with the size.
    assert len({(r["method"], r["heldout_positions"]) for r in rows}) == 2
    for method in ("eagle", "hydra"):
        sizes = [r["train_positions"] for r in rows if r["method"] == method]
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    for r in rows:
        assert r["chain_exact"] and r["depth1_accuracy"] == r["chain"][0]
        assert all(a >= b for a, b in zip(r["chain"], r["chain"][1:]))  # a longer chain is accepted less often
        assert r["expected_accepted_length"] == pytest.approx(1 + sum(r["chain"]), abs=1e-3)
    hydra = json.loads((out / "hydra" / "6" / "config.json").read_text())["metrics"]["heldout"][-1]
    assert hydra["chain"][0] == hydra["top1"][0] and len(hydra["chain"]) == 3
    markdown = (out / "data_curve.md").read_text()
    assert "| eagle | 18 (all) |" in markdown and "| hydra | 6 |" in markdown
    assert "--sizes 6 12 all" in markdown

    # A third run trains nothing; one with other settings is refused, not mixed into the table.
    calls.clear()
    assert curve.main(args) == 0 and calls == []
    assert curve.main(args + ["--seed", "1"]) == 1 and calls == []
    assert "made with other settings" in capsys.readouterr().err


def test_the_whole_corpus_point_reuses_a_drafter_trained_there_with_the_same_options(tmp_path, monkeypatch, capsys):
    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    shipped = tmp_path / "shipped"
    common = ["--model-path", str(folder), "--corpus", str(corpus), "--seed", "0", "--max-length", "1024",
              *QUICK.split(), "--no-progress"]
    # As retrain_all trains them: eagle with the options the curve gives eagle, hydra with another.
    assert trainer.main(["--method", "eagle", "--out", str(shipped / "eagle"), *common, "--eagle-steps", "2",
                         "--threads", "1"]) == 0
    assert trainer.main(["--method", "hydra", "--out", str(shipped / "hydra"), *common, "--lr", "0.01"]) == 0
    calls = []
    real_main = trainer.main
    monkeypatch.setattr(curve, "train_main", lambda argv: calls.append(argv) or real_main(argv))
    out = tmp_path / "curve"
    args = ["--methods", "eagle", "hydra", "--sizes", "6", "all", "--out", str(out), "--corpus", str(corpus),
            "--model-path", str(folder), "--train-args", QUICK, "--method-args", "eagle=--eagle-steps 2",
            "--reuse", str(shipped), "--no-progress"]
    assert curve.main(args) == 0
    trained = [(argv[argv.index("--method") + 1], argv[argv.index("--out") + 1]) for argv in calls]
    assert trained == [("eagle", str(out / "eagle" / "6")), ("hydra", str(out / "hydra" / "6")),
                       ("hydra", str(out / "hydra" / "all"))]
    assert "--eagle-steps" in calls[0] and "--eagle-steps" not in calls[1]  # method args go to their method only
    log = capsys.readouterr().out
    assert f"the figures of {shipped / 'eagle'}" in log
    assert "hydra, all conversations: not reused" in log and "lr 0.01 there, " in log
    result = json.loads((out / "eagle" / "all.json").read_text())
    assert result["reused"] == str(shipped / "eagle") and result["settings"]["method_args"] == ["--eagle-steps", "2"]
    shipped_metrics = json.loads((shipped / "eagle" / "config.json").read_text())["metrics"]["heldout"][-1]
    assert result["row"]["chain"] == [round(a, 4) for a in shipped_metrics["top1"]]
    # Another corpus is never reused; a bad --method-args or --reuse is refused up front.
    other = tmp_path / "other.jsonl.gz"
    curve.write_corpus(read_corpus(corpus)[:-1], other)
    assert "trained on another corpus" in curve.reuse_mismatch(curve.build_parser().parse_args(
        args[:-1] + ["--corpus", str(other)]), "eagle", other, shipped / "eagle")
    for bad in (["--method-args", "medusa=--epochs 1"], ["--method-args", "eagle"], ["--reuse", str(tmp_path / "no")]):
        with pytest.raises(SystemExit):
            curve.main(args + bad)


def test_a_subset_point_reuses_a_drafter_shipped_from_that_subset_and_runs_no_target_for_it(tmp_path, monkeypatch,
                                                                                           capsys):
    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)
    out = tmp_path / "curve"
    # As `retrain_all --train-conversations 6` ships a drafter: trained on the curve's own subset file.
    subset = out / "corpora" / "6.jsonl.gz"
    curve.write_corpus(curve.subset_records(curve.split_corpus(read_corpus(corpus)), 6), subset)
    shipped = tmp_path / "shipped"
    assert trainer.main(["--method", "hydra", "--out", str(shipped / "hydra"), "--model-path", str(folder),
                         "--corpus", str(subset), "--seed", "0", "--max-length", "1024", *QUICK.split(),
                         "--no-progress"]) == 0
    shutil.rmtree(tmp_path / "cache" / "features")  # as on a machine where only the artifact is left
    calls = []
    real_main = trainer.main
    monkeypatch.setattr(curve, "train_main", lambda argv: calls.append(argv) or real_main(argv))
    forwards = count_target_forwards(monkeypatch)
    args = ["--methods", "hydra", "--sizes", "3", "6", "--out", str(out), "--corpus", str(corpus),
            "--model-path", str(folder), "--train-args", QUICK, "--reuse", str(shipped), "--no-progress"]
    assert curve.main(args) == 0
    assert [argv[argv.index("--out") + 1] for argv in calls] == [str(out / "hydra" / "3")]
    # The target ran over the trained point's subset only, not over the reused (larger) one's.
    assert len(forwards) == len(read_corpus(out / "corpora" / "3.jsonl.gz"))
    log = capsys.readouterr().out
    assert f"hydra, 6 conversations: the figures of {shipped / 'hydra'}" in log
    assert "not reused" not in log  # the 3-conversation point has no shipped drafter: nothing to say
    rows = json.loads((out / "data_curve.json").read_text())["rows"]
    assert [r["conversations"] for r in rows] == [3, 6]
    shipped_metrics = json.loads((shipped / "hydra" / "config.json").read_text())["metrics"]["heldout"][-1]
    assert rows[1]["depth1_accuracy"] == round(shipped_metrics["top1"][0], 4)


def row(method, conversations, depth1, chain2, size=None, exact=True):
    chain = [depth1, chain2]
    return {"method": method, "size": size or str(conversations), "conversations": conversations,
            "train_positions": conversations * 100, "heldout_positions": 500, "depth1_accuracy": depth1,
            "chain": chain, "chain_exact": exact, "expected_accepted_length": 1 + sum(chain),
            "expected_accepted_length_2": 1 + sum(chain), "steps": conversations, "epochs": 3, "train_time_s": 12.0}


def test_tables_hold_every_point(tmp_path):
    rows = [row("eagle", 1000, 0.25, 0.05), row("eagle", 2000, 0.3, 0.08, size="all"),
            row("hydra", 1000, 0.35, 0.2, exact=False)]
    header = {"command": "python -m training.data_curve --out x", "corpus": "c.jsonl.gz", "corpus_sha256": "ab" * 32,
              "train_conversations": 2000, "heldout_conversations": 200}
    json_path, md_path = curve.write_tables(rows, tmp_path, header)
    assert json.loads(json_path.read_text())["rows"] == rows
    text = md_path.read_text()
    assert "| eagle | 1,000 | 100,000 | 0.250 | 1.300 (2) | 1.300 | 1,000 | 12 s |" in text
    assert "| eagle | 2,000 (all) |" in text and "1.550 (2) (est.)" in text
    assert "same 200 held-out conversations" in text and "    python -m training.data_curve --out x" in text


def test_plot_falls_back_to_the_table_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(curve, "plot_backend", lambda: None)
    message = curve.write_plot([row("eagle", 1000, 0.25, 0.05)], tmp_path / "p.png")
    assert message.startswith("no plot") and "pip install matplotlib" in message
    assert not (tmp_path / "p.png").exists()


def test_plot_is_a_png_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [row("eagle", 1000, 0.25, 0.05), row("eagle", 2000, 0.3, 0.08), row("hydra", 1000, 0.35, 0.2)]
    assert "matplotlib" in curve.write_plot(rows, tmp_path / "p.png", backend="matplotlib")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        curve.build_parser().parse_args(["--help"])
    for action in curve.build_parser()._actions:
        if action.option_strings:
            assert action.help, f"{action.option_strings} has no help"
    text = capsys.readouterr().out
    assert "--train-args" in text and "--sizes" in text and "refused" in text


def test_subset_features_are_the_corpus_features_cut_out(tmp_path, monkeypatch):
    from methods.core.hidden_states import HiddenStateRequest
    from training.features import CorpusError, build_features, subset_features

    _, loaded, corpus = tiny_training_setup(tmp_path, monkeypatch)
    split = curve.split_corpus(read_corpus(corpus))
    subset = tmp_path / "subset.jsonl.gz"
    curve.write_corpus(curve.subset_records(split, 6), subset)
    request = HiddenStateRequest(layer_inputs=(1,), final=True)
    cut = subset_features(loaded.model, loaded.tokenizer, corpus, subset, request, progress=False)
    # build_features on the subset now reads what was cut out ...
    assert build_features(loaded.model, loaded.tokenizer, subset, request, progress=False).folder == cut.folder
    # ... and it is what running the target over the subset gives.
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "another-cache"))
    run = build_features(loaded.model, loaded.tokenizer, subset, request, progress=False)
    assert run.folder != cut.folder
    for name in ("tokens", "answer", "starts", "heldout"):
        assert getattr(run, name).tolist() == getattr(cut, name).tolist(), name
    assert int(run.heldout.sum()) == 6 and len(run.heldout) == 12
    assert (run.final[:] == cut.final[:]).all() and (run.layer_inputs[1][:] == cut.layer_inputs[1][:]).all()

    stranger = tmp_path / "stranger.jsonl.gz"
    curve.write_corpus([{**r, "answer_token_ids": [5]} if i == 0 else r
                        for i, r in enumerate(curve.subset_records(split, 6))], stranger)
    with pytest.raises(CorpusError, match="is not a record of"):
        subset_features(loaded.model, loaded.tokenizer, corpus, stranger, request, progress=False)


def test_a_curve_short_of_the_corpus_runs_the_target_over_its_largest_subset_only(tmp_path, monkeypatch, capsys):
    folder, _, corpus = tiny_training_setup(tmp_path, monkeypatch)  # 18 training conversations
    out = tmp_path / "curve"
    common = ["--methods", "eagle", "--out", str(out), "--corpus", str(corpus), "--model-path", str(folder),
              "--train-args", QUICK, "--no-progress"]
    forwards = count_target_forwards(monkeypatch)
    # The largest point first (one sitting's worth), the smaller ones in a later run.
    assert curve.main(common + ["--sizes", "6"]) == 0
    largest = len(read_corpus(out / "corpora" / "6.jsonl.gz"))
    assert len(forwards) == largest
    forwards.clear()
    assert curve.main(common + ["--sizes", "2", "4", "6"]) == 0
    assert forwards == []  # both smaller subsets were cut out of the largest one's run
    assert f"computed once over {out / 'corpora' / '6.jsonl.gz'}" in capsys.readouterr().out
    rows = json.loads((out / "data_curve.json").read_text())["rows"]
    assert [r["conversations"] for r in rows] == [2, 4, 6]
    assert len({r["heldout_positions"] for r in rows}) == 1

    # All sizes new at once: one run over the largest subset, not one per subset (with an empty
    # feature cache: a run would otherwise copy the states of the sequences the runs above hold).
    shutil.rmtree(tmp_path / "cache" / "features")
    forwards.clear()
    assert curve.main(common + ["--sizes", "3", "5", "--out", str(tmp_path / "other")]) == 0
    assert len(forwards) == len(read_corpus(tmp_path / "other" / "corpora" / "5.jsonl.gz"))
