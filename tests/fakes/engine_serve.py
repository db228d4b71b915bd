"""Fakes of `vllm serve` and `llama-server`, for tests and the demo, built on the trtllm-serve fake.

Usage:
    python -m tests.fakes.engine_serve --engine vllm --port 8001 --model nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4 \\
        --think-style nemotron --reasoning-parser nano_v3
    python -m tests.fakes.engine_serve --engine llamacpp --port 8002 --model Qwen/Qwen3-8B-GGUF \\
        --think-style qwen3 --reasoning-format deepseek --load-seconds 3
    python -m tests.fakes.engine_serve --engine llamacpp --port 8003 --model Qwen/Qwen3-Embedding-0.6B-GGUF --embeddings

Generation, think styles, streaming and the /fake/* controls are those of tests/fakes/trtllm_serve.py.
What differs, as the real servers do it (docs/engines.md names each source file and version):

vLLM (vllm-project/vllm, vllm/entrypoints/...):
- the port refuses connections while the engine loads (the API server starts after it);
- GET /health: 200 with an empty body, 503 once the engine is dead (serve/instrumentator/health.py);
  there is no /health_generate (404);
- unknown request fields are ignored (serve/engine/protocol.py OpenAIBaseModel, extra="allow");
  stream_options without stream=True is a 400;
- the parsed reasoning is `reasoning` (reasoning_content was removed: vllm-project/vllm#33402);
- errors are {"error": {"message", "type", "param", "code"}} (exception_handling/error_response.py);
- GET /metrics: Prometheus text, vllm:* names; /v1/models owned_by "vllm".

llama.cpp (ggml-org/llama.cpp, tools/server/README.md):
- HTTP is up at once; while the model loads every endpoint answers 503
  {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, then
  GET /health is 200 {"status": "ok"};
- unknown request fields are ignored;
- --reasoning-format deepseek (and auto): `reasoning_content`; none: think tags left in content;
- errors are {"error": {"code", "message", "type"}};
- GET /metrics only with --metrics (llamacpp:* names), /v1/embeddings only with --embeddings,
  /v1/rerank only with --reranking (else 501).

Both: POST /v1/embeddings in the OpenAI shape (encoding_format float or base64; the openai SDK asks
for base64) with deterministic unit vectors per input, and POST /v1/rerank.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import struct
import sys
import time
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from tests.fakes import trtllm_serve as trt

# Request models of the trtllm fake, whose fields the other engines know; they ignore the rest.
KNOWN_FIELDS = {
    "/v1/chat/completions": set(trt.ChatCompletionRequest.model_fields),
    "/v1/completions": set(trt.CompletionRequest.model_fields),
    "/v1/responses": set(trt.ResponsesRequest.model_fields),
}
# vLLM's --reasoning-parser names -> the trtllm fake's parser with the same behaviour
# (vllm/reasoning/: qwen3_reasoning_parser.py, deepseek_r1_reasoning_parser.py; nano_v3 is
# NVIDIA's plugin from the checkpoint repo, nemotron_v3 vLLM's own: both start inside reasoning
# unless enable_thinking is false).
VLLM_PARSERS = {"none": "none", "qwen3": "qwen3", "deepseek_r1": "deepseek-r1", "nano_v3": "nano-v3",
                "nemotron_v3": "nano-v3"}
LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}


def error_body(engine: str, message: str, status: int, etype: str | None = None, param: Any = None) -> dict:
    if engine == "vllm":
        return {"error": {"message": message, "type": etype or "BadRequestError", "param": param, "code": status}}
    kind = etype or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"code": status, "message": message, "type": kind}}


def embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector per text: equal texts embed equally, others differ."""
    raw = hashlib.sha256(text.encode("utf-8")).digest()
    while len(raw) < dim:
        raw += hashlib.sha256(raw).digest()
    vec = [(b - 127.5) / 127.5 for b in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def embedding_inputs(value: Any) -> list[str] | None:
    """OpenAI's `input`: a string, a list of strings, a token list, or a list of token lists."""
    if isinstance(value, str):
        return [value] if value else None
    if isinstance(value, list) and value:
        if all(isinstance(v, str) and v for v in value):
            return value
        if all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]
        if all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value):
            return [" ".join(map(str, v)) for v in value]
    return None


class EngineShim:
    """ASGI wrapper that turns the trtllm fake into the engine's server, as listed above."""

    def __init__(self, app, args: argparse.Namespace):
        self.app, self.args, self.engine = app, args, args.engine
        self.b = app.state.behaviour
        # llama-server listens while it loads; vLLM binds only after (main() sleeps first).
        self.loaded_at = time.monotonic() + (args.load_seconds if args.engine == "llamacpp" else 0.0)
        self.counts = {"prompt": 0, "generated": 0, "requests": 0}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith("/fake/"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.engine == "llamacpp" and time.monotonic() < self.loaded_at:
            return await JSONResponse(LOADING, status_code=503)(scope, receive, send)
        own = {"/health": self.health, "/health_generate": self.no_route, "/v1/models": self.models,
               "/metrics": self.metrics, "/v1/embeddings": self.embeddings, "/v1/rerank": self.rerank}.get(path)
        if own is not None:
            body = await read_body(receive) if scope["method"] == "POST" else b""
            return await (await own(body))(scope, receive, send)
        if scope["method"] == "POST" and path in KNOWN_FIELDS:
            raw = await read_body(receive)
            scope["fake.raw_body"] = raw
            if self.engine == "llamacpp":   # llama-server parses the body whatever its Content-Type
                scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + \
                    [(b"content-type", b"application/json")]
            body = self.ignore_unknown(raw, KNOWN_FIELDS[path])
            self.counts["requests"] += 1
            return await self.app(scope, replay(body), self.reshape_errors(send))
        return await self.app(scope, receive, self.reshape_errors(send))

    @staticmethod
    def ignore_unknown(raw: bytes, known: set[str]) -> bytes:
        try:
            data = json.loads(raw)
        except ValueError:
            return raw
        if not isinstance(data, dict):
            return raw
        return json.dumps({k: v for k, v in data.items() if k in known}).encode()

    def reshape_errors(self, send):
        """The trtllm fake answers errors flat ({"object": "error", ...}); these engines nest them."""
        held: dict[str, Any] = {}

        async def wrapped(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"], held["body"] = message, b""
                return
            if "start" in held and message["type"] == "http.response.body":
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                start = held.pop("start")
                try:
                    flat = json.loads(held["body"])
                except ValueError:
                    flat = {"message": held["body"].decode("utf-8", "replace")}
                if "error" not in flat:
                    flat = error_body(self.engine, str(flat.get("message") or flat.get("detail")), start["status"],
                                      flat.get("type") if self.engine == "vllm" else None, flat.get("param"))
                body = json.dumps(flat).encode()
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        return wrapped

    def error(self, message: str, status: int = 400, etype: str | None = None, param: Any = None) -> Response:
        return JSONResponse(error_body(self.engine, message, status, etype, param), status_code=status)

    async def no_route(self, _body: bytes) -> Response:
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    async def health(self, _body: bytes) -> Response:
        if self.engine == "vllm":
            return Response(status_code=200 if self.b.health_status == 200 else 503)
        if self.b.health_status != 200:
            return JSONResponse(LOADING, status_code=503)
        return JSONResponse({"status": "ok"})

    async def models(self, _body: bytes) -> Response:
        card = {"id": self.args.model, "object": "model", "created": int(time.time()),
                "owned_by": "vllm" if self.engine == "vllm" else "llamacpp"}
        if self.engine == "vllm":
            card.update(root=self.args.model, parent=None, max_model_len=self.args.max_model_len, permission=[])
        return JSONResponse({"object": "list", "data": [card]})

    async def metrics(self, _body: bytes) -> Response:
        if self.engine == "llamacpp" and not self.args.metrics:
            return self.error("This server does not support metrics endpoint. Start it with `--metrics`",
                              501, "not_supported_error")
        n = self.counts["requests"]
        if self.engine == "vllm":
            labels = f'{{engine="0",model_name="{self.args.model}"}}'
            lines = ["# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{labels} 0.0",
                     "# TYPE vllm:request_success_total counter", f"vllm:request_success_total{labels} {n}.0",
                     "# TYPE vllm:time_to_first_token_seconds histogram",
                     f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",model_name="{self.args.model}"}} {n}.0',
                     f"vllm:time_to_first_token_seconds_count{labels} {n}.0",
                     f"vllm:time_to_first_token_seconds_sum{labels} 0.0"]
        else:
            lines = ["# TYPE llamacpp:requests_processing gauge", "llamacpp:requests_processing 0",
                     "# TYPE llamacpp:prompt_tokens_total counter", f"llamacpp:prompt_tokens_total {self.counts['prompt']}",
                     "# TYPE llamacpp:tokens_predicted_total counter", f"llamacpp:tokens_predicted_total {n}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    def record(self, path: str, body: bytes) -> None:
        self.b.requests.append({"path": path, "body": body.decode("utf-8")})

    def open_request(self, path: str, body: bytes, served: bool, flag: str, api: str) -> tuple[Any, Response | None]:
        """Record the request; the decoded body, or the engine's error when it does not serve `path`."""
        self.record(path, body)
        if not served:
            if self.engine == "llamacpp":
                return None, self.error(f"This server does not support {flag[2:]}. Start it with `{flag}`",
                                        501, "not_supported_error")
            return None, self.error(f"The model does not support {api} API", 400)
        try:
            return json.loads(body), None
        except ValueError as err:
            return None, self.error(f"Invalid JSON: {err}", 400)

    async def embeddings(self, body: bytes) -> Response:
        req, err = self.open_request("/v1/embeddings", body, self.args.embeddings, "--embeddings", "Embeddings")
        if err is not None:
            return err
        texts = embedding_inputs(req.get("input")) if isinstance(req, dict) else None
        if texts is None:
            return self.error("'input' must be a non-empty string, list of strings or list of token lists", 400,
                              param="input")
        fmt = req.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            return self.error(f"Invalid encoding_format '{fmt}': use float or base64", 400, param="encoding_format")
        data = []
        for i, text in enumerate(texts):
            vec = embedding(text, self.args.dim)
            if fmt == "base64":   # little-endian float32, as OpenAI and both engines send it
                vec = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = sum(len(t.split()) for t in texts)
        self.counts["prompt"] += tokens
        self.counts["requests"] += 1
        out = {"object": "list", "data": data, "model": req.get("model") or self.args.model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        if self.engine == "vllm":
            out.update(id=f"embd-{hashlib.md5(body).hexdigest()}", created=int(time.time()))
        return JSONResponse(out)

    async def rerank(self, body: bytes) -> Response:
        req, err = self.open_request("/v1/rerank", body, self.args.reranking, "--reranking", "Rerank (Score)")
        if err is not None:
            return err
        if not isinstance(req, dict):
            return self.error("The request body must be a JSON object", 400)
        query, docs = req.get("query"), req.get("documents")
        if not isinstance(query, str) or not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            return self.error("'query' must be a string and 'documents' a list of strings", 400)
        qv = embedding(query, self.args.dim)
        results = [{"index": i, "relevance_score": sum(a * b for a, b in zip(qv, embedding(d, self.args.dim)))}
                   for i, d in enumerate(docs)]
        if self.engine == "vllm":
            for r in results:
                r["document"] = {"text": docs[r["index"]]}
        results.sort(key=lambda r: -r["relevance_score"])
        top_n = req.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            results = results[:top_n]
        tokens = len(query.split()) + sum(len(d.split()) for d in docs)
        return JSONResponse({"model": req.get("model") or self.args.model, "object": "list", "results": results,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def read_body(receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def inner_parser(args: argparse.Namespace) -> str:
    if args.engine == "vllm":
        return VLLM_PARSERS[args.reasoning_parser]
    if args.reasoning_format == "none":
        return "none"
    # llama.cpp's deepseek format: its chat parser knows from the template whether the prompt
    # leaves the model inside reasoning (Nemotron) or expects an opening tag (Qwen3).
    return "nano-v3" if args.think_style == "nemotron" else "qwen3"


def create_app(args: argparse.Namespace) -> EngineShim:
    inner = argparse.Namespace(**{**vars(args), "reasoning_parser": inner_parser(args),
                                  "reasoning_field": "reasoning" if args.engine == "vllm" else "reasoning_content"})
    return EngineShim(trt.create_app(inner), args)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    trt.add_cli_args(parser)
    for action in parser._actions:   # the trtllm fake's --reasoning-parser: vLLM's names here
        if action.dest == "reasoning_parser":
            action.choices, action.help = sorted(VLLM_PARSERS), "vllm --reasoning-parser to imitate (default: none)"
    parser.add_argument("--engine", choices=["vllm", "llamacpp"], required=True, help="which server to imitate")
    parser.add_argument("--reasoning-format", choices=["none", "deepseek", "deepseek-legacy", "auto"], default="none",
                        help="llama-server --reasoning-format to imitate (default: none)")
    parser.add_argument("--embeddings", action="store_true",
                        help="serve /v1/embeddings (llama-server --embeddings; vllm --runner pooling)")
    parser.add_argument("--reranking", action="store_true", help="serve /v1/rerank (llama-server --reranking)")
    parser.add_argument("--metrics", action="store_true", help="serve /metrics on llama-server (vLLM always does)")
    parser.add_argument("--dim", type=int, default=16, help="embedding dimensions (default: 16)")
    parser.add_argument("--max-model-len", type=int, default=262144, help="vLLM's /v1/models max_model_len")


def main(args: argparse.Namespace) -> int:
    if args.engine == "vllm" and args.load_seconds:
        time.sleep(args.load_seconds)
    return trt.serve(create_app(args), args)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(p)
    sys.exit(main(p.parse_args()))
