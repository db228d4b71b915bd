"""The agents' APIs through the router, driven by the real SDKs: Anthropic Messages translated to
chat completions for both models (trtllm's reasoning and tool parsers imitated by the fakes), and
stateful Responses across two replicas."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.conftest import (NEMOTRON, QWEN, FakeBackend, finish_router, free_port, start_router, wait_for,
                            write_registry)
from tests.router import rawhttp
from tests.fakes.trtllm_serve import REASONING, WORDS, count_words

INSTRUCT = "Qwen3-4B-Instruct-2507-NVFP4"
ANSWER = " ".join(WORDS[:12])
WEATHER = {"name": "get_weather", "description": "Current weather",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                            "required": ["city"]}}
EVENT_ORDER = ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
               "message_delta", "message_stop"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Qwen (qwen3 reasoning + tool parsers) and Nemotron (nano-v3 + qwen3_coder), as shipped;
    the instruct model is deployed but never comes up (it stays `starting`)."""
    tmp = tmp_path_factory.mktemp("agents")
    qwen = FakeBackend(free_port(), QWEN, ["--think-style", "qwen3", "--reasoning-parser", "qwen3",
                                           "--tool-parser", "qwen3"]).start()
    nemo = FakeBackend(free_port(), NEMOTRON, ["--think-style", "nemotron", "--reasoning-parser", "nano-v3",
                                               "--tool-parser", "qwen3_coder"]).start()
    r = start_router(tmp / "router", {"qwen": [qwen.addr], "nemotron": [nemo.addr],
                                      "qwen3-4b": [f"127.0.0.1:{free_port()}"]})
    try:
        wait_for(lambda: r.health()["models"][NEMOTRON]["state"] == "ready"
                 and r.health()["models"][QWEN]["state"] == "ready", "both ready", 20, r.proc)
        yield r, {"qwen": qwen, "nemotron": nemo}
    finally:
        bad = finish_router(r, False)
        qwen.stop()
        nemo.stop()
    assert not bad, "\n".join(bad)


def client(r) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=r.url, api_key="any", max_retries=0, timeout=30)


def last_chat_request(fake: FakeBackend) -> dict:
    reqs = [q for q in fake.requests() if q["path"] == "/v1/chat/completions"]
    return json.loads(reqs[-1]["body"])


def types(message) -> list[str]:
    return [b.type for b in message.content]


@pytest.mark.parametrize("name", ["qwen", "nemotron"])
def test_a_plain_message_answers_without_thinking_by_default(stack, name):
    r, fakes = stack
    m = client(r).messages.create(model=name, max_tokens=64, messages=[{"role": "user", "content": "hi"}],
                                  metadata={"user_id": "u1"})
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == {"qwen": QWEN, "nemotron": NEMOTRON}[name]
    assert types(m) == ["text"] and m.content[0].text == ANSWER
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.input_tokens == 2 and m.usage.output_tokens > 0
    sent = last_chat_request(fakes[name])
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert "metadata" not in sent and sent["max_tokens"] == 64


def test_system_prompt_and_turns_reach_the_model_in_order(stack):
    r, fakes = stack
    client(r).messages.create(model="qwen", max_tokens=64, system=[{"type": "text", "text": "Be brief."}], messages=[
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": [{"type": "text", "text": "4."}]},
        {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}, {"type": "text", "text": "Quickly."}]},
    ])
    assert last_chat_request(fakes["qwen"])["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}, {"type": "text", "text": "Quickly."}]},
    ]


@pytest.mark.parametrize("name", ["qwen", "nemotron"])
def test_thinking_with_a_budget_comes_back_as_a_thinking_block_first(stack, name):
    r, fakes = stack
    c = client(r)
    kw = dict(model=name, max_tokens=4096, messages=[{"role": "user", "content": "hi"}],
              thinking={"type": "enabled", "budget_tokens": 2048})
    m = c.messages.create(**kw)
    assert types(m) == ["thinking", "text"]
    assert m.content[0].thinking.strip() == REASONING and m.content[1].text == ANSWER
    assert last_chat_request(fakes[name])["chat_template_kwargs"] == {"enable_thinking": True}
    with c.messages.stream(**kw) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == ANSWER
    assert types(final) == ["thinking", "text"] and final.content[0].thinking == m.content[0].thinking
    off = c.messages.create(**{**kw, "thinking": {"type": "disabled"}})
    assert types(off) == ["text"] and off.content[0].text == ANSWER


def test_a_budget_the_hosted_api_refuses_is_refused_here_too(stack):
    r, _ = stack
    with pytest.raises(anthropic.BadRequestError) as e:
        client(r).messages.create(model="qwen", max_tokens=2000, messages=[{"role": "user", "content": "hi"}],
                                  thinking={"type": "enabled", "budget_tokens": 2048})
    assert e.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "thinking.budget_tokens: must be less than max_tokens"}}


def test_streaming_sends_anthropics_event_sequence_and_the_same_message(stack):
    r, _ = stack
    body = {"model": "qwen", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", r.url + "/v1/messages", json=body, timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    names = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    datas = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    assert [d["type"] for d in datas] == names
    assert names[:3] == EVENT_ORDER[:3] and names[-3:] == EVENT_ORDER[-3:]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta") == ANSWER
    assert datas[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert datas[-2]["usage"]["output_tokens"] > 0
    with client(r).messages.stream(model="qwen", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
        assert "".join(s.text_stream) == ANSWER
        assert s.get_final_message().stop_reason == "end_turn"


@pytest.mark.parametrize("name", ["qwen", "nemotron"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_tool_call_round_trip(stack, name, stream):
    r, fakes = stack
    c = client(r)
    turns = [{"role": "user", "content": "Weather in Paris?"}]
    kw = dict(model=name, max_tokens=4096, tools=[WEATHER], thinking={"type": "enabled", "budget_tokens": 1024})

    def ask():
        if not stream:
            return c.messages.create(messages=turns, **kw)
        with c.messages.stream(messages=turns, **kw) as s:
            return s.get_final_message()

    first = ask()
    assert types(first) == ["thinking", "tool_use"] and first.stop_reason == "tool_use"
    call = first.content[1]
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert call.input == {"city": "example", "days": 1}
    sent = last_chat_request(fakes[name])
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather", "parameters": WEATHER["input_schema"]}}]
    assert sent["tool_choice"] == "auto"

    turns += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C, sunny"}]}]
    answer = ask()
    assert types(answer) == ["thinking", "text"] and answer.stop_reason == "end_turn"
    sent = last_chat_request(fakes[name])["messages"]
    assert sent[-2] == {"role": "assistant", "content": "", "tool_calls": [{"id": call.id, "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(call.input, separators=(",", ":"))}}]}
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"}


def test_tool_choice_tool_sends_only_that_tool(stack):
    r, fakes = stack
    other = {**WEATHER, "name": "get_time"}
    m = client(r).messages.create(model="qwen", max_tokens=64, tools=[WEATHER, other],
                                  tool_choice={"type": "tool", "name": "get_time"},
                                  messages=[{"role": "user", "content": "time?"}])
    assert m.content[-1].name == "get_time" and m.stop_reason == "tool_use"
    assert [t["function"]["name"] for t in last_chat_request(fakes["qwen"])["tools"]] == ["get_time"]


def test_stop_sequences_and_max_tokens_say_why_the_answer_ended(stack):
    r, _ = stack
    c = client(r)
    m = c.messages.create(model="nemotron", max_tokens=64, stop_sequences=["fox", "zebra"],
                          messages=[{"role": "user", "content": "hi"}])
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "fox"
    assert m.content[0].text == "The quick brown "
    with c.messages.stream(model="qwen", max_tokens=64, stop_sequences=["lazy"],
                           messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "lazy")
    m = c.messages.create(model="qwen", max_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert m.stop_reason == "max_tokens" and m.content[0].text == "The quick brown"


def test_count_tokens_is_the_backends_prompt_count(stack):
    r, fakes = stack
    messages = [{"role": "user", "content": "How many tokens are in this prompt?"}]
    counted = client(r).messages.count_tokens(model="qwen", system="Be brief.", messages=messages)
    sent = last_chat_request(fakes["qwen"])
    assert sent["max_tokens"] == 1 and sent["stream"] is False
    chat = r.openai().chat.completions.create(model="qwen", max_tokens=1, messages=sent["messages"])
    assert counted.input_tokens == chat.usage.prompt_tokens == count_words(sent["messages"]) > 0


def test_errors_come_in_anthropics_shape_with_its_status_codes(stack):
    r, _ = stack
    c = client(r)
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"
    assert "gpt-4o" in e.value.body["error"]["message"]

    with pytest.raises(anthropic.InternalServerError) as e:
        c.messages.create(model="qwen3-4b", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 529 and e.value.response.headers["retry-after"] == "5"
    assert e.value.body["error"]["type"] == "overloaded_error" and "starting" in e.value.body["error"]["message"]

    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="qwen", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
    assert "image content is not supported" in e.value.body["error"]["message"]

    resp = r.post("/v1/messages", json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 400 and resp.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: must be a positive integer"}}
    resp = r.post("/v1/messages", content=b"{not json")
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    resp = r.get("/v1/messages")
    assert resp.status_code == 405 and resp.json()["type"] == "error"


def test_nginx_refusals_on_the_messages_endpoints_come_in_anthropics_shape_too(stack):
    """Refused before any Lua runs (an oversized or badly chunked body): still Anthropic's shape,
    on /v1/messages and count_tokens alike, and OpenAI's elsewhere."""
    r, _ = stack
    big = b'{"model": "qwen", "max_tokens": 5, "messages": [{"role": "user", "content": "' + b"x" * (9 << 20) + b'"}]}'
    for path in ("/v1/messages", "/v1/messages/count_tokens?beta=true"):
        resp = r.post(path, content=big, headers={"content-type": "application/json"})
        assert resp.status_code == 413, path
        assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "request_too_large", path
    raw = rawhttp.send(r.port, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"zz\r\n{}\r\n0\r\n\r\n")
    assert raw.status == 400 and json.loads(raw.body)["error"]["type"] == "invalid_request_error"
    assert json.loads(raw.body)["type"] == "error"
    assert "type" not in r.post("/v1/chat/completions", content=big).json()   # OpenAI's {"error": {...}}


def test_a_key_sent_with_keys_off_does_not_reach_the_backend(stack):
    r, fakes = stack
    client(r).messages.create(model="qwen", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    sent = [q for q in fakes["qwen"].requests() if q["path"] == "/v1/chat/completions"][-1]
    assert "x-api-key" not in sent["headers"] and "authorization" not in sent["headers"]


def test_a_model_whose_backend_speaks_messages_gets_them_untranslated(fake_backend, router, tmp_path):
    qwen = fake_backend(QWEN)
    r = router({"qwen": [qwen.addr]}, registry=write_registry(tmp_path, {QWEN: {"request": {"messages": "native"}}}))
    r.wait_state(QWEN, "ready")
    body = {"model": "qwen", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    resp = r.post("/v1/messages", json=body)
    # trtllm-serve 1.3.0rc13 (and the fake) has no /v1/messages: its 404 comes back in Anthropic's shape.
    assert resp.status_code == 404
    assert resp.json() == {"type": "error", "error": {"type": "not_found_error", "message": "Not Found"}}
    assert qwen.requests() == []   # nothing was translated to a chat completion


# ---------------------------------------------------------------------------------------------
# Responses: state lives in one replica; the router sends follow-ups there.

@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    fakes = [FakeBackend(free_port(), QWEN, []).start() for _ in range(2)]
    r = start_router(tmp / "router", {"qwen": [f.addr for f in fakes]})
    try:
        wait_for(lambda: r.health()["status"] == "ready", "both replicas ready", 20, r.proc)
        yield r, fakes
    finally:
        bad = finish_router(r, False)
        for f in fakes:
            f.stop()
    assert not bad, "\n".join(bad)


def test_previous_response_id_reaches_the_replica_that_stored_it(replicas):
    r, fakes = replicas
    client = r.openai()
    first = client.responses.create(model="qwen", input="Tell me about foxes")
    chain = [first]
    for _ in range(6):
        chain.append(client.responses.create(model="qwen", input="more", previous_response_id=chain[-1].id))
    # Each turn's prompt includes the stored conversation: found every time.
    inputs = [resp.usage.input_tokens for resp in chain]
    assert inputs == sorted(inputs) and len(set(inputs)) == len(inputs)
    holders = {i for i, f in enumerate(fakes) for q in f.requests() if q["path"] == "/v1/responses"}
    assert len(holders) == 1, "the whole chain stays on one replica"

    streamed = list(client.responses.create(model="qwen", input="again", previous_response_id=chain[-1].id,
                                            stream=True))
    sid = streamed[-1].response.id
    follow = client.responses.create(model="qwen", input="last", previous_response_id=sid)
    assert follow.usage.input_tokens > chain[-1].usage.input_tokens

    assert client.responses.retrieve(first.id).id == first.id
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve(first.id)
    assert e.value.body["code"] == "response_not_found"
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="qwen", input="x", previous_response_id=first.id)
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_never_made")
    resp = r.post("/v1/responses/" + chain[1].id, json={})
    assert resp.status_code == 405 and resp.headers["allow"] == "GET, DELETE"


def test_a_response_not_stored_is_not_remembered(replicas):
    r, _ = replicas
    client = r.openai()
    unstored = client.responses.create(model="qwen", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="qwen", input="y", previous_response_id=unstored.id)


# ---------------------------------------------------------------------------------------------
# Responses and the thinking switch: trtllm-serve's Responses API takes no chat_template_kwargs,
# so the router switches with the template's own /no_think (Qwen3) or says it cannot.

def reasoning_items(resp) -> list[str]:
    return [c.text for item in resp.output if item.type == "reasoning" for c in item.content]


def last_responses_request(fake: FakeBackend) -> dict:
    return json.loads([q for q in fake.requests() if q["path"] == "/v1/responses"][-1]["body"])


def test_responses_reasoning_follows_the_thinking_switch(stack):
    r, fakes = stack
    client = r.openai()
    thinking = client.responses.create(model="qwen", input="Why is the sky blue?")
    assert reasoning_items(thinking) == [REASONING] and thinking.output_text == ANSWER
    assert "instructions" not in last_responses_request(fakes["qwen"])   # thinking is Qwen3's default

    for kw in ({"model": "qwen-nothink"}, {"model": "qwen", "reasoning": {"effort": "minimal"}}):
        quiet = client.responses.create(input="Why is the sky blue?", instructions="Be brief.", **kw)
        assert reasoning_items(quiet) == [] and quiet.output_text == ANSWER, kw
        sent = last_responses_request(fakes["qwen"])
        assert sent["instructions"] == "Be brief.\n/no_think" and sent["model"] == QWEN
        assert sent["temperature"] == 0.7 and sent["top_p"] == 0.8   # the model card's non-thinking values

    assert reasoning_items(client.responses.create(model="nemotron", input="hi")) == [REASONING]
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="nemotron-nothink", input="hi")
    assert e.value.body["code"] == "thinking_switch_unsupported" and e.value.body["param"] == "model"
    assert "/v1/chat/completions" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="qwen", input="hi", reasoning="none")
    assert e.value.body["param"] == "reasoning"


def test_responses_streams_pass_as_the_backend_sent_them(stack):
    """The router owns no Responses events: reasoning items stream as trtllm-serve writes them,
    untouched by the reasoning shaping or the think-tag fallback."""
    r, fakes = stack
    client = r.openai()
    events = list(client.responses.create(model="qwen", input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.output_item.added", "response.reasoning_text.delta"]
    assert kinds[-1] == "response.completed" and events[-1].response.output_text == ANSWER
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta").strip() == REASONING
    quiet = [e.type for e in client.responses.create(model="qwen-nothink", input="hi", stream=True)]
    assert "response.reasoning_text.delta" not in quiet and quiet[-1] == "response.completed"
