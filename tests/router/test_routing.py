"""The router in front of fake trtllm-serve backends, driven by the real `openai` client."""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest

from tests.conftest import NEMOTRON, QWEN, sse_events


@pytest.mark.parametrize("name,canonical", [
    (QWEN, QWEN), ("qwen", QWEN), ("QWEN3", QWEN), ("Qwen3-30B-A3B", QWEN),
    (NEMOTRON, NEMOTRON), ("nemotron", NEMOTRON), ("nemotron-nano", NEMOTRON),
])
def test_chat_reaches_the_right_model_by_id_alias_or_rule_and_reports_the_canonical_id(stack, name, canonical):
    r, qwen, nemo = stack
    resp = r.openai().chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
    assert resp.model == canonical
    assert resp.choices[0].message.content.startswith("The quick brown fox")
    backend = qwen if canonical == QWEN else nemo
    sent = json.loads(backend.requests()[-1]["body"])
    assert sent["model"] == canonical


@pytest.mark.parametrize("name", ["qwen", "nemotron"])
def test_streaming_gives_role_first_then_the_same_text_as_non_streaming(stack, name):
    r, *_ = stack
    client = r.openai()
    full = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
    chunks = list(client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert {c.model for c in chunks} == {full.model}


def test_completions_and_responses_endpoints_are_routed(stack):
    r, *_ = stack
    client = r.openai()
    comp = client.completions.create(model="nemotron", prompt="Say something", max_tokens=4)
    assert comp.model == NEMOTRON and comp.choices[0].finish_reason == "length"
    assert comp.choices[0].text == "The quick brown fox"
    resp = client.responses.create(model="qwen", input="hello")
    assert resp.model == QWEN and resp.output_text.startswith("The quick")
    events = [e.type for e in client.responses.create(model="qwen", input="hello", stream=True)]
    assert events[0] == "response.created" and events[-1] == "response.completed"


def test_models_lists_deployed_models_with_human_names_aliases_variants_and_state(stack):
    r, *_ = stack
    models = r.openai().models.list().data
    assert [m.id for m in models] == [QWEN, "qwen-nothink", NEMOTRON, "nemotron-nothink"]
    assert [m.model_extra["name"] for m in models] == [
        "Qwen3 30B-A3B (NVFP4)", "Qwen3 30B-A3B (NVFP4), no thinking",
        "Nemotron 3 Nano 30B-A3B (NVFP4)", "Nemotron 3 Nano 30B-A3B (NVFP4), no thinking"]
    assert models[0].model_extra["aliases"] == ["qwen", "qwen3", "qwen3-30b-a3b"]
    assert models[1].model_extra["variant_of"] == QWEN and models[1].model_extra["thinking"] is False
    assert {m.model_extra["status"] for m in models} == {"ready"}
    assert r.openai().models.retrieve("nemotron").id == NEMOTRON
    assert r.openai().models.retrieve("nemotron-nothink").model_extra["variant_of"] == NEMOTRON
    assert r.get("/v1/models/nvidia/Qwen3-30B-A3B-FP4").json()["id"] == QWEN
    with pytest.raises(openai.NotFoundError):
        r.openai().models.retrieve("gpt-4o")


def test_unknown_model_is_404_naming_the_available_ids(stack):
    r, *_ = stack
    with pytest.raises(openai.NotFoundError) as err:
        r.openai().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    body = err.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model"
    assert QWEN in body["message"] and NEMOTRON in body["message"]


def test_a_model_matching_two_rules_is_refused_not_guessed(stack):
    r, *_ = stack
    resp = r.post("/v1/chat/completions", json={"model": "qwen-vs-nemotron", "messages": []})
    assert resp.status_code == 404
    assert "several models" in resp.json()["error"]["message"]


@pytest.mark.parametrize("body,status,code", [
    (b"", 400, "invalid_json"),
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b'"just a string"', 400, "invalid_json"),
    (b'{"messages": []}', 400, "missing_model"),
    (b'{"model": null, "messages": []}', 400, "missing_model"),
    (b'{"model": 42, "messages": []}', 400, "invalid_model"),
    (b'{"model": "", "messages": []}', 400, "invalid_model"),
])
def test_bad_bodies_get_an_openai_error(stack, body, status, code):
    r, *_ = stack
    resp = r.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == status
    err = resp.json()["error"]
    assert err["code"] == code and err["type"] == "invalid_request_error"
    assert set(err) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_413_in_the_openai_shape(stack, chunked):
    r, *_ = stack
    big = b'{"model": "qwen", "messages": [{"role": "user", "content": "' + b"x" * (9 * 1024 * 1024) + b'"}]}'
    content = iter([big[i:i + 65536] for i in range(0, len(big), 65536)]) if chunked else big
    resp = r.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"


def test_wrong_method_is_405_with_allow(stack):
    r, *_ = stack
    resp = r.get("/v1/chat/completions")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert resp.json()["error"]["code"] == "method_not_allowed"
    resp = r.post("/v1/models", json={})
    assert resp.status_code == 405 and resp.headers["allow"] == "GET"


def test_unknown_path_is_404_in_the_openai_shape(stack):
    r, *_ = stack
    resp = r.get("/v1/audio/speech")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_url"
    # /v1/embeddings exists (routed to embeddings models): a GET is the wrong method, not a wrong URL.
    resp = r.get("/v1/embeddings")
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"


def test_a_backend_400_reaches_the_client_in_the_openai_shape(stack):
    r, *_ = stack
    resp = r.post("/v1/chat/completions", json={"model": "qwen", "messages": [], "not_a_field": 1})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert "Extra inputs are not permitted" in err["message"] and err["code"] == 400


def test_forwarded_bodies_keep_every_byte_but_the_model(stack):
    r, qwen, _ = stack
    raw = ('{"model" : "qwen", "messages":[{"role":"user","content":"caf\\u00e9 \u65e5\u672c \\"q\\""}],'
           '"temperature":0.70000000000000001,"stop":[],"logit_bias":{}, "seed": 12345678901234567890}')
    resp = r.post("/v1/chat/completions", content=raw.encode(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    sent = qwen.requests()[-1]["body"]
    assert sent == raw.replace('"qwen"', f'"{QWEN}"')


def test_health_is_200_with_every_model_ready_and_livez_is_always_200(stack):
    r, *_ = stack
    resp = r.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    assert body["models"][QWEN]["upstreams"][0]["state"] == "ready"
    assert r.get("/livez").json() == {"status": "ok"}


def test_interleaved_concurrent_streams_to_both_models_stay_separate(stack):
    r, *_ = stack
    client = r.openai()
    results: dict[int, tuple[str, str]] = {}
    errors: list[Exception] = []

    def run(i: int) -> None:
        name = "qwen" if i % 2 else "nemotron"
        try:
            stream = client.chat.completions.create(model=name, messages=[{"role": "user", "content": str(i)}],
                                                    stream=True, max_tokens=5 + i % 4)
            chunks = list(stream)
            results[i] = (chunks[0].model, "".join(c.choices[0].delta.content or "" for c in chunks))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for i, (model, text) in results.items():
        assert model == (QWEN if i % 2 else NEMOTRON)
        assert len(text.split()) == 5 + i % 4
    assert len(results) == 16


def test_every_stream_event_reaches_the_client_before_the_backend_sends_the_next(fake_backend, router):
    """Lock-step: the fake sends event k+1 only after the client has seen event k."""
    qwen = fake_backend(QWEN)
    r = router({"qwen": [qwen.addr]})
    r.wait_state(QWEN, "ready")
    qwen.control(gate=True)
    # Usage asked for: the router would otherwise hide the usage event, and the lock-step
    # client would wait for an event it is never shown.
    body = {"model": "qwen", "stream": True, "max_tokens": 6, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]}
    seen = []
    with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
        with client.stream("POST", r.url + "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            qwen.release(1)
            while True:
                line = next(lines)
                if not line.startswith("data: "):
                    continue
                seen.append(line[6:])
                if line == "data: [DONE]":
                    break
                qwen.release(1)   # only now may the next event leave the backend
    assert len(seen) == 1 + 6 + 1 + 1 + 1   # role, tokens, finish, usage, [DONE]


def test_the_model_built_by_build_engines_routes_by_alias_with_its_model_card_sampling(fake_backend, router):
    built = "Qwen3-4B-Instruct-2507-NVFP4"
    backend = fake_backend(built)
    r = router({"qwen3-4b": [backend.addr]})
    r.wait_state(built, "ready")
    resp = r.post("/v1/chat/completions", json={"model": "qwen3-4b", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200 and resp.json()["model"] == built
    sent = json.loads(backend.requests()[-1]["body"])
    assert (sent["model"], sent["temperature"], sent["top_p"], sent["top_k"]) == (built, 0.7, 0.8, 20)
    other = r.post("/v1/chat/completions", json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}]})
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_deployed"
