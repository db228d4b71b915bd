"""One answer shape and one thinking switch for both models, whether trtllm-serve's, vLLM's or
llama.cpp's parser or the router splits the reasoning, streaming or not."""

from __future__ import annotations

import json

import pytest

from tests.conftest import (NEMOTRON, QWEN, FakeBackend, finish_router, free_port, start_router, wait_for,
                            write_registry)
from tests.fakes.trtllm_serve import REASONING, WORDS

ANSWER = " ".join(WORDS[:12])
THOUGHT = REASONING + "\n"


# Per engine: each fake's flags, and the registry entry that serves the two models with it.
def on_engine(engine: str, qwen_parser: str | None, nemo_parser: str | None, modes=("backend", "backend")) -> dict:
    config = None if engine == "llamacpp" else "vllm/nemotron-3-nano-30b-a3b-nvfp4.yaml"   # read for max-num-seqs
    serve = {"engine": engine, "backend": None, "config": config}
    return {QWEN: {"serve": {**serve, "reasoning_parser": qwen_parser}, "reasoning": {"mode": modes[0]}},
            NEMOTRON: {"serve": {**serve, "reasoning_parser": nemo_parser}, "reasoning": {"mode": modes[1]},
                       "engine_variants": NO_VARIANT_PARSER if nemo_parser is None else {}}}


# With the router splitting tags, no variant may split them first either (the registry checks).
NO_VARIANT_PARSER = {"vllm": {"reasoning_parser": None}}


ENGINES = {
    # name: (engine, qwen fake args, nemotron fake args, registry changes or None for the shipped one)
    "backend": ("trtllm", ["--reasoning-parser", "qwen3"], ["--reasoning-parser", "nano-v3"], None),
    "router": ("trtllm", [], [], {
        QWEN: {"reasoning": {"mode": "tags"}, "serve": {"reasoning_parser": None}},
        NEMOTRON: {"reasoning": {"mode": "tags_at_start"}, "serve": {"reasoning_parser": None},
                   "engine_variants": NO_VARIANT_PARSER}}),
    "vllm": ("vllm", ["--reasoning-parser", "qwen3"], ["--reasoning-parser", "nano_v3"],
             on_engine("vllm", "qwen3", "nano_v3")),
    "llamacpp": ("llamacpp", ["--reasoning-format", "deepseek"], ["--reasoning-format", "deepseek"],
                 on_engine("llamacpp", "deepseek", "deepseek")),
    # --reasoning-format none: think tags stay in content and the router splits them.
    "llamacpp-tags": ("llamacpp", [], [], on_engine("llamacpp", None, None, ("tags", "tags_at_start"))),
}


@pytest.fixture(scope="module", params=list(ENGINES))
def stack(request, tmp_path_factory):
    """backend: trtllm's parsers split (the shipped registry); router: raw tags, the router splits;
    vllm, llamacpp: those engines' fakes and parsers; llamacpp-tags: llama.cpp without a parser."""
    tmp = tmp_path_factory.mktemp(request.param)
    engine, qwen_args, nemo_args, changes = ENGINES[request.param]
    registry = write_registry(tmp, changes) if changes else None
    qwen = FakeBackend(free_port(), QWEN, ["--think-style", "qwen3", *qwen_args], engine=engine).start()
    nemo = FakeBackend(free_port(), NEMOTRON, ["--think-style", "nemotron", *nemo_args], engine=engine).start()
    r = start_router(tmp / "router", {"qwen": [qwen.addr], "nemotron": [nemo.addr]}, registry=registry)
    r.engine = engine
    try:
        wait_for(lambda: r.health()["status"] == "ready", "both ready", 20, r.proc)
        yield r, {"qwen": qwen, "nemotron": nemo}
    finally:
        bad = finish_router(r, False)
        qwen.stop()
        nemo.stop()
    assert not bad, "\n".join(bad)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


SWITCHES = {
    # name: (request fields, thinking expected)
    "default": ({"messages": user("hi")}, True),
    "enable_thinking true": ({"messages": user("hi"), "chat_template_kwargs": {"enable_thinking": True}}, True),
    "enable_thinking false": ({"messages": user("hi"), "chat_template_kwargs": {"enable_thinking": False}}, False),
    "reasoning_effort none": ({"messages": user("hi"), "reasoning_effort": "none"}, False),
    "reasoning_effort minimal": ({"messages": user("hi"), "reasoning_effort": "minimal"}, False),
    "reasoning_effort low": ({"messages": user("hi"), "reasoning_effort": "low"}, True),
    "reasoning_effort high": ({"messages": user("hi"), "reasoning_effort": "high"}, True),
    "user /no_think": ({"messages": user("hi /no_think")}, False),
    "user /think over system /no_think": (
        {"messages": [{"role": "system", "content": "Be brief. /no_think"}, *user("hi /think")]}, True),
    "system /no_think": ({"messages": [{"role": "system", "content": "Be brief. /no_think"}, *user("hi")]}, False),
    "user /no_think in a text part": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi /no_think"}]}]}, False),
    "enable_thinking beats /no_think": (
        {"messages": user("hi /no_think"), "chat_template_kwargs": {"enable_thinking": True}}, True),
    "reasoning_effort beats /think": ({"messages": user("hi /think"), "reasoning_effort": "none"}, False),
}


def collect(r, model: str, fields: dict, stream: bool) -> tuple[str | None, str | None, dict]:
    client = r.openai()
    fields = dict(fields)
    if "chat_template_kwargs" in fields:   # not an OpenAI parameter: the SDK sends it as extra_body
        fields["extra_body"] = {**fields.get("extra_body", {}), "chat_template_kwargs": fields.pop("chat_template_kwargs")}
    if not stream:
        resp = client.chat.completions.create(model=model, **fields)
        msg = resp.choices[0].message
        return msg.model_extra.get("reasoning_content"), msg.content, msg.model_extra
    reasoning, content, keys = [], [], {}
    for chunk in client.chat.completions.create(model=model, stream=True, **fields):
        assert chunk.usage is None, "the usage chunk is only for clients that ask"
        for choice in chunk.choices:
            d = choice.delta
            for k, v in d.model_extra.items():   # extra fields, concatenated over the stream
                keys[k] = (keys.get(k) or "") + (v or "")
            reasoning.append(d.model_extra.get("reasoning_content") or "")
            content.append(d.content or "")
    return "".join(reasoning), "".join(content), keys


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("switch", list(SWITCHES))
@pytest.mark.parametrize("model", ["qwen", "nemotron"])
def test_every_switch_turns_thinking_on_or_off_with_the_same_answer_shape(stack, model, switch, stream):
    r, _ = stack
    fields, thinking = SWITCHES[switch]
    reasoning, content, _ = collect(r, model, fields, stream)
    assert content == ANSWER
    assert reasoning == (THOUGHT if thinking else "")


def test_switch_text_is_removed_only_where_the_template_does_not_understand_it(stack):
    r, fakes = stack
    for model, kept in (("qwen", True), ("nemotron", False)):
        r.openai().chat.completions.create(model=model, messages=user("hi /no_think"))
        sent = json.loads(fakes[model].requests()[-1]["body"])
        assert sent["chat_template_kwargs"] == {"enable_thinking": False}
        assert sent["messages"][0]["content"] == ("hi /no_think" if kept else "hi")


def test_reasoning_can_be_mirrored_as_reasoning_or_left_out(stack):
    r, _ = stack
    for stream in (False, True):
        mirrored = collect(r, "nemotron", {"messages": user("hi"), "extra_body": {"reasoning_format": "reasoning"}},
                           stream)
        assert mirrored[2]["reasoning"] and mirrored[0] == THOUGHT
        hidden = collect(r, "qwen", {"messages": user("hi"), "extra_body": {"include_reasoning": False}}, stream)
        assert hidden[0] is None or hidden[0] == ""
        assert "reasoning_content" not in hidden[2] and "reasoning" not in hidden[2]
        assert hidden[1] == ANSWER


def test_several_choices_are_split_independently(stack):
    r, _ = stack
    for stream in (False, True):
        client = r.openai()
        if stream:
            parts: dict[int, list[str]] = {0: [], 1: []}
            for chunk in client.chat.completions.create(model="qwen", messages=user("hi"), n=2, stream=True):
                for c in chunk.choices:
                    parts[c.index].append(c.delta.model_extra.get("reasoning_content") or "")
            assert ["".join(p) for p in parts.values()] == [THOUGHT, THOUGHT]
        else:
            resp = client.chat.completions.create(model="qwen", messages=user("hi"), n=2)
            assert [c.message.model_extra["reasoning_content"] for c in resp.choices] == [THOUGHT, THOUGHT]


def test_request_hygiene_keeps_openai_clients_working(stack):
    r, fakes = stack
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "reasoning_content": "old thoughts", "reasoning": "old"},
        {"role": "user", "content": "and now?"},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    resp = r.openai().chat.completions.create(model="qwen", messages=history, tools=tools, parallel_tool_calls=False,
                                              temperature=0.2, store=False)
    assert resp.choices[0].message.content == ANSWER
    sent = json.loads(fakes["qwen"].requests()[-1]["body"])
    if r.engine == "trtllm":   # rejects them; vLLM and llama.cpp ignore what they do not know
        assert "parallel_tool_calls" not in sent and "store" not in sent
    else:
        assert sent["parallel_tool_calls"] is False and sent["store"] is False
    assert sent["tool_choice"] == "auto"
    assert sent["messages"][1] == {"role": "assistant", "content": "hello"}
    assert sent["temperature"] == 0.2   # the client's value wins
    assert (sent["top_p"], sent["top_k"]) == (0.95, 20)   # Qwen's thinking-mode values fill the rest


def test_sampling_defaults_follow_the_thinking_mode(stack):
    r, fakes = stack
    r.openai().chat.completions.create(model="qwen", messages=user("hi /no_think"))
    sent = json.loads(fakes["qwen"].requests()[-1]["body"])
    assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.7, 0.8, 20)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("variant,model", [("qwen-nothink", QWEN), ("nemotron-nothink", NEMOTRON)])
def test_a_nothink_variant_never_thinks_and_is_answered_and_counted_as_its_model(stack, variant, model, stream):
    r, fakes = stack
    fake = fakes[variant.split("-")[0]]
    fields = {"messages": user("hi /think"), "chat_template_kwargs": {"enable_thinking": True}}
    reasoning, content, _ = collect(r, variant, fields, stream)
    assert content == ANSWER and not reasoning
    sent = json.loads(fake.requests()[-1]["body"])
    assert sent["model"] == model and sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert sent["messages"][0]["content"] == "hi"
    if model == QWEN:
        assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.7, 0.8, 20)
    metrics = r.get("/metrics").text
    assert f'router_requests_total{{model="{model}",status="200"}}' in metrics
    assert variant not in metrics


def test_usage_is_always_requested_upstream_but_shown_only_when_asked(stack):
    r, fakes = stack
    chunks = list(r.openai().chat.completions.create(model="nemotron", messages=user("hi"), stream=True))
    assert all(c.usage is None for c in chunks)
    sent = json.loads(fakes["nemotron"].requests()[-1]["body"])
    assert sent["stream_options"] == {"include_usage": True}
    chunks = list(r.openai().chat.completions.create(model="nemotron", messages=user("hi"), stream=True,
                                                     stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens > 0


def test_stream_options_without_stream_is_dropped_rather_than_rejected(stack):
    r, _ = stack
    resp = r.post("/v1/chat/completions", json={"model": "qwen", "messages": user("hi"),
                                                "stream_options": {"include_usage": True}})
    assert resp.status_code == 200, resp.text


def test_a_rewritten_body_keeps_every_other_byte(stack):
    r, fakes = stack
    raw = ('{"model":"nemotron","messages":[{"role":"user","content":"caf\\u00e9 \u65e5\u672c /no_think"}],'
           '"logit_bias":{},"stop":[],"seed":12345678901234567890,"temperature":0.30000000000000004,'
           '"parallel_tool_calls":true}')
    resp = r.post("/v1/chat/completions", content=raw.encode(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    sent = fakes["nemotron"].requests()[-1]["body"]
    kept = "" if r.engine == "trtllm" else ',"parallel_tool_calls":true'
    assert sent == ('{"model":"' + NEMOTRON + '","messages":[{"role":"user","content":"caf\u00e9 \u65e5\u672c"}],'
                    '"logit_bias":{},"stop":[],"seed":12345678901234567890,"temperature":0.30000000000000004'
                    + kept + ',"chat_template_kwargs":{"enable_thinking":false},"top_p":1}')


@pytest.mark.parametrize("fields,param", [
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"reasoning_format": "xml"}, "reasoning_format"),
    ({"include_reasoning": "yes"}, "include_reasoning"),
    ({"chat_template_kwargs": {"enable_thinking": "no"}}, "chat_template_kwargs"),
    ({"chat_template_kwargs": "off"}, "chat_template_kwargs"),
])
def test_bad_switch_values_are_400_naming_the_field(stack, fields, param):
    r, _ = stack
    resp = r.post("/v1/chat/completions", json={"model": "qwen", "messages": user("hi"), **fields})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param


@pytest.mark.parametrize("model,style", [("qwen", "qwen3"), ("nemotron", "nemotron")])
def test_think_tags_a_backend_left_in_content_reach_the_client_split(fake_backend, router, model, style):
    """The shipped registry (mode: backend) in front of a trtllm-serve started without its
    reasoning parser: the router splits what the parser would have."""
    backend = fake_backend(model=QWEN if model == "qwen" else NEMOTRON, args=["--think-style", style])
    r = router({model: [backend.addr]})
    reasoning, content, _ = collect(r, model, {"messages": user("hi")}, stream=False)
    assert (reasoning, content) == (THOUGHT, ANSWER)
    if style == "qwen3":   # a lone </think> cannot be taken back once streamed: only <think> is
        reasoning, content, _ = collect(r, model, {"messages": user("hi")}, stream=True)
        assert (reasoning, content) == (THOUGHT, ANSWER)
