"""API keys through the real router and the openai client: 401 / 403 / 429, scopes, limits,
reloads, two workers sharing counts, and the key never leaving the router."""

from __future__ import annotations

import json
import os
import time

import anthropic
import httpx
import openai
import pytest

from scripts import keys as keytool
from tests.conftest import NEMOTRON, QWEN, FakeBackend, free_port, wait_for
from tests.observability.test_metrics import scrape, val

MSG = [{"role": "user", "content": "hi"}]
BAD_KEYS_LINE = r"\[keys\] keys file .* not reloaded"


def write_keys(path, *entries: dict) -> dict[str, str]:
    """Keys file with the given entries (name, models, rpm, ...); returns {name: secret}."""
    secrets, out = {}, []
    for e in entries:
        secret = keytool.new_key()
        secrets[e["name"]] = secret
        out.append(keytool.Key(e["name"], keytool.hash_key(secret), e.get("models"), e.get("rpm"), e.get("tpm"),
                               e.get("max_concurrent"), e.get("metrics", False)))
    keytool.save(path, out)
    return secrets


def client(r, key, **kw):
    c = r.openai(**kw)
    c.api_key = key
    return c


def error_of(exc: openai.APIStatusError) -> dict:
    return exc.response.json()["error"]


@pytest.fixture(scope="module")
def backends():
    qwen = FakeBackend(free_port(), QWEN, []).start()
    nemo = FakeBackend(free_port(), NEMOTRON, []).start()
    yield qwen, nemo
    qwen.stop()
    nemo.stop()


class Seen:
    """A fake's requests since the test began (the fakes serve the whole module)."""

    def __init__(self, fake: FakeBackend):
        self.fake, self.start = fake, len(fake.requests())

    def __getattr__(self, name):
        return getattr(self.fake, name)

    def requests(self) -> list[dict]:
        return self.fake.requests()[self.start:]


@pytest.fixture
def keyed(backends, router, tmp_path):
    """Both models behind a router with keys on (one worker unless asked: counts land in order)."""
    qwen, nemo = (Seen(f) for f in backends)
    path = tmp_path / "keys" / "keys.yaml"

    def make(*entries, workers=1, **kw):
        secrets = write_keys(path, *entries)
        r = router({"qwen": [qwen.addr], "nemotron": [nemo.addr]}, keys=path, workers=workers, **kw)
        wait_for(lambda: r.health()["status"] == "ready", "both ready", 20, r.proc)
        return r, secrets

    make.qwen, make.nemo, make.path = qwen, nemo, path
    yield make
    for f in backends:
        f.control(gate=False)


def test_a_missing_or_unknown_key_is_a_401_invalid_api_key_and_health_stays_open(keyed):
    r, secrets = keyed({"name": "alice"})
    for key in ("unused", secrets["alice"] + "x"):
        with pytest.raises(openai.AuthenticationError) as e:
            client(r, key).chat.completions.create(model="qwen", messages=MSG)
        assert error_of(e.value)["code"] == "invalid_api_key"
        assert e.value.status_code == 401
    for path in ("/v1/chat/completions", "/v1/models", "/v1/models/qwen", "/v1/nothing"):
        resp = r.get(path) if "models" in path or "nothing" in path else r.post(path, json={})
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key", path
    assert r.get("/health").status_code == 200
    assert r.get("/livez").status_code == 200
    ok = client(r, secrets["alice"]).chat.completions.create(model="qwen", messages=MSG)
    assert ok.model == QWEN


def test_x_api_key_is_accepted_as_well_as_bearer(keyed):
    r, secrets = keyed({"name": "alice"})
    resp = r.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG},
                  headers={"x-api-key": secrets["alice"]})
    assert resp.status_code == 200


def test_anthropic_clients_send_their_key_as_x_api_key(keyed):
    """The anthropic SDK with keys on: its x-api-key authenticates, refusals come in Anthropic's
    shape, and the key does not reach the backend."""
    r, secrets = keyed({"name": "alice", "models": ["qwen"]})
    msg = {"max_tokens": 5, "messages": MSG}
    with pytest.raises(anthropic.AuthenticationError) as e:
        anthropic.Anthropic(base_url=r.url, api_key="wrong", max_retries=0).messages.create(model="qwen", **msg)
    assert e.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                       "message": "Incorrect API key provided"}}
    c = anthropic.Anthropic(base_url=r.url, api_key=secrets["alice"], max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        c.messages.create(model="nemotron", **msg)
    assert e.value.body["error"]["type"] == "permission_error" and NEMOTRON in e.value.body["error"]["message"]
    assert c.messages.create(model="qwen", **msg).content[0].type == "text"
    sent = keyed.qwen.requests()[-1]
    assert sent["path"] == "/v1/chat/completions" and "x-api-key" not in sent["headers"]


def test_a_key_sees_and_uses_only_the_models_in_its_scope(keyed):
    r, secrets = keyed({"name": "qwen-only", "models": ["qwen"]}, {"name": "globs", "models": ["nvidia/*nano*"]},
                       {"name": "everything"})
    c = client(r, secrets["qwen-only"])
    ids = [m.id for m in c.models.list().data]
    assert ids[0] == QWEN and not any("nemotron" in i.lower() for i in ids)   # qwen and its variants
    assert c.chat.completions.create(model="qwen3", messages=MSG).model == QWEN
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="nemotron", messages=MSG)
    assert error_of(e.value)["code"] == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        c.models.retrieve("nemotron")
    ids = [m.id for m in client(r, secrets["globs"]).models.list().data]
    assert ids[0] == NEMOTRON and not any("qwen" in i.lower() for i in ids)
    assert {QWEN, NEMOTRON} <= {m.id for m in client(r, secrets["everything"]).models.list().data}
    # A name that matches nothing: the error lists only the models this key may use.
    for call in (lambda c: c.chat.completions.create(model="gpt-4o", messages=MSG),
                 lambda c: c.models.retrieve("gpt-4o")):
        with pytest.raises(openai.NotFoundError) as e:
            call(c)
        assert QWEN in error_of(e.value)["message"] and NEMOTRON not in error_of(e.value)["message"]
        with pytest.raises(openai.NotFoundError) as e:
            call(client(r, secrets["everything"]))
        assert QWEN in error_of(e.value)["message"] and NEMOTRON in error_of(e.value)["message"]


def test_over_rpm_is_a_429_rate_limit_exceeded_with_retry_after_and_openai_headers(keyed):
    r, secrets = keyed({"name": "alice", "rpm": 2})
    c = client(r, secrets["alice"])
    first = c.chat.completions.with_raw_response.create(model="qwen", messages=MSG)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    second = c.chat.completions.with_raw_response.create(model="qwen", messages=MSG)
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="qwen", messages=MSG)
    assert error_of(e.value)["code"] == "rate_limit_exceeded"
    h = e.value.response.headers
    assert int(h["retry-after"]) >= 1
    assert h["x-ratelimit-limit-requests"] == "2" and h["x-ratelimit-remaining-requests"] == "0"
    assert len(keyed.qwen.requests()) == 2
    m = scrape(r)
    assert val(m, "router_rate_limited_total", key="alice", limit="rpm") == 1
    assert val(m, "router_requests_total", model=QWEN, key="alice", status="200") == 2


def test_the_rpm_limit_recovers_after_retry_after(keyed):
    # A 2 s window instead of a minute, so the test waits seconds (rpm then means "per 2 s").
    r, secrets = keyed({"name": "alice", "rpm": 1}, env={"ROUTER_KEYS_WINDOW_S": "2"})
    c = client(r, secrets["alice"])
    c.chat.completions.create(model="qwen", messages=MSG)
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="qwen", messages=MSG)
    time.sleep(int(e.value.response.headers["retry-after"]))   # what the router asked for
    assert c.chat.completions.create(model="qwen", messages=MSG).model == QWEN


def test_tokens_per_minute_are_counted_from_the_usage_the_backend_reports(keyed):
    r, secrets = keyed({"name": "t", "tpm": 30}, {"name": "small", "tpm": 10})
    c = client(r, secrets["t"])
    a = c.chat.completions.create(model="qwen", messages=MSG)            # non-streamed
    used = a.usage.prompt_tokens + a.usage.completion_tokens
    stream = c.chat.completions.with_raw_response.create(model="qwen", messages=MSG, stream=True)
    assert stream.headers["x-ratelimit-limit-tokens"] == "30"
    assert stream.headers["x-ratelimit-remaining-tokens"] == str(30 - used)
    chunks = list(stream.parse())                                        # streamed: usage asked upstream
    assert all(ch.usage is None for ch in chunks)                        # ... and not shown to this client
    third = c.chat.completions.with_raw_response.create(model="qwen", messages=MSG)
    assert third.headers["x-ratelimit-remaining-tokens"] == str(30 - 2 * used)
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="qwen", messages=MSG)
    assert error_of(e.value)["code"] == "rate_limit_exceeded" and "tokens" in error_of(e.value)["message"]
    assert e.value.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(e.value.response.headers["retry-after"]) >= 1
    # max_tokens alone over the budget: refused up front, before the backend sees it
    seen = len(keyed.qwen.requests())
    with pytest.raises(openai.RateLimitError) as e:
        client(r, secrets["small"]).chat.completions.create(model="qwen", messages=MSG, max_tokens=11)
    assert "max_tokens 11 alone exceeds" in error_of(e.value)["message"]
    assert len(keyed.qwen.requests()) == seen


def test_max_concurrent_refuses_the_extra_request_and_recovers_when_one_ends(keyed):
    r, secrets = keyed({"name": "c", "max_concurrent": 1})
    keyed.qwen.control(gate=True)
    c = client(r, secrets["c"])
    stream = c.chat.completions.create(model="qwen", messages=MSG, stream=True)   # holds the slot
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="nemotron", messages=MSG)
    assert error_of(e.value)["code"] == "rate_limit_exceeded"
    assert "in flight" in error_of(e.value)["message"]
    keyed.qwen.release(100)
    assert list(stream)
    assert c.chat.completions.create(model="nemotron", messages=MSG).model == NEMOTRON


def test_two_workers_share_the_counts(keyed):
    r, secrets = keyed({"name": "alice", "rpm": 6}, {"name": "c", "max_concurrent": 1}, workers=2)
    body = {"model": "qwen", "messages": MSG}
    statuses = []
    for _ in range(8):
        # A fresh connection each time: reuseport spreads them over both workers.
        resp = httpx.post(r.url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {secrets['alice']}", "Connection": "close"})
        statuses.append(resp.status_code)
    assert statuses == [200] * 6 + [429, 429]
    keyed.qwen.control(gate=True)
    holder = client(r, secrets["c"]).chat.completions.create(model="qwen", messages=MSG, stream=True)
    for _ in range(4):
        resp = httpx.post(r.url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {secrets['c']}", "Connection": "close"})
        assert resp.status_code == 429
    keyed.qwen.release(100)
    list(holder)


def test_the_key_never_reaches_the_backend_or_a_log(keyed):
    r, secrets = keyed({"name": "alice"})
    key = secrets["alice"]
    c = client(r, key)
    c.chat.completions.create(model="qwen", messages=MSG)
    list(c.chat.completions.create(model="qwen", messages=MSG, stream=True))
    r.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG}, headers={"x-api-key": key})
    with pytest.raises(openai.AuthenticationError):
        client(r, key + "typo").chat.completions.create(model="qwen", messages=MSG)
    received = keyed.qwen.requests()
    assert len(received) == 3
    for rec in received:
        assert "authorization" not in rec["headers"] and "x-api-key" not in rec["headers"]
        assert key not in json.dumps(rec)
    scrape(r)   # lets the access log's batch reach the file
    wait_for(lambda: (r.prefix / "logs" / "access.log").read_text().count('"key":"alice"') == 3, "logged", 10)
    for log in (r.prefix / "logs").iterdir():
        assert key[8:] not in log.read_text(errors="replace"), log


def replace_text(path, text: str) -> None:
    """Swap the file whole, as keys.py does: the router never reads half a write."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_the_keys_file_is_reloaded_and_a_broken_one_keeps_the_last_good_keys(keyed):
    r, secrets = keyed({"name": "alice"}, {"name": "bob"}, workers=2, allow_log=BAD_KEYS_LINE)
    path = keyed.path

    def works(key: str) -> bool:
        # A fresh connection each time, so both workers answer in turn.
        resp = httpx.get(r.url + "/v1/models", headers={"Authorization": f"Bearer {key}", "Connection": "close"})
        assert resp.status_code in (200, 401)
        return resp.status_code == 200

    # add: a new key works within 5 s, without a restart
    carol = keytool.new_key()
    keytool.save(path, keytool.load(path) + [keytool.Key("carol", keytool.hash_key(carol))])
    wait_for(lambda: all(works(carol) for _ in range(4)), "carol's new key to work", 5)
    # revoke: refused within 5 s
    keytool.save(path, [k for k in keytool.load(path) if k.name != "bob"])
    wait_for(lambda: not any(works(secrets["bob"]) for _ in range(4)), "bob's key to be refused", 5)
    # broken: one clear error line, and the last good keys keep working
    good = keytool.load(path)
    replace_text(path, path.read_text() + "  - name: [broken\n")
    wait_for(lambda: "not reloaded" in r.log_text(), "the error line", 5)
    assert works(secrets["alice"]) and works(carol) and not works(secrets["bob"])
    keytool.save(path, good + [keytool.Key("dave", keytool.hash_key("sk-dave"))])
    wait_for(lambda: all(works("sk-dave") for _ in range(4)), "the fixed file to load", 5)
    lines = [ln for ln in r.log_text().splitlines() if "not reloaded" in ln]
    assert len(lines) == 1, lines
    assert "keys.yaml not reloaded: line" in lines[0] and "keeping the last good keys (2)" in lines[0]


def test_metrics_need_a_metrics_key_from_outside_the_host(keyed):
    # ROUTER_METRICS_FROM=keys: loopback is treated as any other address, as Prometheus in
    # compose is (it reaches the router over the compose network).
    r, secrets = keyed({"name": "alice"}, {"name": "prom", "models": [], "metrics": True},
                       env={"ROUTER_METRICS_FROM": "keys"})
    assert r.get("/metrics").status_code == 401
    resp = r.get("/metrics", headers={"Authorization": f"Bearer {secrets['alice']}"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "metrics_not_allowed"
    resp = r.get("/metrics", headers={"Authorization": f"Bearer {secrets['prom']}"})
    assert resp.status_code == 200 and "router_requests_total" in resp.text
    assert client(r, secrets["prom"]).models.list().data == []


def test_the_status_page_data_needs_a_key_from_outside_the_host(keyed):
    r, secrets = keyed({"name": "alice", "models": ["qwen"]}, env={"ROUTER_METRICS_FROM": "keys"})
    assert r.get("/status").status_code == 401
    assert r.get("/status", headers={"Authorization": f"Bearer {secrets['alice']}"}).status_code == 200


def test_metrics_stay_readable_from_this_host_by_default(keyed):
    r, _ = keyed({"name": "alice"})
    assert r.get("/metrics").status_code == 200
