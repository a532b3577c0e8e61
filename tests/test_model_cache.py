"""The converted-model cache: concurrent first conversions, conversions that die, damaged
entries and damaged GGUF files. Conversions run on a tiny GGUF file with transformers'
de-quantisation replaced by a tiny saved model (tests/gguf_fixtures.py); the cache is a
temporary folder (SDBENCH_CACHE)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from methods.core import model_loading
from methods.core.model_loading import ModelLoadError, load_model, local_folder_for
from tests.gguf_fixtures import fake_gguf_loading, write_tiny_gguf
from tests.test_inference import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gguf"


def leftovers(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if p.suffix in (".tmp", ".new", ".damaged"))


def test_two_first_conversions_at_once_both_succeed_with_one_entry(tmp_path, cache, tiny_folder):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    results, errors, loads = [], [], []

    def convert():
        try:
            results.append(local_folder_for(str(gguf)))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(f"{type(exc).__name__}: {exc}")

    with fake_gguf_loading(tiny_folder, delay=0.5, on_load=loads.append):
        threads = [threading.Thread(target=convert) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert loads.count("AutoModelForCausalLM") == 2  # both really converted, at the same time
    assert len(set(results)) == 1 and model_loading.cache_problem(Path(results[0])) is None
    assert leftovers(cache) == []
    assert load_model(str(gguf), dtype="float32", device="cpu").model.config.vocab_size == 97


KILLED_CONVERSION = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import safetensors.torch
    from methods.core.model_loading import local_folder_for
    from tests.gguf_fixtures import fake_gguf_loading

    def save_and_hang(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a model")  # the kill comes while the weights are written
        time.sleep(600)

    safetensors.torch.save_file = save_and_hang
    with fake_gguf_loading(Path(sys.argv[2])):
        local_folder_for(sys.argv[1])
""")


def test_a_killed_conversions_folder_is_removed_by_the_next_run(tmp_path, cache, tiny_folder):
    done_before = write_tiny_gguf(tmp_path / "done.gguf")
    with fake_gguf_loading(tiny_folder):
        local_folder_for(str(done_before))
    killed = write_tiny_gguf(tmp_path / "killed.gguf")
    child = subprocess.Popen([sys.executable, "-c", KILLED_CONVERSION, str(killed), str(tiny_folder)], cwd=ROOT,
                             env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(cache.glob("killed-*.tmp/model.safetensors")):
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the conversion never started writing"
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert leftovers(cache)  # what the killed conversion left
    local_folder_for(str(done_before))  # the next run, even one that converts nothing, cleans up
    assert leftovers(cache) == []


def test_a_live_conversions_folder_and_a_recent_unlocked_one_are_kept(tmp_path, cache, tiny_folder):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    with fake_gguf_loading(tiny_folder):
        local_folder_for(str(gguf))
    live = cache / "other-0123.abc.tmp"
    live.mkdir()
    holder = os.open(live / model_loading.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    recent_old_style = cache / "other-4567.tmp"  # an older version's folder, written a minute ago
    recent_old_style.mkdir()
    stale_old_style = cache / "other-89ab.tmp"
    stale_old_style.mkdir()
    an_hour_and_more = time.time() - model_loading.UNLOCKED_GRACE_S - 60
    os.utime(stale_old_style, (an_hour_and_more, an_hour_and_more))
    try:
        local_folder_for(str(gguf))
        assert live.is_dir() and recent_old_style.is_dir() and not stale_old_style.exists()
    finally:
        os.close(holder)
    local_folder_for(str(gguf))  # the lock is free now: its converter is gone
    assert not live.exists() and recent_old_style.is_dir()


@pytest.mark.parametrize("damage", ["truncated weights", "empty weights", "config"])
def test_a_damaged_cache_entry_is_converted_again(tmp_path, cache, tiny_folder, capfd, damage):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    loads = []
    with fake_gguf_loading(tiny_folder, on_load=loads.append):
        entry = Path(local_folder_for(str(gguf)))
        weights = entry / "model.safetensors"
        if damage == "truncated weights":
            weights.write_bytes(weights.read_bytes()[:1000])
        elif damage == "empty weights":
            weights.write_bytes(b"")
        else:
            (entry / "config.json").write_text('{"model_type": "llama", ')
        loaded = load_model(str(gguf), dtype="float32", device="cpu")
    assert loaded.model.config.vocab_size == 97
    assert loads.count("AutoModelForCausalLM") == 2
    assert "converting again" in capfd.readouterr().err
    assert leftovers(cache) == []


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_gguf_file_is_a_one_line_error_naming_it(tmp_path, cache, cut):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    gguf.write_bytes(gguf.read_bytes()[: int(gguf.stat().st_size * cut)])
    with pytest.raises(ModelLoadError) as caught:
        local_folder_for(str(gguf))
    message = str(caught.value)
    assert str(gguf) in message and "cut short" in message and "download it again" in message
    assert "\n" not in message
    assert leftovers(cache) == []
