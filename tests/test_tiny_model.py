"""The tiny models llamaswitch writes are real: both generations load and run them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from llamaswitch.testing import TinyModelSpec, write_demo_models, write_tiny_model

from .conftest import LlamaBuild
from .helpers import free_port


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    a = write_tiny_model(tmp_path / "a.gguf", seed=7)
    b = write_tiny_model(tmp_path / "b.gguf", seed=7)
    c = write_tiny_model(tmp_path / "c.gguf", seed=8)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b, c)]
    assert digest[0] == digest[1]
    assert digest[0] != digest[2]


def test_size_knobs_change_the_file(tmp_path: Path) -> None:
    small = write_tiny_model(tmp_path / "s.gguf", block_count=1)
    big = write_tiny_model(tmp_path / "b.gguf", block_count=4, embedding_length=128)
    assert big.stat().st_size > 2 * small.stat().st_size


def test_the_header_says_what_was_asked(tmp_path: Path) -> None:
    import gguf

    path = write_tiny_model(tmp_path / "m.gguf", name="knobs", embedding_length=32,
                            block_count=3, context_length=512, seed=3)  # fmt: skip
    reader = gguf.GGUFReader(path)

    def field(key: str) -> object:
        value = reader.fields[key]
        return value.contents()

    assert field("general.architecture") == "llama"
    assert field("general.name") == "knobs"
    assert field("llama.embedding_length") == 32
    assert field("llama.block_count") == 3
    assert field("llama.context_length") == 512
    count = sum(int(t.n_elements) for t in reader.tensors)
    spec = TinyModelSpec(name="knobs", embedding_length=32, block_count=3, context_length=512)
    assert count == spec.parameter_count


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embedding_length": 30}, "multiple of head_count"),
        ({"head_count": 4, "head_count_kv": 3}, "multiple of head_count_kv"),
        ({"block_count": 0}, "block_count must be >= 1"),
    ],
)
def test_bad_shapes_are_refused(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_tiny_model(tmp_path / "bad.gguf", **kwargs)


def test_demo_models_are_written_once(tmp_path: Path) -> None:
    paths = write_demo_models(tmp_path)
    assert [p.name for p in paths] == ["tiny-chat.gguf", "tiny-code.gguf"]
    mtimes = [p.stat().st_mtime_ns for p in paths]
    write_demo_models(tmp_path)
    assert [p.stat().st_mtime_ns for p in paths] == mtimes


@pytest.mark.real_binary
def test_llama_server_loads_and_completes(llama_build: LlamaBuild, tiny_model_file: Path) -> None:
    port = free_port()
    argv = [str(llama_build.server.path), "-m", str(tiny_model_file), "--host", "127.0.0.1",
            "--port", str(port), "-c", "256", "-t", "1"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"llama-server exited with {proc.returncode}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "llama-server never became healthy"
            time.sleep(0.02)
        body = json.dumps({"prompt": "the llama", "n_predict": 8}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/completion", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
        assert answer["tokens_predicted"] > 0
        assert isinstance(answer["content"], str)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.real_binary
def test_llama_bench_runs_it(llama_build: LlamaBuild, tiny_model_file: Path) -> None:
    argv = [str(llama_build.bench.path), "-m", str(tiny_model_file), "-p", "16", "-n", "0",
            "-r", "1", "-o", "json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 1
    assert rows[0]["n_prompt"] == 16
    assert rows[0]["avg_ts"] > 0
    assert rows[0]["model_n_params"] == TinyModelSpec().parameter_count
