"""Health gating, recovery, failover and backend failures, through the real router."""

from __future__ import annotations

import signal
import socket
import struct
import threading

import httpx
import openai
import pytest

from tests.conftest import NEMOTRON, QWEN, free_port, wait_for, write_registry
from tests.fakes.dns import FakeDNS

CONNECT_FAILED = r"connect\(\) failed|upstream prematurely closed|recv\(\) failed"


def ask(r, model="qwen", **kw):
    return r.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}], **kw})


def test_a_model_still_loading_gets_503_with_retry_after_then_recovers(fake_backend, router):
    qwen = fake_backend(QWEN, start=False)
    r = router({"qwen": [qwen.addr]})
    resp = ask(r)
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "5"
    err = resp.json()["error"]
    assert err["code"] == "model_starting" and "starting" in err["message"]
    assert r.get("/health").status_code == 503
    assert r.health()["models"][QWEN]["state"] == "starting"

    qwen.start()
    r.wait_state(QWEN, "ready")
    assert ask(r).status_code == 200
    assert r.get("/health").status_code == 200


def test_a_loading_backend_that_refuses_connections_never_makes_a_request_hang(fake_backend, router):
    qwen = fake_backend(QWEN, args=["--load-seconds", "30"], wait=False)
    r = router({"qwen": [qwen.addr]})
    with pytest.raises(openai.InternalServerError) as err:
        r.openai(timeout=5).chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503


def test_a_single_model_deployment_reports_the_other_model_as_not_deployed(fake_backend, router):
    qwen = fake_backend(QWEN)
    r = router({"qwen": [qwen.addr]})
    resp = ask(r, "nemotron")
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["code"] == "model_not_deployed" and NEMOTRON in err["message"] and QWEN in err["message"]
    assert [m["id"] for m in r.get("/v1/models").json()["data"]] == [QWEN, "qwen-nothink"]
    assert list(r.health()["models"]) == [QWEN]


def test_requests_spread_over_two_healthy_upstreams(fake_backend, router):
    a, b = fake_backend(QWEN), fake_backend(QWEN)
    r = router({"qwen": [a.addr, b.addr]})
    r.wait_state(QWEN, "ready")
    wait_for(lambda: all(u["state"] == "ready" for u in r.health()["models"][QWEN]["upstreams"]), "both ready")
    for _ in range(20):
        assert ask(r).status_code == 200
    assert len(a.requests()) >= 5 and len(b.requests()) >= 5


def test_a_dead_upstream_fails_over_before_the_first_byte_and_is_marked_down(fake_backend, router, tmp_path):
    a, b = fake_backend(QWEN), fake_backend(QWEN)
    # Probes rarely, so that only the passive check can notice the death in time.
    r = router({"qwen": [a.addr, b.addr]}, health_interval=30, allow_log=CONNECT_FAILED)
    wait_for(lambda: all(u["state"] == "ready" for u in r.health()["models"][QWEN]["upstreams"]), "both ready")
    a.stop(signal.SIGKILL)
    for _ in range(6):
        resp = ask(r)
        assert resp.status_code == 200, resp.text
    states = {u["address"]: u["state"] for u in r.health()["models"][QWEN]["upstreams"]}
    assert states == {a.addr: "down", b.addr: "ready"}


def test_when_every_upstream_dies_the_client_gets_a_prompt_openai_error(fake_backend, router):
    a = fake_backend(QWEN)
    r = router({"qwen": [a.addr]}, health_interval=30, allow_log=CONNECT_FAILED)
    r.wait_state(QWEN, "ready")
    a.stop(signal.SIGKILL)
    resp = ask(r)
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_unreachable"
    assert QWEN in resp.json()["error"]["message"]
    resp = ask(r)   # now known down: refused up front
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "model_down"


def test_a_restarted_backend_comes_back(fake_backend, router):
    a = fake_backend(QWEN)
    r = router({"qwen": [a.addr]})
    r.wait_state(QWEN, "ready")
    a.stop()
    r.wait_state(QWEN, "down")
    resp = ask(r)
    assert resp.status_code == 503
    err = resp.json()["error"]
    # Where and why (a refused connect to HOST:PORT) is for the operator: /health only.
    assert err["code"] == "model_down" and str(a.port) not in err["message"], err
    assert str(a.port) in str(r.health())
    a.start()
    r.wait_state(QWEN, "ready")
    assert ask(r).status_code == 200


class ResettingServer:
    """Accepts on PORT, reads the request, then resets the connection (SO_LINGER 0), as a
    backend that exits with connections still queued does."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.resets = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except OSError:
                pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            self.resets += 1

    def close(self) -> None:
        self.sock.close()


def test_a_probe_reset_by_a_restarting_backend_is_one_warning_not_an_error_per_probe(fake_backend, router):
    a = fake_backend(QWEN)
    r = router({"qwen": [a.addr]})   # fails on any [error] line, like every router test
    r.wait_state(QWEN, "ready")
    a.stop()
    resetter = ResettingServer(a.port)
    try:
        wait_for(lambda: resetter.resets >= 5, "five probes reset")
        up = r.health()["models"][QWEN]["upstreams"][0]
        assert up["state"] == "down" and "reset" in up["reason"]
    finally:
        resetter.close()
    a.start()
    r.wait_state(QWEN, "ready")
    changes = [ln for ln in r.log_text().splitlines() if "[health]" in ln and "ready -> down" in ln]
    assert len(changes) == 1 and "[warn]" in changes[0], changes


def test_health_503_from_the_backend_keeps_the_model_out_of_rotation(fake_backend, router):
    a = fake_backend(QWEN)
    r = router({"qwen": [a.addr]})
    r.wait_state(QWEN, "ready")
    a.control(health_status=503)
    r.wait_state(QWEN, "down")
    assert "503" in r.health()["models"][QWEN]["upstreams"][0]["reason"]
    a.control(health_status=200)
    r.wait_state(QWEN, "ready")


def test_a_backend_whose_executor_died_is_caught_by_the_generation_probe(fake_backend, router, tmp_path):
    a = fake_backend(QWEN)
    reg = write_registry(tmp_path, generate_interval_s=0.2, generate_timeout_s=2)
    r = router({"qwen": [a.addr]}, registry=reg)
    r.wait_state(QWEN, "ready")
    a.control(generate_ok=False)   # /health stays 200, generation fails
    r.wait_state(QWEN, "down")
    assert "generation probe failed" in r.health()["models"][QWEN]["upstreams"][0]["reason"]
    assert ask(r).status_code == 503
    a.control(generate_ok=True)
    r.wait_state(QWEN, "ready")


def test_a_slow_first_token_is_waited_for(fake_backend, router):
    a = fake_backend(QWEN, args=["--first-token-delay", "1.5"])
    r = router({"qwen": [a.addr]})
    r.wait_state(QWEN, "ready")
    chunks = list(r.openai().chat.completions.create(model="qwen", stream=True,
                                                     messages=[{"role": "user", "content": "hi"}]))
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_backend_dying_mid_stream_ends_the_client_stream_with_an_error(fake_backend, router):
    a = fake_backend(QWEN)
    r = router({"qwen": [a.addr]}, allow_log=CONNECT_FAILED)
    r.wait_state(QWEN, "ready")
    a.control(die_after_events=3)
    body = {"model": "qwen", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    got = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", r.url + "/v1/chat/completions", json=body, timeout=10) as resp:
            for line in resp.iter_lines():
                got.append(line)
    assert "data: [DONE]" not in got
    assert sum(1 for ln in got if ln.startswith("data: ")) == 3


def test_upstreams_given_by_host_name_are_resolved_through_dns(fake_backend, router):
    a = fake_backend(QWEN)
    dns = FakeDNS("qwen-backend")
    try:
        # The fake DNS closes before the router stops: a last query refused logs nothing.
        r = router({"qwen": [f"qwen-backend:{a.port}"], "nemotron": [f"no-such-host:{a.port}"]},
                   env={"ROUTER_RESOLVER": f"127.0.0.1:{dns.port}"})
        r.wait_state(QWEN, "ready")
        assert ask(r).status_code == 200
        assert dns.queries >= 1
        nemo = r.health()["models"][NEMOTRON]["upstreams"][0]
        assert nemo["state"] == "starting" and "name not found" in nemo["reason"]
    finally:
        dns.close()


def test_localhost_resolves_from_etc_hosts(fake_backend, router):
    a = fake_backend(QWEN)
    r = router({"qwen": [f"localhost:{a.port}"]})
    r.wait_state(QWEN, "ready")
    assert ask(r).status_code == 200


def test_run_router_refuses_an_unknown_model_name(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run([sys.executable, str(REPO / "scripts/run_router.py"), "--port", str(free_port()),
                          "--upstream", "llama=127.0.0.1:1"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "'llama' is not a model id or alias" in out.stderr
