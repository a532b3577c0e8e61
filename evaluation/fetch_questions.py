"""Put the Spec-Bench question file in place: data/spec_bench/question.jsonl.

The file is public (Apache-2.0) but not ours to ship, so users fetch it: downloaded from its
pinned commit on GitHub, or copied from a local path with --from. Either way its sha256 must
match the pinned one, and the file is written to a temporary name first and renamed only after
it verifies, so a failed or wrong download never replaces a good file.

    python -m evaluation.fetch_questions                 # download
    python -m evaluation.fetch_questions --from PATH     # copy a file you already have
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import urllib.error
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse
from urllib.request import urlopen

from evaluation.record.questions import DATA_DIR, QUESTION_FILE_NAME, SPEC_BENCH, SPEC_BENCH_SHA256, sha256_of

SPEC_BENCH_COMMIT = "fd2c1cd7d2201ef71db4c5f4e455008f017967bf"
SPEC_BENCH_URL = (
    f"https://raw.githubusercontent.com/hemingkx/Spec-Bench/{SPEC_BENCH_COMMIT}/data/spec_bench/question.jsonl"
)
DEFAULT_DEST = DATA_DIR / SPEC_BENCH / QUESTION_FILE_NAME
DEFAULT_TIMEOUT_S = 60.0
# The real file is about 0.7 MB; a wrong URL serving something huge must not fill the disk.
MAX_BYTES = 64 * 1024 * 1024
_CHUNK = 1 << 16
_FROM_HINT = "If this machine is offline, copy the file from one that has it and run: " \
    "python -m evaluation.fetch_questions --from PATH"


class FetchError(Exception):
    """An expected failure (offline, bad checksum, missing source): reported without a traceback."""


def fetch_questions(
    dest: Path = DEFAULT_DEST,
    source_path: Path | None = None,
    url: str = SPEC_BENCH_URL,
    timeout: float = DEFAULT_TIMEOUT_S,
    expected_sha256: str | None = None,
) -> str:
    """Install the verified question file at `dest`; return what was done, raise FetchError if not."""
    # Resolved at call time so tests can pin a checksum of their own small file.
    expected = expected_sha256 or SPEC_BENCH_SHA256
    dest = Path(dest)
    if dest.is_dir():
        raise FetchError(f"{dest} is a directory; --dest must name a file")
    if dest.is_file():
        existing = sha256_of(dest)
        if existing == expected:
            return f"{dest} is already in place (sha256 {expected} verified); nothing to do."
        print(f"{dest} exists but its sha256 is {existing}, expected {expected}; fetching a fresh copy.")

    if source_path is not None:
        source_path = Path(source_path)
        if not source_path.is_file():
            raise FetchError(f"--from {source_path}: no such file")
        description = str(source_path)
        print(f"Copying {source_path} ...")
        with open(source_path, "rb") as source:
            _install_verified(lambda out: _copy_limited(source, out, description), dest, expected, description)
        return f"Copied {source_path} to {dest} (sha256 verified)."

    print(f"Downloading {url} ...")
    _install_verified(lambda out: _download(url, out, timeout), dest, expected, url)
    return f"Downloaded {dest} (sha256 verified)."


def _install_verified(write_into, dest: Path, expected: str, description: str) -> None:
    """Write through `write_into` to a temporary file beside dest; rename it over dest only if verified."""
    had_file = dest.is_file()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Same directory as dest, so the final os.replace is an atomic rename on one filesystem.
        handle, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as error:
        raise FetchError(f"cannot write into {dest.parent}: {error.strerror or error}") from None
    temp_path = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            write_into(out)
        got = sha256_of(temp_path)
        if got != expected:
            outcome = f"{dest} was left unchanged" if had_file else f"{dest} was not created"
            raise FetchError(
                f"checksum mismatch for {description}:\n"
                f"  expected sha256 {expected}\n"
                f"  got      sha256 {got}\n"
                f"This is not the pinned Spec-Bench question file (commit {SPEC_BENCH_COMMIT[:7]}); it may be "
                f"another version or damaged. {outcome}."
            )
        # mkstemp makes the file private (0600); the question file is ordinary data.
        os.chmod(temp_path, 0o666 & ~_current_umask())
        os.replace(temp_path, dest)
    except OSError as error:
        raise FetchError(f"cannot write {dest}: {error.strerror or error}") from None
    finally:
        temp_path.unlink(missing_ok=True)


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _copy_limited(source: BinaryIO, out: BinaryIO, description: str) -> None:
    written = 0
    for chunk in iter(lambda: source.read(_CHUNK), b""):
        written += len(chunk)
        if written > MAX_BYTES:
            raise FetchError(f"{description} is larger than {MAX_BYTES // (1 << 20)} MiB; not a question file")
        out.write(chunk)


def _download(url: str, out: BinaryIO, timeout: float) -> None:
    host = urlparse(url).hostname or url
    try:
        with urlopen(url, timeout=timeout) as response:
            _copy_limited(response, out, url)
    except urllib.error.HTTPError as error:
        raise FetchError(f"download failed: {url} answered HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise FetchError(f"download timed out after {timeout:g} s ({url}). {_FROM_HINT}") from None
        raise FetchError(f"cannot reach {host} ({error.reason}). {_FROM_HINT}") from None
    except TimeoutError:
        raise FetchError(f"download timed out after {timeout:g} s ({url}). {_FROM_HINT}") from None
    except (OSError, http.client.HTTPException) as error:
        raise FetchError(f"download from {host} was interrupted ({str(error) or type(error).__name__}). {_FROM_HINT}") from None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.fetch_questions",
        description=(
            "Put the public Spec-Bench question file (480 questions) at data/spec_bench/question.jsonl, "
            "downloaded from its pinned commit or copied from a local file, and verify its sha256. "
            "Nothing is written unless the checksum matches; an existing verified file is left alone."
        ),
        epilog=f"Pinned source: {SPEC_BENCH_URL}\nExpected sha256: {SPEC_BENCH_SHA256}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from", dest="source_path", metavar="PATH", type=Path,
        help="copy the question file from this local path instead of downloading it (e.g. on an offline machine)",
    )
    parser.add_argument(
        "--url", default=SPEC_BENCH_URL,
        help="download from this URL instead of the pinned GitHub one (a mirror); the checksum is still enforced",
    )
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST, metavar="PATH",
        help="where to put the file (default: data/spec_bench/question.jsonl in this repository, where "
        "--bench-name spec_bench looks for it)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
        help=f"network timeout for connecting and for each read, in seconds (default: {DEFAULT_TIMEOUT_S:g})",
    )
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be a positive number of seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        message = fetch_questions(args.dest, args.source_path, args.url, args.timeout)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
