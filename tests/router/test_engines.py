"""vLLM and llama.cpp behind the same router: health per engine, embeddings and rerank routed by
`model`, the engine in /v1/models, one error shape. (The reasoning matrix runs on every engine in
test_reasoning.py.)"""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.conftest import NEMOTRON, FakeBackend, finish_router, free_port, start_router, wait_for, write_registry
from tests.fakes.trtllm_serve import REASONING

GGUF = "Qwen/Qwen3-8B-GGUF"
EMBED = "Qwen/Qwen3-Embedding-0.6B-GGUF"
RERANK = "BAAI/bge-reranker-v2-m3-GGUF"   # not shipped: added by the rerank test's registry


def chat(r, model: str) -> httpx.Response:
    return r.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize("engine,model,name", [("vllm", NEMOTRON, "nemotron@vllm"), ("llamacpp", GGUF, "qwen3-8b")])
def test_a_model_loading_on_each_engine_gets_503_then_answers(fake_backend, router, engine, model, name):
    # vLLM refuses connections until its engine is up; llama-server answers 503 "Loading model".
    fake = fake_backend(model, engine=engine, args=["--load-seconds", "4"], wait=False)
    r = router({name: [fake.addr]})
    resp = chat(r, model)
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "model_starting" and resp.headers["Retry-After"]
    r.wait_state(model, "ready", timeout=30)
    resp = chat(r, model)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == model


@pytest.mark.parametrize("engine,model,name", [("vllm", NEMOTRON, "nemotron@vllm"), ("llamacpp", GGUF, "qwen3-8b")])
def test_an_engine_whose_health_turns_503_is_taken_out_of_rotation(fake_backend, router, engine, model, name):
    fake = fake_backend(model, engine=engine)
    r = router({name: [fake.addr]})
    r.wait_state(model, "ready")
    fake.control(health_status=503)   # vLLM: EngineDeadError
    r.wait_state(model, "down")
    resp = chat(r, model)
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "model_down"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One router in front of every engine's fake: Nemotron on vLLM, a GGUF chat model and an
    embeddings model on llama.cpp, and a reranker (not shipped: added to this registry). The
    generation probe runs every 0.1 s, for engines that have one."""
    tmp = tmp_path_factory.mktemp("mixed")
    entry = {"aliases": ["reranker"], "kind": "rerank",
             "serve": {"engine": "llamacpp", "service": "reranker", "checkpoint": RERANK + ":Q8_0"}}
    registry = write_registry(tmp, {RERANK: entry}, generate_interval_s=0.1)
    fakes = {"nemotron@vllm": FakeBackend(free_port(), NEMOTRON, [], engine="vllm"),
             "qwen3-8b": FakeBackend(free_port(), GGUF, [], engine="llamacpp"),
             "qwen3-embedding": FakeBackend(free_port(), EMBED, ["--embeddings"], engine="llamacpp"),
             "reranker": FakeBackend(free_port(), RERANK, ["--reranking"], engine="llamacpp")}
    for fake in fakes.values():
        fake.start(wait=False)
    r = None
    try:
        for fake in fakes.values():
            fake.wait_ready()
        r = start_router(tmp / "router", {name: [f.addr] for name, f in fakes.items()}, registry=registry)
        wait_for(lambda: r.health()["status"] == "ready", "every model ready", 30, r.proc)
        yield r, fakes
    finally:
        bad = finish_router(r, False) if r else []
        for fake in fakes.values():
            fake.stop()
    assert not bad, "\n".join(bad)


def test_engines_without_a_generation_probe_are_not_probed_with_one(mixed):
    # Their fakes answer /health_generate with 404, as the real servers do: probing it would mark
    # them down. The probe runs every 0.1 s here; many rounds later every model is still ready.
    r, fakes = mixed
    assert httpx.get(fakes["qwen3-8b"].url + "/health_generate").status_code == 404
    for _ in range(5):
        assert chat(r, "nemotron").status_code == 200 and chat(r, "qwen3-8b").status_code == 200
    assert r.health()["status"] == "ready"


def test_models_are_listed_with_their_engine_and_kind(mixed):
    r, _ = mixed
    listed = {m["id"]: (m["engine"], m["kind"]) for m in r.get("/v1/models").json()["data"]}
    # nemotron-nothink: Nemotron with thinking off, a registry variant, on the same engine.
    assert listed == {NEMOTRON: ("vllm", "chat"), "nemotron-nothink": ("vllm", "chat"), GGUF: ("llamacpp", "chat"),
                      EMBED: ("llamacpp", "embeddings"), RERANK: ("llamacpp", "rerank")}
    assert r.get("/v1/models/text-embedding").json()["engine"] == "llamacpp"


def test_embeddings_through_the_router_with_the_openai_sdk(mixed):
    r, fakes = mixed
    client = r.openai()
    # The SDK asks for base64 and decodes it itself.
    resp = client.embeddings.create(model="text-embedding", input=["the same text", "another", "the same text"])
    assert resp.model == EMBED
    vectors = [d.embedding for d in resp.data]
    assert [d.index for d in resp.data] == [0, 1, 2] and all(len(v) == 16 for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-5
    assert resp.usage.prompt_tokens == 7
    floats = client.embeddings.create(model="qwen3-embedding", input="the same text", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    sent = fakes["qwen3-embedding"].requests()[-1]
    assert sent["path"] == "/v1/embeddings" and f'"model":"{EMBED}"' in sent["body"].replace(" ", "")


def test_embeddings_errors_from_the_engine_keep_the_openai_shape(mixed):
    r, _ = mixed
    with pytest.raises(openai.BadRequestError) as caught:
        r.openai().embeddings.create(model="qwen3-embedding", input=[])
    assert "input" in caught.value.body["message"]


def test_each_kind_of_model_refuses_the_other_kinds_endpoints(mixed):
    r, fakes = mixed
    before = {name: len(f.requests()) for name, f in fakes.items()}
    resp = chat(r, "qwen3-embedding")
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "unsupported_endpoint" and err["param"] == "model" and "/v1/embeddings" in err["message"]
    for path, body in (("/v1/embeddings", {"model": "qwen3-8b", "input": "hi"}),
                       ("/v1/rerank", {"model": "text-embedding", "query": "q", "documents": ["d"]}),
                       ("/v1/completions", {"model": "reranker", "prompt": "hi"})):
        resp = r.post(path, json=body)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsupported_endpoint", path
    assert {name: len(f.requests()) for name, f in fakes.items()} == before


def test_rerank_is_routed_by_model_to_an_engine_that_serves_it(mixed):
    r, _ = mixed
    resp = r.post("/v1/rerank", json={"model": "reranker", "query": "fox", "documents": ["a fox", "a dog", "fox"],
                                      "top_n": 2})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == RERANK and len(body["results"]) == 2
    scores = [x["relevance_score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("engine,model,name,flags", [
    ("vllm", NEMOTRON, "nemotron@vllm", ["--think-style", "nemotron", "--reasoning-parser", "nano_v3"]),
    ("llamacpp", GGUF, "qwen3-8b", ["--think-style", "qwen3", "--reasoning-format", "deepseek"])])
def test_anthropic_clients_get_thinking_and_text_from_every_engine(fake_backend, router, engine, model, name, flags):
    """/v1/messages is translated for vLLM's `reasoning` and llama.cpp's `reasoning_content` alike."""
    fake = fake_backend(model, engine=engine, args=flags)
    r = router({name: [fake.addr]})
    r.wait_state(model, "ready")
    client = anthropic.Anthropic(base_url=r.url, api_key="any", max_retries=0, timeout=30)
    ask = {"model": model, "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
           "messages": [{"role": "user", "content": "hi"}]}
    whole = client.messages.create(**ask)
    assert [b.type for b in whole.content] == ["thinking", "text"], whole.content
    assert whole.content[0].thinking.strip() == REASONING and whole.content[1].text.strip()
    with client.messages.stream(**ask) as stream:
        streamed = stream.get_final_message()
    assert [b.type for b in streamed.content] == ["thinking", "text"]
    assert streamed.content[1].text == whole.content[1].text
    quiet = client.messages.create(**{**ask, "thinking": {"type": "disabled"}})
    assert [b.type for b in quiet.content] == ["text"]
