"""Admission control per model (FIFO queue, timeout, full queue) and cancel on disconnect,
through the real router with fake backends that record when their client went away."""

from __future__ import annotations

import json
import socket
import threading

import openai
import pytest

from tests.conftest import NEMOTRON, QWEN, wait_for, write_registry
from tests.observability.test_metrics import scrape, val
from tests.router.test_keys import Seen, backends, client, error_of, write_keys  # noqa: F401 (fixture)


@pytest.fixture
def gated(backends, router, tmp_path):
    """qwen: one in flight, two waiting, a long timeout; nemotron: one in flight, one waiting,
    half a second. Keys on (key 'alice'), so aborts are counted by key too."""
    qwen, nemo = (Seen(f) for f in backends)
    registry = write_registry(tmp_path, {
        QWEN: {"admission": {"max_in_flight": 1, "queue_size": 2, "queue_timeout_s": 60}},
        NEMOTRON: {"admission": {"max_in_flight": 1, "queue_size": 1, "queue_timeout_s": 0.5}},
    })
    secrets = write_keys(tmp_path / "keys.yaml", {"name": "alice"})
    r = router({"qwen": [qwen.addr], "nemotron": [nemo.addr]}, registry=registry, keys=tmp_path / "keys.yaml")
    wait_for(lambda: r.health()["status"] == "ready", "both ready", 20, r.proc)
    qwen.control(gate=True)
    nemo.control(gate=True)
    yield r, qwen, nemo, secrets["alice"]
    qwen.control(gate=False)
    nemo.control(gate=False)


def depth(r, model=QWEN) -> float:
    return val(scrape(r, settle=0), "router_queue_depth", model=model)


def chat_in_thread(r, key, text, model="qwen", results=None):
    """A non-streamed chat whose outcome lands in results[text]."""
    results = {} if results is None else results

    def run():
        try:
            results[text] = client(r, key).chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}]).choices[0].message.content
        except openai.APIStatusError as e:
            results[text] = e
    t = threading.Thread(target=run)
    t.start()
    return t, results


def contents(fake) -> list[str]:
    return [json.loads(rec["body"])["messages"][0]["content"] for rec in fake.requests()]


def raw_chat(r, key: str, stream: bool = False) -> socket.socket:
    """A request on a bare socket, so the test decides exactly when the client goes."""
    body = json.dumps({"model": "qwen", "stream": stream, "messages": [{"role": "user", "content": "raw"}]}).encode()
    s = socket.create_connection(("127.0.0.1", r.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
              + b"\r\n\r\n" + body)
    return s


def test_requests_beyond_max_in_flight_wait_in_a_fifo_queue_and_a_full_queue_is_refused(gated):
    r, qwen, _, key = gated
    threads, results = [], {}
    for i, text in enumerate(["A", "B", "C"]):
        t, _ = chat_in_thread(r, key, text, results=results)
        threads.append(t)
        if i == 0:
            wait_for(lambda: contents(qwen) == ["A"], "A at the backend", 10)
        else:
            wait_for(lambda: depth(r) == i, f"{text} in the queue", 10)
    with pytest.raises(openai.RateLimitError) as e:
        client(r, key).chat.completions.create(model="qwen", messages=[{"role": "user", "content": "D"}])
    assert error_of(e.value)["code"] == "model_busy"
    assert int(e.value.response.headers["retry-after"]) >= 1
    qwen.release(3)
    for t in threads:
        t.join(30)
    assert contents(qwen) == ["A", "B", "C"]
    assert all(isinstance(results[x], str) for x in "ABC")
    m = scrape(r)
    assert val(m, "router_queue_depth", model=QWEN) == 0
    assert val(m, "router_queue_wait_seconds_count", model=QWEN) == 2
    assert val(m, "router_admission_rejections_total", model=QWEN, reason="queue_full") == 1


def test_a_request_that_waits_longer_than_queue_timeout_gets_429_model_busy(gated):
    r, _, nemo, key = gated
    t, results = chat_in_thread(r, key, "holder", model="nemotron")
    wait_for(lambda: len(nemo.requests()) == 1, "the slot taken", 10)
    with pytest.raises(openai.RateLimitError) as e:
        client(r, key).chat.completions.create(model="nemotron", messages=[{"role": "user", "content": "late"}])
    assert error_of(e.value)["code"] == "model_busy"
    assert "no slot freed within 0.5 s" in error_of(e.value)["message"]
    assert "retry-after" in e.value.response.headers
    nemo.release(1)
    t.join(30)
    assert isinstance(results["holder"], str)
    assert len(nemo.requests()) == 1
    assert val(scrape(r), "router_admission_rejections_total", model=NEMOTRON, reason="timeout") == 1


def test_a_client_that_disconnects_while_queued_leaves_the_queue(gated):
    r, qwen, _, key = gated
    holder, results = chat_in_thread(r, key, "A")
    wait_for(lambda: contents(qwen) == ["A"], "A at the backend", 10)
    s = raw_chat(r, key)
    wait_for(lambda: depth(r) == 1, "the raw request queued", 10)
    s.close()
    wait_for(lambda: depth(r) == 0, "the queue empty again", 10)
    wait_for(lambda: val(scrape(r), "router_client_aborts_total", model=QWEN, key="alice") == 1, "abort counted", 10)
    after, _ = chat_in_thread(r, key, "C", results=results)
    wait_for(lambda: depth(r) == 1, "C queued", 10)
    qwen.release(2)
    holder.join(30)
    after.join(30)
    assert contents(qwen) == ["A", "C"]    # the request that left never reached the model


def test_a_client_that_disconnects_before_the_first_token_closes_the_upstream_request(gated):
    r, qwen, _, key = gated
    stream = client(r, key).chat.completions.create(model="qwen", messages=[{"role": "user", "content": "s"}],
                                                    stream=True)
    wait_for(lambda: len(qwen.requests()) == 1, "the stream at the backend", 10)
    stream.close()
    wait_for(lambda: qwen.requests()[0]["disconnected"], "the backend to see its client go", 10)
    assert qwen.requests()[0]["events_sent"] == 0
    wait_for(lambda: val(scrape(r), "router_client_aborts_total", model=QWEN, key="alice") == 1, "abort counted", 10)


def test_a_client_that_disconnects_mid_stream_closes_the_upstream_request(gated):
    r, qwen, _, key = gated
    qwen.release(3)
    stream = client(r, key).chat.completions.create(model="qwen", messages=[{"role": "user", "content": "s"}],
                                                    stream=True)
    it = iter(stream)
    got = [next(it) for _ in range(3)]
    assert got[1].choices[0].delta.content
    stream.close()
    wait_for(lambda: qwen.requests()[0]["disconnected"], "the backend to see its client go", 10)
    assert qwen.requests()[0]["events_sent"] == 3 and not qwen.requests()[0]["done"]
    wait_for(lambda: val(scrape(r), "router_client_aborts_total", model=QWEN, key="alice") == 1, "abort counted", 10)
    # the slot came back: the next request goes straight through
    qwen.release(100)
    assert client(r, key).chat.completions.create(model="qwen", messages=[{"role": "user", "content": "n"}])


def test_a_client_that_disconnects_from_a_non_streamed_request_closes_the_upstream_request(gated):
    r, qwen, _, key = gated
    s = raw_chat(r, key, stream=False)
    wait_for(lambda: len(qwen.requests()) == 1, "the request at the backend", 10)
    s.close()
    wait_for(lambda: qwen.requests()[0]["disconnected"], "the backend to see its client go", 10)
    wait_for(lambda: val(scrape(r), "router_client_aborts_total", model=QWEN, key="alice") == 1, "abort counted", 10)
    wait_for(lambda: val(scrape(r), "router_requests_in_flight", model=QWEN) == 0, "nothing in flight", 10)
