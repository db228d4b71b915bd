"""A fake `trtllm-serve` for tests and for the no-GPU demo.

Usage:
    python -m tests.fakes.trtllm_serve --port 8001 --model nvidia/Qwen3-30B-A3B-FP4 --load-seconds 3

It behaves like the real server where the router can tell (see ../shared/TRTLLM_FACTS.md):
- refuses connections while "loading" (the port is bound only after --load-seconds);
- GET /health (200, or 503 "LLM is unavailable"), /health_generate (200, or 500 once the
  "executor" died), /version, /v1/models;
- POST /v1/chat/completions, /v1/completions, /v1/responses, streaming and not: role-first
  chunks, `data: [DONE]`, a usage chunk only with stream_options.include_usage;
- request models forbid unknown fields: an extra field is a 400 in trtllm's error shape
  {"object": "error", "message", "type": "BadRequestError", "param", "code": 400};
- echoes the request's `model` back, as the real server does.

Reasoning, as the real models and parsers do it (--think-style, --reasoning-parser):
- qwen3 style: "<think>\n...\n</think>\n\n" + answer; an empty think block after /no_think at
  the end of the last user or system message; no tags with enable_thinking=false;
- nemotron style: the prompt ends inside reasoning, so output is "...\n</think>\n" + answer
  (no opening tag); no reasoning with enable_thinking=false; /no_think is not understood;
- parsers follow tensorrt_llm/llmapi/reasoning_parser.py: qwen3 (opening tag required,
  text before it dropped), deepseek-r1 (starts inside reasoning), nano-v3 (starts inside
  unless enable_thinking is false); streamed deltas carry both content and reasoning_content.
The thinking part streams in 3-character pieces, so tags arrive cut ("<th" | "ink>").

Prompt tokens: whitespace words (role values included) by default; with --tokenizer DIR, the
ChatML-templated prompt (Qwen3's template shape) counted by that tokenizer.json, with trtllm's KV
block reuse imitated: usage.prompt_tokens_details.cached_tokens = the leading full 32-token blocks
an earlier prompt already had (see PromptCounter).
--eval-answers good|bad answers the cases of scripts/eval_cases.yaml with their canned answers.

Fake-only controls (never on the real server), used by tests:
  POST /fake/control  {"health_status": 503, "generate_ok": false, "first_token_delay": 2.0,
                       "token_interval": 0.01, "gate": true, "die_after_events": 3}
  POST /fake/release  {"n": 1}   # with gate on, let n more stream events out
  GET  /fake/requests             # raw bodies (and headers) received on the generation endpoints
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

REASONING = "The user wants a short answer. I will give one."
WORDS = ("The quick brown fox jumps over the lazy dog while the router streams every token "
         "to the client without delay and nothing is ever lost").split()


class _Forbid(BaseModel):
    # trtllm-serve's OpenAIBaseModel: extra="forbid", so unknown fields are a 400.
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Forbid):
    include_usage: Optional[bool] = True
    continuous_usage_stats: Optional[bool] = False


class ChatCompletionRequest(_Forbid):
    # Field names of tensorrt_llm/serve/openai_protocol.py ChatCompletionRequest (1.2 era);
    # notably no `parallel_tool_calls`.
    messages: list[dict[str, Any]]
    model: str
    frequency_penalty: Optional[float] = 0.0
    logit_bias: Optional[dict[str, float]] = None
    logprobs: Optional[bool] = False
    top_logprobs: Optional[int] = 0
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    n: int = 1
    presence_penalty: Optional[float] = 0.0
    response_format: Optional[dict[str, Any]] = None
    seed: Optional[int] = None
    stop: Optional[Any] = None
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Optional[Any] = "none"
    user: Optional[str] = None
    reasoning_effort: Optional[Literal["low", "medium", "high"]] = None
    best_of: Optional[int] = None
    use_beam_search: bool = False
    top_k: Optional[int] = None
    top_p_min: Optional[float] = None
    min_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    length_penalty: float = 1.0
    early_stopping: bool = False
    stop_token_ids: Optional[list[int]] = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    truncate_prompt_tokens: Optional[int] = None
    echo: bool = False
    add_generation_prompt: bool = True
    add_special_tokens: bool = False
    documents: Optional[list[dict[str, str]]] = None
    chat_template: Optional[str] = None
    chat_template_kwargs: Optional[dict[str, Any]] = None
    disaggregated_params: Optional[dict[str, Any]] = None


class CompletionRequest(_Forbid):
    model: str
    prompt: Any
    best_of: Optional[int] = None
    echo: Optional[bool] = False
    frequency_penalty: Optional[float] = 0.0
    logit_bias: Optional[dict[str, float]] = None
    logprobs: Optional[int] = None
    max_tokens: Optional[int] = 16
    n: int = 1
    presence_penalty: Optional[float] = 0.0
    seed: Optional[int] = None
    stop: Optional[Any] = None
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    suffix: Optional[str] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    user: Optional[str] = None
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True
    response_format: Optional[dict[str, Any]] = None


class ResponsesRequest(_Forbid):
    model: str
    input: Any
    instructions: Optional[str] = None
    max_output_tokens: Optional[int] = None
    stream: Optional[bool] = False
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    reasoning: Optional[dict[str, Any]] = None
    store: Optional[bool] = None
    previous_response_id: Optional[str] = None
    text: Optional[dict[str, Any]] = None
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Optional[Any] = None
    user: Optional[str] = None


def soft_switch(messages: list[dict[str, Any]]) -> bool | None:
    """Qwen3's /think and /no_think: the last user message first, then the system message."""
    def text(m: dict[str, Any]) -> str:
        c = m.get("content")
        if isinstance(c, list):
            c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
        return (c or "").rstrip() if isinstance(c, str) else ""

    users = [m for m in messages if m.get("role") == "user"]
    systems = [m for m in messages if m.get("role") in ("system", "developer")]
    for m in users[-1:] + systems[:1]:
        t = text(m)
        if t.endswith("/no_think"):
            return False
        if t.endswith("/think"):
            return True
    return None


def think_prefix(style: str, req: "ChatCompletionRequest") -> str:
    """What the model writes before its answer, given the chat template's switches."""
    enabled = (req.chat_template_kwargs or {}).get("enable_thinking", True) is not False
    if style == "qwen3" and enabled:
        if soft_switch(req.messages) is False:
            return "<think>\n\n</think>\n\n"
        return f"<think>\n{REASONING}\n</think>\n\n"
    if style == "nemotron" and enabled:
        return f"{REASONING}\n</think>\n"
    return ""


class ReasoningParser:
    """trtllm-serve's --reasoning_parser behaviour (qwen3, deepseek-r1, nano-v3), per request."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self, name: str, chat_template_kwargs: dict[str, Any] | None):
        kwargs = chat_template_kwargs or {}
        self.inside = name == "deepseek-r1" or (name == "nano-v3" and kwargs.get("enable_thinking", True) is not False)
        self.buf = ""

    def delta(self, text: str) -> tuple[str, str]:
        self.buf += text
        t = self.buf
        if self.OPEN.startswith(t) or self.CLOSE.startswith(t):
            return "", ""
        reasoning = content = ""
        if not self.inside:
            i = t.find(self.OPEN)
            if i == -1:
                self.buf = ""
                return "", t
            self.inside, t = True, t[i + len(self.OPEN):]
        i = t.find(self.CLOSE)
        if i == -1:
            k = t.rfind("<")
            if k != -1 and self.CLOSE.startswith(t[k:]):
                self.buf, reasoning = t[k:], t[:k]
            else:
                self.buf, reasoning = "", t
            return reasoning, ""
        self.inside, self.buf = False, ""
        return t[:i], t[i + len(self.CLOSE):]

    def finish(self) -> tuple[str, str]:
        rest, self.buf = self.buf, ""
        if not rest or rest in (self.OPEN, self.CLOSE):
            return "", ""
        return (rest, "") if self.inside else ("", rest)

    def whole(self, text: str) -> tuple[str, str]:
        r1, c1 = self.delta(text)
        r2, c2 = self.finish()
        return r1 + r2, c1 + c2


def schema_instance(schema: dict[str, Any]) -> Any:
    """A value valid under a (simple) JSON schema: what guided decoding would force the model to write."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(v) for k, v in props.items()}
    if kind == "array":
        return [schema_instance(schema.get("items", {"type": "string"}))]
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "null": None}[kind]


def guided_text(response_format: dict[str, Any] | None) -> str | None:
    """The JSON text trtllm-serve's guided decoding (xgrammar) makes the model produce, if any."""
    kind = (response_format or {}).get("type")
    if kind == "json_schema":
        return json.dumps(schema_instance(response_format.get("json_schema", {}).get("schema", {})))
    if kind == "json_object":
        return json.dumps({"answer": "example"})
    return None


def error_response(message: str, status: int = 400, err_type: str = "BadRequestError") -> JSONResponse:
    # trtllm's ErrorResponse: flat, not wrapped in "error".
    return JSONResponse({"object": "error", "message": message, "type": err_type, "param": None,
                         "code": status}, status_code=status)


class Behaviour:
    """What the fake does; changed at start by flags and later by POST /fake/control."""

    def __init__(self, args: argparse.Namespace):
        self.health_status = 200
        self.generate_ok = True
        self.first_token_delay = args.first_token_delay
        self.token_interval = args.token_interval
        self.output_tokens = args.output_tokens
        self.think_style = args.think_style
        self.reasoning_parser = args.reasoning_parser
        self.gate = False
        self.die_after_events: int | None = None
        self.released = asyncio.Semaphore(0)
        self.requests: list[dict[str, Any]] = []
        self.prompt_counter = PromptCounter(args.tokenizer) if args.tokenizer else None
        self.eval_answers = load_eval_answers(args.eval_cases, args.eval_answers) if args.eval_answers else {}

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> tuple[int, int | None]:
        if self.prompt_counter is None:
            return count_words(messages), None
        return self.prompt_counter.count(messages)

    def eval_answer(self, messages: list[dict[str, Any]]) -> str | None:
        users = [message_text(m).strip() for m in messages if m.get("role") == "user"]
        return self.eval_answers.get(users[-1]) if users else None


def count_words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(v) for v in value)
    if isinstance(value, dict):
        return sum(count_words(v) for v in value.values())
    return 0


def message_text(m: dict[str, Any]) -> str:
    c = m.get("content")
    if isinstance(c, list):
        c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return c if isinstance(c, str) else ""


class PromptCounter:
    """usage.prompt_tokens as trtllm-serve reports it: len(prompt_token_ids) of the templated prompt
    (tensorrt_llm/serve/postprocess_handlers.py, NVIDIA/TensorRT-LLM 01bf192), here with a ChatML
    template like Qwen3's: <|im_start|>role\ncontent<|im_end|>\n per message, <|im_start|>assistant\n.
    Block reuse as KvCacheConfig.enable_block_reuse: only whole blocks (tokens_per_block, default 32)
    of a prefix seen before are reused; usage.prompt_tokens_details.cached_tokens says how many."""

    OPEN, CLOSE, NL = -1, -2, -3  # special tokens: never merge with text
    BLOCK = 32

    def __init__(self, tokenizer_dir: str):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
        self.seen: set[int] = set()

    def ids(self, messages: list[dict[str, Any]]) -> list[int]:
        out: list[int] = []
        for m in messages:
            out += [self.OPEN, *self.tok.encode(str(m.get("role", "")), add_special_tokens=False).ids, self.NL,
                    *self.tok.encode(message_text(m), add_special_tokens=False).ids, self.CLOSE, self.NL]
        return out + [self.OPEN, *self.tok.encode("assistant", add_special_tokens=False).ids, self.NL]

    def count(self, messages: list[dict[str, Any]]) -> tuple[int, int]:
        """(prompt tokens, cached tokens) for this prompt; remembers its blocks for later prompts."""
        ids = self.ids(messages)
        h, cached, reusing = 0, 0, True
        for i in range(0, len(ids) - len(ids) % self.BLOCK, self.BLOCK):
            h = hash((h, tuple(ids[i:i + self.BLOCK])))
            if reusing and h in self.seen:
                cached += self.BLOCK
            else:
                reusing = False
                self.seen.add(h)
        return len(ids), cached


def load_eval_answers(path: str, which: str) -> dict[str, str]:
    """{user prompt: canned answer} from the eval case file: `good` or `bad` answers."""
    import yaml

    with open(path, encoding="utf-8") as f:
        cases = yaml.safe_load(f)["cases"]
    return {c["prompt"]: c[which] for c in cases if c.get(which) is not None}


def create_app(args: argparse.Namespace) -> FastAPI:
    app = FastAPI()
    b = Behaviour(args)
    app.state.behaviour = b   # for the other engines' fakes (engine_serve.py), which build on this one
    served = args.model
    # vLLM names the parsed reasoning `reasoning` (engine_serve.py sets it); trtllm `reasoning_content`.
    rkey = getattr(args, "reasoning_field", "reasoning_content")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(str(exc))

    @app.get("/health")
    async def health() -> Response:
        if b.health_status != 200:
            return Response("LLM is unavailable", status_code=b.health_status)
        return Response(status_code=200)

    @app.get("/health_generate")
    async def health_generate() -> Response:
        if not b.generate_ok:
            return error_response("Health check failed: executor is not running", 500, "InternalServerError")
        return Response(status_code=200)

    @app.get("/version")
    async def version() -> dict:
        return {"version": args.version}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [
            {"id": served, "object": "model", "created": int(time.time()), "owned_by": "tensorrt_llm"}]}

    @app.post("/fake/control")
    async def control(request: Request) -> dict:
        changes = await request.json()
        for key, value in changes.items():
            if not hasattr(b, key) or key in ("released", "requests"):
                return error_response(f"unknown control '{key}'")
            setattr(b, key, value)
        return {"ok": True}

    @app.post("/fake/release")
    async def release(request: Request) -> dict:
        n = (await request.json()).get("n", 1)
        for _ in range(n):
            b.released.release()
        return {"ok": True}

    @app.get("/fake/requests")
    async def received() -> list:
        return b.requests

    async def record(request: Request) -> None:
        # engine_serve.py keeps the body as sent before it drops the fields its engine ignores.
        raw = request.scope.get("fake.raw_body") or await request.body()
        b.requests.append({"path": request.url.path, "body": raw.decode("utf-8"),
                           "headers": dict(request.headers)})

    def tokens_for(max_tokens: int | None) -> tuple[list[str], str]:
        n = b.output_tokens if max_tokens is None else min(max_tokens, b.output_tokens)
        words = [WORDS[i % len(WORDS)] for i in range(n)]
        toks = [w if i == 0 else " " + w for i, w in enumerate(words)]
        return toks, "length" if max_tokens is not None and max_tokens < b.output_tokens else "stop"

    async def pace(i: int) -> None:
        if b.gate:
            await b.released.acquire()
        elif i == 0 and b.first_token_delay:
            await asyncio.sleep(b.first_token_delay)
        elif i > 0 and b.token_interval:
            await asyncio.sleep(b.token_interval)

    def sse(obj: Any) -> str:
        # Compact, as trtllm-serve writes each chunk (model_dump_json in
        # tensorrt_llm/serve/postprocess_handlers.py), the shape the router's pass-through is fast for.
        return "data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n"

    async def stream_events(events: list[str]):
        for i, event in enumerate(events):
            if b.die_after_events is not None and i >= b.die_after_events:
                raise ConnectionAbortedError("fake executor died mid-stream")
            await pace(i)
            yield event

    def usage(prompt: int, completion: int, cached: int | None = None) -> dict:
        out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if cached is not None:
            out["prompt_tokens_details"] = {"cached_tokens": cached}
        return out

    @app.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest, request: Request) -> Response:
        await record(request)
        if not b.generate_ok:
            return error_response("executor is not running", 500, "InternalServerError")
        answer, finish = tokens_for(req.max_completion_tokens or req.max_tokens)
        canned = b.eval_answer(req.messages)
        if canned is not None:
            answer, finish = [canned[i:i + 3] for i in range(0, len(canned), 3)], "stop"
        guided = guided_text(req.response_format)
        if guided is not None:
            answer, finish = [guided[i:i + 4] for i in range(0, len(guided), 4)], "stop"
        prefix = think_prefix(b.think_style, req)
        toks = [prefix[i:i + 3] for i in range(0, len(prefix), 3)] + answer
        parsing = b.reasoning_parser != "none"
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        prompt_tokens, cached = b.prompt_tokens(req.messages)
        if not req.stream:
            if req.stream_options is not None:
                return error_response("Stream options can only be defined when `stream=True`.")
            text, reasoning = "".join(toks), None
            if parsing:
                reasoning, text = ReasoningParser(b.reasoning_parser, req.chat_template_kwargs).whole(text)
            choices = [{"index": i, "message": {"role": "assistant", "content": text,
                                                rkey: reasoning, "tool_calls": []},
                        "logprobs": None, "finish_reason": finish, "stop_reason": None}
                       for i in range(req.n)]
            return JSONResponse({"id": rid, "object": "chat.completion", "created": created, "model": req.model,
                                 "choices": choices, "usage": usage(prompt_tokens, len(toks) * req.n, cached)})

        def chunk(choices: list, **extra: Any) -> str:
            return sse({"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                        "choices": choices, **extra})

        parsers = [ReasoningParser(b.reasoning_parser, req.chat_template_kwargs) for _ in range(req.n)]

        def delta(i: int, piece: str, final: bool = False) -> dict[str, Any]:
            if not parsing:
                return {"content": piece}
            r, c = parsers[i].delta(piece)
            if final:
                r2, c2 = parsers[i].finish()
                r, c = r + r2, c + c2
            return {"content": c, rkey: r}

        events = [chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                          "finish_reason": None} for i in range(req.n)])]
        for tok in toks:
            events.append(chunk([{"index": i, "delta": delta(i, tok), "logprobs": None, "finish_reason": None}
                                 for i in range(req.n)]))
        events.append(chunk([{"index": i, "delta": delta(i, "", final=True), "logprobs": None,
                              "finish_reason": finish, "stop_reason": None} for i in range(req.n)]))
        if req.stream_options and req.stream_options.include_usage:
            events.append(chunk([], usage=usage(prompt_tokens, len(toks) * req.n, cached)))
        events.append("data: [DONE]\n\n")
        return StreamingResponse(stream_events(events), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request) -> Response:
        await record(request)
        if not b.generate_ok:
            return error_response("executor is not running", 500, "InternalServerError")
        toks, finish = tokens_for(req.max_tokens)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        prompt_tokens = count_words(req.prompt)
        if not req.stream:
            choices = [{"index": i, "text": "".join(toks), "logprobs": None, "finish_reason": finish}
                       for i in range(req.n)]
            return JSONResponse({"id": rid, "object": "text_completion", "created": created, "model": req.model,
                                 "choices": choices, "usage": usage(prompt_tokens, len(toks) * req.n)})

        def chunk(choices: list, **extra: Any) -> str:
            return sse({"id": rid, "object": "text_completion", "created": created, "model": req.model,
                        "choices": choices, **extra})

        events = [chunk([{"index": i, "text": tok, "logprobs": None, "finish_reason": None} for i in range(req.n)])
                  for tok in toks]
        events.append(chunk([{"index": i, "text": "", "logprobs": None, "finish_reason": finish}
                             for i in range(req.n)]))
        if req.stream_options and req.stream_options.include_usage:
            events.append(chunk([], usage=usage(prompt_tokens, len(toks) * req.n)))
        events.append("data: [DONE]\n\n")
        return StreamingResponse(stream_events(events), media_type="text/event-stream")

    @app.post("/v1/responses")
    async def responses(req: ResponsesRequest, request: Request) -> Response:
        await record(request)
        toks, _ = tokens_for(req.max_output_tokens)
        rid, created = f"resp_{uuid.uuid4().hex}", int(time.time())
        text = "".join(toks)
        in_tok = count_words(req.input)
        msg_id = f"msg_{uuid.uuid4().hex}"
        final = {"id": rid, "object": "response", "created_at": created, "model": req.model, "status": "completed",
                 "output": [{"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
                             "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                 "usage": {"input_tokens": in_tok, "output_tokens": len(toks), "total_tokens": in_tok + len(toks)}}
        if not req.stream:
            return JSONResponse(final)
        events = [f"event: response.created\ndata: {json.dumps({'type': 'response.created', 'response': {**final, 'status': 'in_progress', 'output': []}})}\n\n"]
        for tok in toks:
            delta = {"type": "response.output_text.delta", "item_id": msg_id, "output_index": 0,
                     "content_index": 0, "delta": tok}
            events.append(f"event: response.output_text.delta\ndata: {json.dumps(delta)}\n\n")
        events.append(f"event: response.completed\ndata: {json.dumps({'type': 'response.completed', 'response': final})}\n\n")
        return StreamingResponse(stream_events(events), media_type="text/event-stream")

    return app


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--model", default="fake-model", help="id reported by /v1/models (default: fake-model)")
    parser.add_argument("--load-seconds", type=float, default=0.0,
                        help="refuse connections this long before serving, like weight loading (default: 0)")
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds (default: 0)")
    parser.add_argument("--token-interval", type=float, default=0.0, help="seconds between tokens (default: 0)")
    parser.add_argument("--output-tokens", type=int, default=12, help="tokens per answer (default: 12)")
    parser.add_argument("--version", default="1.2.0", help="reported by /version (default: 1.2.0)")
    parser.add_argument("--think-style", choices=["none", "qwen3", "nemotron"], default="none",
                        help="how the fake model writes its reasoning (default: none)")
    parser.add_argument("--reasoning-parser", choices=["none", "qwen3", "deepseek-r1", "nano-v3"], default="none",
                        help="trtllm-serve's --reasoning_parser to imitate (default: none)")
    parser.add_argument("--tokenizer", default=None,
                        help="directory with a tokenizer.json: count chat prompt tokens with it, ChatML-templated, "
                             "and imitate KV block reuse (default: whitespace words)")
    parser.add_argument("--eval-answers", choices=["good", "bad"], default=None,
                        help="answer eval cases (by their prompt) with their canned good or bad answer (default: off)")
    parser.add_argument("--eval-cases", default=str(Path(__file__).resolve().parents[2] / "scripts" / "eval_cases.yaml"),
                        help="the eval case file for --eval-answers (default: scripts/eval_cases.yaml)")


def serve(app, args: argparse.Namespace) -> int:
    """Run `app` on --host/--port until stopped (also used by engine_serve.py)."""
    import uvicorn

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=1)
    uvicorn.Server(config).run()
    return 0


def main(args: argparse.Namespace) -> int:
    if args.load_seconds:
        time.sleep(args.load_seconds)
    return serve(create_app(args), args)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(p)
    sys.exit(main(p.parse_args()))
