"""The router-child protocol (servers/child_protocol.py): finding the ready line in a
llama-server's output, however the pipe splits it, and which binaries speak it."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from llamaswitch._capabilities import Capabilities
from llamaswitch.servers.child_protocol import ROUTER_PORT_ENV, ReadyLine, child_env, speaks

READY = (b'cmd_child_to_router:state:{"state":"ready","payload":{"id":"/m/alpha.gguf",'
         b'"meta":{"n_ctx":2048}}}\n')  # fmt: skip
LOADING = b'cmd_child_to_router:state:{"state":"loading","payload":{"value":0.5}}\n'
LOG = (b"0.00.011.459 I srv  llama_server: model loaded\n"
       b"0.00.011.482 I srv  llama_server: listening on http://127.0.0.1:34979\n")  # fmt: skip


def feed_all(chunks: list[bytes]) -> list[bool]:
    line = ReadyLine()
    return [line.feed(chunk) for chunk in chunks]


def test_the_ready_state_line_is_found_and_only_once() -> None:
    assert feed_all([LOG, READY, READY]) == [False, True, False]


def test_other_states_and_log_lines_that_mention_ready_are_not_ready() -> None:
    line = ReadyLine()
    text = b"slot ready\nall slots are idle\nserver is ready to accept\n"
    assert not line.feed(LOADING + LOG + text)
    assert not line.feed(b'cmd_child_to_router:state:{"state":"sleeping","payload":{}}\n')
    assert not line.feed(b"cmd_child_to_router:state:not json\n")
    assert not line.feed(b'cmd_child_to_router:state:["ready"]\n')
    assert not line.seen


def test_the_earlier_builds_bare_ready_line_counts() -> None:
    assert feed_all([b"log\ncmd_child_to_router:ready\n"]) == [True]


def test_a_line_after_a_log_prefix_on_the_same_line_counts() -> None:
    # stdout and stderr share one pipe: a log line without its newline yet may come first.
    assert feed_all([b"[1234] partial log " + READY]) == [True]


@given(st.lists(st.integers(min_value=0, max_value=len(LOG + LOADING + READY)), max_size=8))
def test_the_ready_line_is_found_however_the_output_is_split(cuts: list[int]) -> None:
    data = LOG + LOADING + READY + LOG
    bounds = [0, *sorted(cuts), len(data)]
    chunks, ends = [], []
    for a, b in itertools.pairwise(bounds):
        if b > a:
            chunks.append(data[a:b])
            ends.append(b)
    results = feed_all(chunks)
    # Found once, in the chunk that completed the line (its newline), not before.
    end = len(LOG + LOADING + READY)
    assert results.count(True) == 1
    assert results.index(True) == next(i for i, b in enumerate(ends) if b >= end)


def test_a_huge_line_without_a_newline_does_not_grow_the_buffer_without_bound() -> None:
    line = ReadyLine()
    for _ in range(40):
        line.feed(b"cmd_child_to_router:state:" + b"x" * 4096)
    assert len(line._partial) <= 64 * 1024 + 4096 + 32
    assert line.feed(b"\n" + READY)


def test_binaries_with_router_mode_speak_it_and_get_the_variable() -> None:
    current = Capabilities.from_help(
        "llama-server",
        "--models-dir PATH    directory containing models for the router server\n"
        "-c,    --ctx-size N  context size (default: 4096)\n",
    )
    legacy = Capabilities.from_help("llama-server", "-c,    --ctx-size N  context size\n")
    assert speaks(current)
    assert not speaks(legacy)
    assert child_env(current, 8080) == {ROUTER_PORT_ENV: "8080"}
    assert child_env(legacy, 8080) == {}


def _loading(stages: list[str], current: str, value: float) -> bytes:
    payload = {"stages": stages, "current": current, "value": value}
    return (
        b"cmd_child_to_router:state:"
        + json.dumps({"state": "loading", "payload": payload}).encode()
        + b"\n"
    )


def test_the_loads_progress_runs_over_its_stages_and_the_first_line_says_it_listens() -> None:
    line = ReadyLine()
    stages = ["text_model", "mmproj_model"]
    assert not line.listening
    assert not line.feed(LOG)
    assert not line.listening
    assert not line.feed(_loading(stages, "text_model", 0.0))
    assert line.listening  # the HTTP server starts before the load
    assert line.progress == 0.0
    assert not line.feed(_loading(stages, "text_model", 1.0))
    assert line.progress == 0.5
    assert not line.loaded  # the projector is still to come
    assert not line.feed(LOG + _loading(stages, "mmproj_model", 0.5))
    assert line.progress == 0.75
    assert not line.loaded
    assert not line.feed(_loading(stages, "mmproj_model", 1.0))
    assert line.loaded
    assert line.progress == 1.0
    assert not line.seen
    assert line.feed(READY)
    assert line.listening


def test_a_value_out_of_range_is_clamped_to_its_stage() -> None:
    line = ReadyLine()
    line.feed(_loading(["a", "b"], "a", 7.0))
    assert line.progress == 0.5
    line.feed(_loading(["a", "b"], "b", -1.0))
    assert line.progress == 0.5


def test_malformed_loading_lines_say_nothing() -> None:
    line = ReadyLine()
    for bad in (b'cmd_child_to_router:state:{"state":"loading","payload":{"value":1.0}}\n',
                b'cmd_child_to_router:state:{"state":"loading","payload":[1]}\n',
                b'cmd_child_to_router:state:{"state":"loading","payload":{"stages":[],'
                b'"current":"text_model","value":1.0}}\n',
                b'cmd_child_to_router:state:{"state":"loading","payload":{"stages":["a"],'
                b'"current":"a","value":"1"}}\n',
                b'cmd_child_to_router:state:{"state":"loading","payload":{"stages":["a"],'
                b'"current":"b","value":1.0}}\n',
                b'cmd_child_to_router:state:{"state":"loading","payload":{"stages":["a"],'
                b'"current":"a","value":true}}\n',
                b'cmd_child_to_router:state:{"state":"loading","payload":{"stages":["a"],'
                b'"current":"a","value":NaN}}\n', LOADING):  # fmt: skip
        assert not line.feed(bad)
    assert line.progress is None
    assert not line.listening


def test_a_ready_line_in_the_same_chunk_as_the_loaded_one_is_ready() -> None:
    line = ReadyLine()
    assert line.feed(_loading(["text_model"], "text_model", 1.0) + READY)
    assert line.seen
