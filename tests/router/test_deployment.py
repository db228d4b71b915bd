"""One router for every compose profile (compose.models.yml): with ROUTER_MODELS empty, a model
is deployed once the compose service name of its serving (or of an engine variant) resolves,
and served by that one; a name that does not resolve means "not deployed", not "starting".
The real router, a fake DNS playing Docker's embedded one, and fake engines."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import NEMOTRON, QWEN, FakeBackend, finish_router, free_port, start_router, wait_for, write_registry
from tests.fakes.dns import FakeDNS


@pytest.fixture(scope="module")
def profile_like_mixed(tmp_path_factory):
    """Qwen on trtllm and Nemotron on vLLM (nemotron@vllm) run; nothing else does."""
    tmp = tmp_path_factory.mktemp("deployment")
    qwen = FakeBackend(free_port(), QWEN, []).start()
    nemo = FakeBackend(free_port(), NEMOTRON, [], engine="vllm").start()
    # The registry's own service names; only the ports differ (the fakes cannot bind 8000).
    reg = write_registry(tmp, {QWEN: {"serve": {"port": qwen.port}},
                               NEMOTRON: {"engine_variants": {"vllm": {"port": nemo.port}}}})
    dns = FakeDNS("qwen", "nemotron-vllm")
    r = None
    try:
        r = start_router(tmp / "router", None, registry=reg,
                         env={"ROUTER_RESOLVER": f"127.0.0.1:{dns.port}", "ROUTER_MODELS": ""})
        wait_for(lambda: r.get("/health").status_code == 200, "both models ready", 20, r.proc)
        yield r, qwen, nemo
    finally:
        bad = finish_router(r, False) if r else []
        dns.close()
        qwen.stop()
        nemo.stop()
    assert not bad, "\n".join(bad)


def models_listed(r) -> dict[str, dict]:
    return {m["id"]: m for m in r.get("/v1/models").json()["data"] if "variant_of" not in m}


def test_only_models_whose_service_resolves_are_deployed(profile_like_mixed):
    r, _, _ = profile_like_mixed
    assert set(models_listed(r)) == {QWEN, NEMOTRON}
    assert set(r.health()["models"]) == {QWEN, NEMOTRON}


def test_a_model_whose_service_does_not_resolve_is_not_deployed_rather_than_starting(profile_like_mixed):
    r, _, _ = profile_like_mixed
    resp = r.post("/v1/chat/completions", json={"model": "qwen3-4b", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_deployed"


def test_the_engine_variant_whose_service_runs_serves_the_model(profile_like_mixed):
    r, qwen, nemo = profile_like_mixed
    assert models_listed(r)[NEMOTRON]["engine"] == "vllm"
    assert models_listed(r)[QWEN]["engine"] == "trtllm"
    resp = r.post("/v1/chat/completions", json={"model": "nemotron", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, resp.text
    assert len(nemo.requests()) == 1 and not qwen.requests()


def test_a_model_whose_service_resolves_but_still_loads_is_starting(fake_backend, router, tmp_path):
    loading = fake_backend(QWEN, args=["--load-seconds", "30"], wait=False)
    reg = write_registry(tmp_path, {QWEN: {"serve": {"port": loading.port}}})
    dns = FakeDNS("qwen")
    try:
        r = router(None, registry=reg, env={"ROUTER_RESOLVER": f"127.0.0.1:{dns.port}"})
        wait_for(lambda: QWEN in models_listed(r), "qwen discovered")
        resp = r.post("/v1/chat/completions", json={"model": QWEN, "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "model_starting"
        assert "Retry-After" in resp.headers
        assert r.get("/health").status_code == 503
    finally:
        dns.close()
