"""GET /status (what the status page shows) and wait_for_ready_s, through the real router."""

from __future__ import annotations

import json
import socket
import threading
import uuid

import httpx
import pytest

from tests.conftest import (NEMOTRON, QWEN, FakeBackend, finish_router, free_port, start_router, wait_for,
                            write_registry)


def chat(r, model="qwen", content="hi", timeout=30, **fields):
    return r.post("/v1/chat/completions", timeout=timeout,
                  json={"model": model, "messages": [{"role": "user", "content": content}], **fields})


def by_id(doc: dict) -> dict:
    return {m["id"]: m for m in doc["models"]}


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    """Qwen ready, Nemotron still starting; both wait up to 600 s for a starting model."""
    tmp = tmp_path_factory.mktemp("status")
    qwen = FakeBackend(free_port(), QWEN, []).start()
    nemo = FakeBackend(free_port(), NEMOTRON, [])
    registry = write_registry(tmp, {QWEN: {"wait_for_ready_s": 600}, NEMOTRON: {"wait_for_ready_s": 600}})
    r = start_router(tmp / "router", {"qwen": [qwen.addr], "nemotron": [nemo.addr]}, registry=registry)
    try:
        r.wait_state(QWEN, "ready")
        yield r, qwen, nemo
    finally:
        bad = finish_router(r, False)
        qwen.stop()
        nemo.stop()
    assert not bad, "\n".join(bad)


def test_status_reports_each_model_with_its_names_state_and_upstreams(st):
    r, qwen, _ = st
    doc = r.get("/status").json()
    assert doc["metrics"] is True and doc["time"] >= doc["started_at"]
    models = by_id(doc)
    assert list(models) == [QWEN, NEMOTRON]
    q, n = models[QWEN], models[NEMOTRON]
    assert q["name"] == "Qwen3 30B-A3B (NVFP4)" and q["aliases"] == ["qwen", "qwen3", "qwen3-30b-a3b"]
    assert q["variants"] == [{"id": "qwen-nothink", "name": "Qwen3 30B-A3B (NVFP4), no thinking", "thinking": False}]
    assert q["state"] == "ready" and q["upstreams"][0]["address"] == qwen.addr
    assert q["since"] >= doc["started_at"]
    assert n["state"] == "starting" and n["since"] == doc["started_at"]
    assert "connect" in n["upstreams"][0]["reason"]
    assert (q["in_flight"], q["waiting"], q["wait_for_ready_s"]) == (0, 0, 600)


def test_status_counts_the_last_minute_from_the_routers_own_counters(fake_backend, router):
    qwen = fake_backend(QWEN, args=["--token-interval", "0.002"])
    r = router({"qwen": [qwen.addr]})
    r.wait_state(QWEN, "ready")
    for _ in range(3):
        assert chat(r, stream=True).status_code == 200
    # the backend refuses an unknown field (a wrong type, e.g. max_tokens="many", is the
    # router's own 400 now, before routing: not in the model's window)
    assert chat(r, "qwen", not_a_field=1).status_code == 400
    w = by_id(r.get("/status").json())[QWEN]["window"]
    assert (w["requests"], w["errors"]) == (4, 1)
    assert w["output_tokens"] == 3 * 12 and w["output_tokens_per_s"] > 0
    assert w["ttft_p50_ms"] > 0 and w["itl_p50_ms"] > 0


def test_recent_requests_keep_numbers_and_names_but_never_the_prompt_or_answer(st):
    r, *_ = st
    secret = f"secret-{uuid.uuid4().hex}"
    resp = chat(r, "qwen-nothink", content=secret, stream=True, stream_options={"include_usage": True})
    assert resp.status_code == 200
    chat(r, "gpt-4o")
    doc = r.get("/status")
    assert secret not in doc.text and "quick brown" not in doc.text
    missing, ok = doc.json()["recent"][:2]
    assert ok["model"] == QWEN and ok["status"] == 200 and ok["path"] == "/v1/chat/completions"
    assert ok["prompt_tokens"] == 2 and ok["output_tokens"] == 12 and ok["client_abort"] is False
    assert ok["ttft_ms"] > 0 and ok["duration_ms"] >= ok["ttft_ms"] and ok["tokens_per_s"] > 0
    assert missing["model"] == "unknown" and missing["status"] == 404


def test_the_recent_requests_ring_is_bounded(st):
    r, *_ = st
    with httpx.Client(base_url=r.url, timeout=10) as c:
        for i in range(60):
            c.post("/v1/chat/completions", json={"model": "qwen", "messages": [], "max_tokens": i + 1})
    recent = r.get("/status").json()["recent"]
    assert len(recent) == 50
    assert [e["status"] for e in recent] == [200] * 50
    assert recent[0]["output_tokens"] == 12 and recent[-1]["output_tokens"] == 11   # newest first


def test_with_metrics_off_status_still_shows_health(fake_backend, router):
    qwen = fake_backend(QWEN)
    r = router({"qwen": [qwen.addr]}, env={"ROUTER_METRICS": "off"})
    r.wait_state(QWEN, "ready")
    assert chat(r).status_code == 200
    doc = r.get("/status").json()
    assert doc["metrics"] is False and "window" not in doc["models"][0]
    assert doc["models"][0]["state"] == "ready"


def test_status_answers_only_get(st):
    r, *_ = st
    resp = r.post("/status", json={})
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_the_status_page_is_served_from_the_router(st):
    r, *_ = st
    home = r.get("/", follow_redirects=False)
    assert home.status_code == 302 and home.headers["location"].endswith("/ui/")
    page = r.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="app.js"' in page.text and "http" not in page.text.split("<body>")[0].replace('"data:,"', "")
    assert r.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert r.get("/ui/style.css").headers["content-type"].startswith("text/css")
    missing = r.get("/ui/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"


# ------------------------------------------------------------------------- wait_for_ready_s

def waiting(r, model=NEMOTRON) -> int:
    return by_id(r.get("/status").json())[model]["waiting"]


def test_the_wait_is_bounded_and_ends_in_the_usual_503(fake_backend, router, tmp_path):
    qwen = fake_backend(QWEN, start=False)
    r = router({"qwen": [qwen.addr]}, registry=write_registry(tmp_path, {QWEN: {"wait_for_ready_s": 0.5}}))
    resp = chat(r)
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    err = resp.json()["error"]
    assert err["code"] == "model_starting" and "waited" in err["message"]
    assert waiting(r, QWEN) == 0


def test_a_model_that_is_down_is_refused_at_once_even_with_a_wait(st):
    r, qwen, _ = st
    qwen.control(health_status=503)
    try:
        r.wait_state(QWEN, "down")
        resp = chat(r, timeout=20)
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "model_down"
    finally:
        qwen.control(health_status=200)
    r.wait_state(QWEN, "ready")


def test_a_client_that_leaves_while_waiting_ends_its_wait(st):
    r, *_ = st
    body = json.dumps({"model": "nemotron", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_for(lambda: waiting(r) == 1, "the request to wait", 10)
    wait_for(lambda: waiting(r) == 0, "the wait to end with the client", 10)
    last = r.get("/status").json()["recent"][0]
    assert last["status"] == 499 and last["client_abort"] is True


def test_a_request_for_a_starting_model_waits_for_it_and_is_answered(st):
    """Last in the module: Nemotron starts here."""
    r, _, nemo = st
    result = {}
    t = threading.Thread(target=lambda: result.update(resp=chat(r, "nemotron", timeout=60)))
    t.start()
    try:
        wait_for(lambda: waiting(r) == 1, "the request to wait", 10)
        nemo.start()
    finally:
        t.join(60)
    assert result["resp"].status_code == 200, result["resp"].text
    assert waiting(r) == 0
