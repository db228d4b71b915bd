"""Router metrics at /metrics and the JSON access log, after scripted requests through the real router."""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import uuid

import httpx

from tests.conftest import NEMOTRON, QWEN, wait_for

SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(r, settle: float = 0.1) -> dict[tuple[str, frozenset], float]:
    # A request is counted in its log phase, just after the client has its last byte.
    time.sleep(settle)
    resp = r.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    out = {}
    for line in resp.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, f"not Prometheus text: {line!r}"
        out[(m.group(1), frozenset(LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def val(metrics, name, **labels) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def stream_chat(r, model="qwen", content="hello", **extra) -> tuple[httpx.Response, list[dict]]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    events = []
    with httpx.stream("POST", r.url + "/v1/chat/completions", json=body, timeout=30) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return resp, events


def test_streamed_requests_count_by_model_and_status_and_fill_ttft_itl_and_token_counters(fake_backend, router):
    qwen = fake_backend(QWEN, args=["--output-tokens", "4", "--first-token-delay", "0.3", "--token-interval", "0.1"])
    r = router({"qwen": [qwen.addr]})
    r.wait_state(QWEN, "ready")
    before = scrape(r)
    usage_total = 0
    for _ in range(3):
        resp, events = stream_chat(r)
        assert resp.status_code == 200
        usage_total += events[-1]["usage"]["completion_tokens"]
    m = scrape(r)
    assert val(m, "router_requests_total", model=QWEN, status="200") - val(before, "router_requests_total", model=QWEN, status="200") == 3
    assert val(m, "router_output_tokens_total", model=QWEN) == usage_total == 12
    assert val(m, "router_prompt_tokens_total", model=QWEN) > 0
    # TTFT: the fake holds the first token 0.3 s, so nothing lands at or below 0.25 s.
    assert val(m, "router_time_to_first_token_seconds_count", model=QWEN) == 3
    assert val(m, "router_time_to_first_token_seconds_bucket", model=QWEN, le="0.25") == 0
    assert val(m, "router_time_to_first_token_seconds_bucket", model=QWEN, le="+Inf") == 3
    assert val(m, "router_time_to_first_token_seconds_sum", model=QWEN) >= 0.9
    # ITL: 4 tokens -> 3 gaps per request, each about 0.1 s; none near zero.
    assert val(m, "router_inter_token_latency_seconds_count", model=QWEN) == 9
    assert val(m, "router_inter_token_latency_seconds_bucket", model=QWEN, le="0.01") == 0
    assert val(m, "router_inter_token_latency_seconds_bucket", model=QWEN, le="+Inf") == 9
    assert val(m, "router_request_duration_seconds_count", model=QWEN) == 3
    assert val(m, "router_requests_in_flight", model=QWEN) == 0
    assert val(m, "router_upstream_state", model=QWEN, upstream=qwen.addr, state="ready") == 1
    assert val(m, "router_upstream_state", model=QWEN, upstream=qwen.addr, state="down") == 0


def test_histogram_buckets_are_cumulative_and_end_at_the_count(stack):
    r, _, _ = stack
    stream_chat(r, "nemotron")
    m = scrape(r)
    # (ITL is left out: a fake without pacing may deliver the whole answer in one chunk.)
    for name in ("router_time_to_first_token_seconds", "router_request_duration_seconds"):
        buckets = sorted(((float(dict(labels)["le"]), v) for (n, labels), v in m.items()
                          if n == name + "_bucket" and dict(labels)["model"] == NEMOTRON))
        counts = [v for _, v in buckets]
        assert len(buckets) > 1, name
        assert counts == sorted(counts), name
        assert buckets[-1][0] == float("inf") and counts[-1] == val(m, name + "_count", model=NEMOTRON)


def test_random_model_names_are_all_counted_under_unknown(stack):
    r, _, _ = stack
    before = scrape(r)
    for _ in range(40):
        resp = r.post("/v1/chat/completions", json={"model": f"rnd-{uuid.uuid4().hex}", "messages": []})
        assert resp.status_code == 404
    m = scrape(r)
    assert val(m, "router_requests_total", model="unknown", status="404") - \
        val(before, "router_requests_total", model="unknown", status="404") == 40
    models = {dict(labels).get("model") for (_, labels) in m}
    assert models <= {QWEN, NEMOTRON, "unknown", None}
    assert len(m) == len(before) + (0 if val(before, "router_requests_total", model="unknown", status="404") else 1)


def test_a_request_in_flight_is_counted_until_it_finishes(fake_backend, router):
    qwen = fake_backend(QWEN)
    r = router({"qwen": [qwen.addr]})
    r.wait_state(QWEN, "ready")
    qwen.control(gate=True)
    t = threading.Thread(target=stream_chat, args=(r,))
    t.start()
    try:
        wait_for(lambda: val(scrape(r), "router_requests_in_flight", model=QWEN) == 1, "one request in flight", 10)
    finally:
        qwen.control(gate=False)
        qwen.release(100)
        t.join(30)
    wait_for(lambda: val(scrape(r), "router_requests_in_flight", model=QWEN) == 0, "nothing in flight", 10)


def test_an_upstream_that_died_is_a_502_for_its_model_and_leaves_nothing_in_flight(fake_backend, router):
    qwen = fake_backend(QWEN)
    r = router({"qwen": [qwen.addr]}, health_interval=30, allow_log=r"connect\(\) failed")
    r.wait_state(QWEN, "ready")
    qwen.stop()
    resp = r.post("/v1/chat/completions", json={"model": "qwen", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 502
    m = scrape(r)
    assert val(m, "router_requests_total", model=QWEN, status="502") == 1
    assert val(m, "router_requests_in_flight", model=QWEN) == 0
    assert val(m, "router_upstream_state", model=QWEN, upstream=qwen.addr, state="down") == 1


def test_responses_say_how_long_the_router_itself_took(stack):
    r, _, _ = stack
    resp = r.post("/v1/chat/completions", json={"model": "qwen", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200
    assert float(resp.headers["x-router-time-ms"]) >= 0


def test_the_access_log_has_one_json_line_per_request_and_never_the_prompt_or_answer(stack):
    r, _, _ = stack
    log = r.prefix / "logs" / "access.log"
    time.sleep(0.7)   # lines of earlier tests leave their workers' batches within 0.5 s
    offset = log.stat().st_size if log.exists() else 0
    secret = f"secret-{uuid.uuid4().hex}"
    resp, events = stream_chat(r, "qwen", content=secret)
    answer = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    r.post("/v1/chat/completions", json={"model": "no-such-model", "messages": []})

    def lines():
        return log.read_text()[offset:].splitlines() if log.exists() else []
    wait_for(lambda: len(lines()) >= 2, "two access-log lines", 10)
    text = log.read_text()[offset:]
    assert secret not in text and answer and answer not in text
    recs = [json.loads(line) for line in lines()]
    assert len(recs) == 2, recs
    # Two workers may flush their batches in either order.
    ok, missing = sorted(recs, key=lambda rec: rec["status"])
    for rec in (ok, missing):
        assert {"time", "model", "upstream", "status", "ttft_ms", "duration_ms", "output_tokens", "prompt_tokens",
                "reasoning_tokens", "bytes_in", "bytes_out", "client_abort", "router_ms"} <= set(rec)
    assert ok["model"] == QWEN and ok["status"] == 200 and ok["upstream"]
    assert ok["output_tokens"] == events[-1]["usage"]["completion_tokens"]
    assert ok["ttft_ms"] is not None and ok["duration_ms"] >= ok["ttft_ms"]
    assert ok["client_abort"] is False and ok["bytes_out"] > 0
    assert missing["model"] == "unknown" and missing["status"] == 404 and missing["upstream"] is None


def test_a_client_that_hangs_up_mid_stream_is_logged_as_an_abort(fake_backend, router):
    qwen = fake_backend(QWEN, args=["--output-tokens", "200", "--token-interval", "0.05"])
    r = router({"qwen": [qwen.addr]})
    r.wait_state(QWEN, "ready")
    body = json.dumps({"model": "qwen", "messages": [{"role": "user", "content": "x"}], "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        got = b""
        while b"quick" not in got:      # the second streamed word: the answer has started
            data = s.recv(4096)
            assert data, f"the router closed the stream early: {got[-200:]!r}"
            got += data
        # Close with RST, as a killed client does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_for(lambda: val(scrape(r), "router_client_aborts_total", model=QWEN) == 1, "abort counted", 20)
    log = r.prefix / "logs" / "access.log"
    wait_for(lambda: log.exists() and log.read_text().strip(), "the access-log line (written in batches)", 10)
    rec = json.loads(log.read_text().splitlines()[-1])
    assert rec["client_abort"] is True and rec["model"] == QWEN


def test_metrics_can_be_turned_off_and_requests_still_flow(fake_backend, router):
    qwen = fake_backend(QWEN)
    r = router({"qwen": [qwen.addr]}, env={"ROUTER_METRICS": "off"})
    r.wait_state(QWEN, "ready")
    resp, events = stream_chat(r)
    assert resp.status_code == 200 and events
    assert "x-router-time-ms" not in resp.headers
    off = r.get("/metrics")
    assert off.status_code == 404 and off.json()["error"]["code"] == "metrics_disabled"
    log = r.prefix / "logs" / "access.log"
    assert not log.exists() or log.read_text() == ""


def test_reasoning_streamed_by_trtllm_is_counted_although_its_usage_has_no_reasoning_tokens(fake_backend, router):
    # trtllm-serve's usage carries no completion_tokens_details, and neither does the fake.
    qwen = fake_backend(QWEN, args=["--think-style", "qwen3", "--reasoning-parser", "qwen3", "--output-tokens", "6"])
    r = router({"qwen": [qwen.addr]})
    r.wait_state(QWEN, "ready")
    resp, events = stream_chat(r)
    deltas = [e["choices"][0]["delta"] for e in events if e.get("choices")]
    thinking = sum(1 for d in deltas if d.get("reasoning_content") and not d.get("content"))
    assert resp.status_code == 200 and thinking > 0
    assert "completion_tokens_details" not in events[-1]["usage"]
    m = scrape(r)
    assert val(m, "router_reasoning_events_total", model=QWEN) == thinking
    assert val(m, "router_reasoning_tokens_total", model=QWEN) == 0
    log = r.prefix / "logs" / "access.log"
    wait_for(lambda: log.exists() and log.read_text().strip(), "the access-log line (written in batches)", 10)
    rec = json.loads(log.read_text().splitlines()[-1])
    assert rec["reasoning_events"] == thinking and rec["reasoning_tokens"] is None
