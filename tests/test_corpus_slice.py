"""training/corpus_slice.py: slices of the curve's ranking, each with the whole held-out split."""

from __future__ import annotations

import pytest

import training.corpus_slice as slicer
import training.data_curve as curve
from tests.test_data_curve import conversations_of, synthetic_records
from training.features import read_corpus


def train_conversations(records):
    return conversations_of([r for r in records if r["split"] == "train"])


def test_slices_are_what_the_curves_points_leave_out_and_keep_the_heldout_split():
    split = curve.split_corpus(synthetic_records())
    heldout = [r for r in split.records if r["split"] == "heldout"]
    rest = slicer.slice_records(split, 8, None)
    middle = slicer.slice_records(split, 8, 16)
    # The slice from N is exactly what point N did not train on; from N to M what M adds to N.
    assert train_conversations(rest) == train_conversations(split.records) - train_conversations(
        curve.subset_records(split, 8))
    assert train_conversations(middle) == (train_conversations(curve.subset_records(split, 16))
                                           - train_conversations(curve.subset_records(split, 8)))
    assert len(train_conversations(middle)) == 8
    for records in (rest, middle):
        assert [r for r in records if r["split"] == "heldout"] == heldout
        ids = {r["id"] for r in records}  # a second turn comes with its first
        assert all(r["id"].split("/")[0] in ids for r in records)
    assert slicer.slice_records(split, 0, None) == split.records


@pytest.mark.parametrize("start,stop", [(32, None), (8, 8), (8, 4), (0, 33)])
def test_an_empty_or_out_of_range_slice_is_refused(start, stop, tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl.gz"
    curve.write_corpus(synthetic_records(), corpus)
    argv = ["--corpus", str(corpus), "--start", str(start), "--out", str(tmp_path / "s.jsonl.gz")]
    with pytest.raises(SystemExit) as exit_:
        slicer.main(argv + (["--stop", str(stop)] if stop is not None else []))
    assert exit_.value.code == 2
    assert "32 training conversations" in capsys.readouterr().err
    assert not (tmp_path / "s.jsonl.gz").exists()


def test_the_command_writes_the_slice(tmp_path, capsys):
    corpus, out = tmp_path / "corpus.jsonl.gz", tmp_path / "slices" / "8-end.jsonl.gz"
    curve.write_corpus(synthetic_records(), corpus)
    assert slicer.main(["--corpus", str(corpus), "--start", "8", "--out", str(out)]) == 0
    assert read_corpus(out) == slicer.slice_records(curve.split_corpus(read_corpus(corpus)), 8, None)
    assert "8 to 31 of 32" in capsys.readouterr().out


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        slicer.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--corpus", "--start", "--stop", "--heldout-fraction", "--out"):
        assert option in text
