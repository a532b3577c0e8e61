"""The Spec-Bench question file is installed only when its sha256 verifies; no test touches the network."""

import hashlib
import io
import subprocess
import sys
import urllib.error

import pytest

from evaluation import fetch_questions as fq
from tests.conftest import ROOT, SHARED_QUESTIONS

needs_shared_file = pytest.mark.skipif(not SHARED_QUESTIONS.is_file(), reason="shared Spec-Bench file absent")

SMALL_FILE = b'{"question_id": 1, "category": "qa", "turns": ["Why is the sky blue?"]}\n'
SMALL_SHA256 = hashlib.sha256(SMALL_FILE).hexdigest()


@pytest.fixture
def pin_small_file(monkeypatch):
    """Make the small test file the 'pinned' one, so download tests need no 0.7 MB fixture."""
    monkeypatch.setattr(fq, "SPEC_BENCH_SHA256", SMALL_SHA256)


def serve(payload: bytes, calls: list):
    """A stand-in for urlopen that records its arguments and answers with `payload`."""
    def fake_urlopen(url, timeout=None):
        calls.append((url, timeout))
        return io.BytesIO(payload)
    return fake_urlopen


def fail_with(error: BaseException):
    def fake_urlopen(url, timeout=None):
        raise error
    return fake_urlopen


def no_network(url, timeout=None):
    raise AssertionError("the network was used")


def leftovers(folder):
    """Temporary files the fetch may have left beside its destination."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def test_pinned_url_names_the_commit_and_path():
    assert fq.SPEC_BENCH_URL == (
        "https://raw.githubusercontent.com/hemingkx/Spec-Bench/fd2c1cd7d2201ef71db4c5f4e455008f017967bf"
        "/data/spec_bench/question.jsonl"
    )
    assert fq.DEFAULT_DEST == ROOT / "data" / "spec_bench" / "question.jsonl"


@needs_shared_file
def test_copy_from_local_path_installs_the_verified_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fq, "urlopen", no_network)
    dest = tmp_path / "spec_bench" / "question.jsonl"
    assert fq.main(["--from", str(SHARED_QUESTIONS), "--dest", str(dest)]) == 0
    assert dest.read_bytes() == SHARED_QUESTIONS.read_bytes()
    assert "sha256 verified" in capsys.readouterr().out
    assert leftovers(dest.parent) == []


@needs_shared_file
def test_corrupted_copy_is_refused_and_no_file_is_created(tmp_path, capsys):
    corrupted = tmp_path / "corrupted.jsonl"
    data = bytearray(SHARED_QUESTIONS.read_bytes())
    data[1000] ^= 0x01  # one byte changed
    corrupted.write_bytes(bytes(data))
    dest = tmp_path / "out" / "question.jsonl"

    assert fq.main(["--from", str(corrupted), "--dest", str(dest)]) == 1

    err = capsys.readouterr().err
    assert "checksum mismatch" in err
    assert f"expected sha256 {fq.SPEC_BENCH_SHA256}" in err
    assert f"got      sha256 {hashlib.sha256(bytes(data)).hexdigest()}" in err
    assert "was not created" in err
    assert "Traceback" not in err
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def test_bad_copy_never_replaces_the_existing_file(tmp_path, pin_small_file, capsys):
    # An older, unverified file is there; the new source is damaged: the old file must survive.
    dest = tmp_path / "question.jsonl"
    dest.write_bytes(b"an older file\n")
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(SMALL_FILE.replace(b"blue", b"bleu"))

    assert fq.main(["--from", str(damaged), "--dest", str(dest)]) == 1

    assert dest.read_bytes() == b"an older file\n"
    assert "left unchanged" in capsys.readouterr().err
    assert leftovers(tmp_path) == []


def test_good_copy_replaces_a_file_with_the_wrong_checksum(tmp_path, pin_small_file, capsys):
    dest = tmp_path / "question.jsonl"
    dest.write_bytes(b"an older file\n")
    source = tmp_path / "source.jsonl"
    source.write_bytes(SMALL_FILE)

    assert fq.main(["--from", str(source), "--dest", str(dest)]) == 0

    assert dest.read_bytes() == SMALL_FILE
    assert "expected" in capsys.readouterr().out  # it said why it fetched again


def test_verified_file_already_in_place_is_left_alone(tmp_path, pin_small_file, monkeypatch, capsys):
    monkeypatch.setattr(fq, "urlopen", no_network)
    dest = tmp_path / "question.jsonl"
    dest.write_bytes(SMALL_FILE)
    before = dest.stat().st_mtime_ns

    assert fq.main(["--dest", str(dest)]) == 0

    assert "already in place" in capsys.readouterr().out
    assert dest.stat().st_mtime_ns == before


def test_missing_local_source_is_a_clear_error(tmp_path, capsys):
    dest = tmp_path / "question.jsonl"
    assert fq.main(["--from", str(tmp_path / "nowhere.jsonl"), "--dest", str(dest)]) == 1
    assert "nowhere.jsonl: no such file" in capsys.readouterr().err
    assert not dest.exists()


def test_download_uses_the_pinned_url_with_a_timeout(tmp_path, pin_small_file, monkeypatch):
    calls = []
    monkeypatch.setattr(fq, "urlopen", serve(SMALL_FILE, calls))
    dest = tmp_path / "data" / "spec_bench" / "question.jsonl"

    assert fq.main(["--dest", str(dest), "--timeout", "7"]) == 0

    assert calls == [(fq.SPEC_BENCH_URL, 7.0)]
    assert dest.read_bytes() == SMALL_FILE


@needs_shared_file
def test_download_of_the_real_file_verifies_against_the_pinned_checksum(tmp_path, monkeypatch):
    monkeypatch.setattr(fq, "urlopen", serve(SHARED_QUESTIONS.read_bytes(), []))
    dest = tmp_path / "question.jsonl"
    assert fq.main(["--dest", str(dest)]) == 0
    assert fq.sha256_of(dest) == fq.SPEC_BENCH_SHA256


def test_wrong_download_is_refused_and_leaves_nothing(tmp_path, pin_small_file, monkeypatch, capsys):
    monkeypatch.setattr(fq, "urlopen", serve(b"<html>rate limited</html>", []))
    dest = tmp_path / "question.jsonl"

    assert fq.main(["--dest", str(dest)]) == 1

    err = capsys.readouterr().err
    assert f"expected sha256 {SMALL_SHA256}" in err
    assert hashlib.sha256(b"<html>rate limited</html>").hexdigest() in err
    assert not dest.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "error, words",
    [
        (urllib.error.URLError(OSError(-2, "Name or service not known")), ["cannot reach raw.githubusercontent.com", "offline", "--from PATH"]),
        (urllib.error.URLError(TimeoutError("timed out")), ["timed out after 60 s", "--from PATH"]),
        (TimeoutError("The read operation timed out"), ["timed out after 60 s"]),
        (urllib.error.HTTPError(fq.SPEC_BENCH_URL, 404, "Not Found", {}, None), ["HTTP 404 Not Found"]),
        (ConnectionResetError(104, "Connection reset by peer"), ["interrupted", "Connection reset"]),
    ],
    ids=["offline", "connect-timeout", "read-timeout", "http-404", "reset"],
)
def test_network_failures_are_explained_without_traceback(tmp_path, monkeypatch, capsys, error, words):
    monkeypatch.setattr(fq, "urlopen", fail_with(error))
    dest = tmp_path / "question.jsonl"

    assert fq.main(["--dest", str(dest)]) == 1

    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert "Traceback" not in err
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_download_cut_off_midway_keeps_the_old_file(tmp_path, pin_small_file, monkeypatch):
    class CutOff(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 0:
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(8)

    monkeypatch.setattr(fq, "urlopen", lambda url, timeout=None: CutOff(SMALL_FILE))
    dest = tmp_path / "question.jsonl"
    dest.write_bytes(b"an older file\n")

    assert fq.main(["--dest", str(dest)]) == 1

    assert dest.read_bytes() == b"an older file\n"
    assert leftovers(tmp_path) == []


def test_oversized_download_is_stopped(tmp_path, pin_small_file, monkeypatch, capsys):
    monkeypatch.setattr(fq, "MAX_BYTES", 16)
    monkeypatch.setattr(fq, "urlopen", serve(SMALL_FILE, []))
    dest = tmp_path / "question.jsonl"
    assert fq.main(["--dest", str(dest)]) == 1
    assert "larger than" in capsys.readouterr().err
    assert not dest.exists()


def test_module_runs_and_help_explains_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "evaluation.fetch_questions", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0
    for option in ("--from PATH", "--url URL", "--dest PATH", "--timeout SECONDS"):
        assert option in result.stdout
    assert fq.SPEC_BENCH_SHA256 in result.stdout


def test_expected_failure_from_the_command_line_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "evaluation.fetch_questions",
         "--from", str(tmp_path / "nowhere.jsonl"), "--dest", str(tmp_path / "q.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
