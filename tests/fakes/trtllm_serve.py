"""A fake `trtllm-serve` for tests and for the no-GPU demo.

Usage:
    python -m tests.fakes.trtllm_serve --port 8001 --model nvidia/Qwen3-30B-A3B-FP4 --load-seconds 3

It behaves like the real server where the router can tell (see docs/trtllm.md):
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

Tool calls (--tool-parser qwen3 | qwen3_coder), as tensorrt_llm/serve/tool_parser/ parses them
(qwen3_tool_parser.py: `<tool_call>\n{json}\n</tool_call>`, arguments streamed as pieces of
json.dumps; qwen3_coder_parser.py: `<function=..><parameter=..>` XML, arguments streamed as
`{"k": v`, `, "k2": v2`, `}`) and postprocess_handlers.chat_stream_post_processor sends them:
with `tools` and tool_choice other than "none", and a last message that is not a tool result, the
model reasons first, then calls the named (or first) tool with schema-valid arguments; the
first delta of a call carries `id` ("chatcmpl-tool-...") and the name with empty arguments,
later ones only argument text; finish_reason "tool_calls". After a tool result it answers text.
`stop` strings cut the answer and are reported in the choice's `stop_reason`.

/v1/responses keeps state as tensorrt_llm/serve/openai_server.py does: responses are stored
(unless store=false), GET / DELETE /v1/responses/{id}, previous_response_id continues a stored
one; an unknown id is a 404 "Response with id '...' not found.", one not starting with
"resp_" a 400.

Fake-only controls (never on the real server), used by tests:
  POST /fake/control  {"health_status": 503, "generate_ok": false, "first_token_delay": 2.0,
                       "token_interval": 0.01, "gate": true, "die_after_events": 3}
  POST /fake/release  {"n": 1}   # with gate on, let n more stream events (or non-streamed answers) out
  GET  /fake/requests             # raw bodies and headers received on the generation endpoints, and
                                  # "disconnected": whether the client went before the answer ended
Client disconnects are noticed as trtllm-serve notices them: a task per request polls
`raw_request.is_disconnected()` (OpenAIServer.await_disconnected in tensorrt_llm/serve/openai_server.py,
which then aborts the generation; it polls every 1 s, the fake every 0.05 s).
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
    store: Optional[bool] = True
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
    return think_prefix_for(style, enabled, req.messages)


def think_prefix_for(style: str, enabled: bool, messages: list[dict[str, Any]]) -> str:
    if style == "qwen3" and enabled:
        if soft_switch(messages) is False:
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


def tool_call_for(req: "ChatCompletionRequest") -> tuple[str, dict[str, Any]] | None:
    """The call the fake model makes (name, arguments), or None when it answers in text."""
    if not req.tools or req.tool_choice == "none" or req.messages[-1:] == [] or req.messages[-1].get("role") == "tool":
        return None
    functions = [t.get("function") or {} for t in req.tools]
    if isinstance(req.tool_choice, dict):
        named = (req.tool_choice.get("function") or {}).get("name")
        functions = [f for f in functions if f.get("name") == named] or functions
    fn = functions[0]
    return fn.get("name", ""), schema_instance(fn.get("parameters") or {"type": "object"})


def tool_markup(parser: str, name: str, args: dict[str, Any]) -> str:
    """What the model writes for a call, in the format its --tool_parser reads."""
    if parser == "qwen3":
        return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "\n</tool_call>"
    params = "".join(f"<parameter={k}>\n{v if isinstance(v, str) else json.dumps(v)}\n</parameter>\n"
                     for k, v in args.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def tool_argument_deltas(parser: str, args: dict[str, Any]) -> list[str]:
    """The argument pieces a streamed call sends after its name."""
    if parser == "qwen3":
        # base_tool_parser.py streams prefixes of json.dumps(arguments) (ASCII-escaped, ", " / ": ").
        text = json.dumps(args)
        return [text[i:i + 8] for i in range(0, len(text), 8)]
    # qwen3_coder_parser.py: one piece per complete <parameter>, the closing brace at </tool_call>.
    items = [f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}" for k, v in args.items()]
    if not items:
        return []
    return ["{" + items[0]] + [", " + item for item in items[1:]] + ["}"]


def cut_at_stop(toks: list[str], stop: Any) -> tuple[list[str], str | None]:
    """The answer up to the first stop string (not included), and the string matched."""
    stops = [stop] if isinstance(stop, str) else [x for x in (stop or []) if isinstance(x, str) and x]
    text = "".join(toks)
    found = min(((text.find(x), x) for x in stops if x in text), default=None)
    if found is None:
        return toks, None
    end, kept, pos = found[0], [], 0
    for tok in toks:
        if pos >= end:
            break
        kept.append(tok[:end - pos])
        pos += len(tok)
    return kept, found[1]


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
        self.tool_parser = args.tool_parser
        self.responses: dict[str, dict[str, Any]] = {}   # trtllm's ConversationHistoryStore
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
            if key == "gate":
                # A fresh gate: no releases left over from before; whoever waited at the old one goes.
                old, b.released = b.released, asyncio.Semaphore(0)
                for _ in range(1000):
                    old.release()
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

    async def record(request: Request) -> dict[str, Any]:
        # engine_serve.py keeps the body as sent before it drops the fields its engine ignores.
        raw = request.scope.get("fake.raw_body") or await request.body()
        rec = {"path": request.url.path, "body": raw.decode("utf-8"),
               "headers": dict(request.headers), "disconnected": False, "done": False, "events_sent": 0}
        b.requests.append(rec)
        asyncio.create_task(watch_disconnect(request, rec))
        return rec

    async def watch_disconnect(request: Request, rec: dict[str, Any]) -> None:
        while not rec["done"]:
            if await request.is_disconnected():
                rec["disconnected"], rec["disconnected_at"] = True, time.time()
                return
            await asyncio.sleep(0.05)

    async def reply(rec: dict[str, Any], response: Response, gated: bool = True) -> Response:
        """A non-streamed answer: with gate on, held until one release (the whole generation)."""
        if gated and b.gate:
            await b.released.acquire()
        rec["done"] = True
        return response

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

    async def stream_events(events: list[str], rec: dict[str, Any]):
        for i, event in enumerate(events):
            if b.die_after_events is not None and i >= b.die_after_events:
                raise ConnectionAbortedError("fake executor died mid-stream")
            await pace(i)
            yield event
            rec["events_sent"] = i + 1
        rec["done"] = True

    def usage(prompt: int, completion: int, cached: int | None = None) -> dict:
        out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if cached is not None:
            out["prompt_tokens_details"] = {"cached_tokens": cached}
        return out

    @app.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest, request: Request) -> Response:
        rec = await record(request)
        if not b.generate_ok:
            return await reply(rec, error_response("executor is not running", 500, "InternalServerError"), False)
        answer, finish = tokens_for(req.max_completion_tokens or req.max_tokens)
        canned = b.eval_answer(req.messages)
        if canned is not None:
            answer, finish = [canned[i:i + 3] for i in range(0, len(canned), 3)], "stop"
        guided = guided_text(req.response_format)
        if guided is not None:
            answer, finish = [guided[i:i + 4] for i in range(0, len(guided), 4)], "stop"
        matched = None
        if guided is None:
            answer, matched = cut_at_stop(answer, req.stop)
            if matched is not None:
                finish = "stop"
        call = tool_call_for(req) if b.tool_parser != "none" else None
        call_id = f"chatcmpl-tool-{uuid.uuid4().hex}"
        if call is not None:
            answer, finish = [], "tool_calls"
        prefix = think_prefix(b.think_style, req)
        toks = [prefix[i:i + 3] for i in range(0, len(prefix), 3)] + answer
        parsing = b.reasoning_parser != "none"
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        prompt_tokens, cached = b.prompt_tokens(req.messages)
        if not req.stream:
            if req.stream_options is not None:
                return await reply(rec, error_response("Stream options can only be defined when `stream=True`."), False)
            text, reasoning = "".join(toks), None
            if parsing:
                reasoning, text = ReasoningParser(b.reasoning_parser, req.chat_template_kwargs).whole(text)
            tool_calls = []
            if call is not None:
                # detect_and_parse: qwen3 strips the text before the call, qwen3_coder keeps it.
                text = text.strip() if b.tool_parser == "qwen3" else text
                tool_calls = [{"id": call_id, "type": "function", "function": {
                    "name": call[0], "arguments": json.dumps(call[1], ensure_ascii=False)}}]
            n_out = len(toks) + (len(tool_argument_deltas(b.tool_parser, call[1])) + 1 if call else 0)
            choices = [{"index": i, "message": {"role": "assistant", "content": text,
                                                rkey: reasoning, "tool_calls": tool_calls},
                        "logprobs": None, "finish_reason": finish, "stop_reason": matched}
                       for i in range(req.n)]
            return await reply(rec, JSONResponse({
                "id": rid, "object": "chat.completion", "created": created, "model": req.model,
                "choices": choices, "usage": usage(prompt_tokens, n_out * req.n, cached)}))

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
        if call is not None:
            # DeltaToolCall(id, index, function) dumped with exclude_none: no "type" key.
            empty = {"content": "", rkey: ""} if parsing else {"content": ""}
            pieces = [{"id": call_id, "index": 0, "function": {"name": call[0], "arguments": ""}}]
            pieces += [{"index": 0, "function": {"arguments": a}} for a in tool_argument_deltas(b.tool_parser, call[1])]
            for piece in pieces:
                events.append(chunk([{"index": i, "delta": {**empty, "tool_calls": [piece]}, "logprobs": None,
                                      "finish_reason": None} for i in range(req.n)]))
            n_out = len(toks) + len(pieces)
        else:
            n_out = len(toks)
        events.append(chunk([{"index": i, "delta": delta(i, "", final=True), "logprobs": None,
                              "finish_reason": finish, "stop_reason": matched} for i in range(req.n)]))
        if req.stream_options and req.stream_options.include_usage:
            events.append(chunk([], usage=usage(prompt_tokens, n_out * req.n, cached)))
        events.append("data: [DONE]\n\n")
        return StreamingResponse(stream_events(events, rec), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request) -> Response:
        rec = await record(request)
        if not b.generate_ok:
            return await reply(rec, error_response("executor is not running", 500, "InternalServerError"), False)
        toks, finish = tokens_for(req.max_tokens)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        prompt_tokens = count_words(req.prompt)
        if not req.stream:
            choices = [{"index": i, "text": "".join(toks), "logprobs": None, "finish_reason": finish}
                       for i in range(req.n)]
            return await reply(rec, JSONResponse({
                "id": rid, "object": "text_completion", "created": created, "model": req.model,
                "choices": choices, "usage": usage(prompt_tokens, len(toks) * req.n)}))

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
        return StreamingResponse(stream_events(events, rec), media_type="text/event-stream")

    def response_id_error(response_id: str) -> JSONResponse | None:
        # openai_server.py _create_invalid_response_id_error / _create_response_id_not_found_error
        if not response_id.startswith("resp_"):
            return error_response(f"Invalid 'response_id': '{response_id}'. Expected an ID that begins with 'resp'.",
                                  400, "InvalidRequestError")
        if response_id not in b.responses:
            return error_response(f"Response with id '{response_id}' not found.", 404, "InvalidRequestError")
        return None

    @app.get("/v1/responses/{response_id}")
    async def get_response(response_id: str) -> Response:
        return response_id_error(response_id) or JSONResponse(b.responses[response_id]["response"])

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str) -> Response:
        if (err := response_id_error(response_id)) is not None:
            return err
        del b.responses[response_id]
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})

    @app.post("/v1/responses")
    async def responses(req: ResponsesRequest, request: Request) -> Response:
        rec = await record(request)
        history: list[Any] = []
        if req.previous_response_id is not None:
            if (err := response_id_error(req.previous_response_id)) is not None:
                return await reply(rec, err, False)
            history = b.responses[req.previous_response_id]["history"]
        toks, _ = tokens_for(req.max_output_tokens)
        rid, created = f"resp_{uuid.uuid4().hex}", int(time.time())
        # responses_utils.py _create_input_messages: instructions as the system message, then the
        # input; the chat template applied without chat_template_kwargs (thinking at its default,
        # switched only by the template's /think and /no_think text).
        messages = ([{"role": "system", "content": req.instructions}] if req.instructions else []) + (
            [{"role": "user", "content": req.input}] if isinstance(req.input, str)
            else [i for i in req.input if isinstance(i, dict) and "role" in i])
        raw = think_prefix_for(b.think_style, True, messages) + "".join(toks)
        reasoning, text = "", raw
        if b.reasoning_parser != "none":
            reasoning, text = ReasoningParser(b.reasoning_parser, None).whole(raw)
        # The stored conversation is part of the prompt: input tokens grow along a chain.
        in_tok = count_words(history) + count_words(req.input) + count_words(req.instructions or "")
        msg_id, rs_id = f"msg_{uuid.uuid4().hex}", f"rs_{uuid.uuid4().hex}"
        n_out = len(toks) + (len(REASONING.split()) if reasoning.strip() else 0)
        # _create_output_content: the message item first, then the reasoning item (when any).
        output = [{"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text.strip(), "annotations": [], "logprobs": None}]}]
        if reasoning.strip():
            output.append({"type": "reasoning", "id": rs_id, "summary": [], "status": None,
                           "content": [{"type": "reasoning_text", "text": reasoning.strip()}]})
        final = {"id": rid, "object": "response", "created_at": created, "model": req.model, "status": "completed",
                 "previous_response_id": req.previous_response_id, "output": output,
                 "usage": {"input_tokens": in_tok, "output_tokens": n_out, "total_tokens": in_tok + n_out}}
        if req.store is not False:
            b.responses[rid] = {"response": final, "history": [*history, req.input, text]}
        if not req.stream:
            return await reply(rec, JSONResponse(final))

        # _generate_streaming_event (non-harmony): the reasoning item streams first, is done when
        # the text begins, then the message item. Simplified: the whole reasoning is one delta.
        def event(obj: dict[str, Any]) -> str:
            return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n"

        events = [event({"type": "response.created", "response": {**final, "status": "in_progress", "output": []}})]
        index = 0
        if reasoning.strip():
            item = {"type": "reasoning", "id": rs_id, "summary": [], "status": "in_progress"}
            events.append(event({"type": "response.output_item.added", "output_index": 0, "item": item}))
            events.append(event({"type": "response.reasoning_text.delta", "item_id": rs_id, "output_index": 0,
                                 "content_index": 0, "delta": reasoning}))
            events.append(event({"type": "response.reasoning_text.done", "item_id": rs_id, "output_index": 0,
                                 "content_index": 0, "text": reasoning}))
            events.append(event({"type": "response.output_item.done", "output_index": 0,
                                 "item": {**item, "status": "completed", "content": output[1]["content"]}}))
            index = 1
        events.append(event({"type": "response.output_item.added", "output_index": index, "item": {
            "type": "message", "id": msg_id, "role": "assistant", "content": [], "status": "in_progress"}}))
        for tok in toks:
            events.append(event({"type": "response.output_text.delta", "item_id": msg_id, "output_index": index,
                                 "content_index": 0, "delta": tok}))
        events.append(event({"type": "response.output_text.done", "item_id": msg_id, "output_index": index,
                             "content_index": 0, "text": text}))
        events.append(event({"type": "response.output_item.done", "output_index": index, "item": output[0]}))
        events.append(event({"type": "response.completed", "response": final}))
        return StreamingResponse(stream_events(events, rec), media_type="text/event-stream")

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
    parser.add_argument("--tool-parser", choices=["none", "qwen3", "qwen3_coder"], default="none",
                        help="trtllm-serve's --tool_parser to imitate (default: none)")


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
