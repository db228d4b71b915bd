"""Check a running deployment model by model through the router; print a pass/fail table.

Usage:
    python scripts/smoke.py                                   # http://localhost:8000/v1, every model
    python scripts/smoke.py --url http://spark:8000/v1 --model qwen --max-tokens 1024

For each deployed model: listed and ready; chat without and with streaming; thinking off (no
reasoning, answer in `content`) and, for models that think, thinking on (reasoning in
`reasoning_content`, never a literal <think> in `content`); structured output (a JSON schema in
`response_format`, honoured through guided decoding). Exit status 0 when every check passes,
1 otherwise, 2 when the router cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Callable

import openai
import requests

from configs.registry import load_registry

PROMPT = "What is 17 * 23? Reply with the number only."
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}


@dataclass
class Result:
    model: str
    check: str
    ok: bool
    detail: str
    seconds: float


class CheckFailed(AssertionError):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def no_think_tags(text: str | None) -> None:
    expect("<think>" not in (text or "") and "</think>" not in (text or ""), "literal <think> tag in content")


class Smoke:
    def __init__(self, client: openai.OpenAI, max_tokens: int):
        self.c = client
        self.max_tokens = max_tokens

    def chat(self, model: str, thinking: bool | None, **kw):
        extra = {} if thinking is None else {"chat_template_kwargs": {"enable_thinking": thinking}}
        return self.c.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                              max_tokens=self.max_tokens, extra_body=extra, **kw)

    def stream(self, model: str, thinking: bool | None) -> tuple[str, str, int]:
        content, reasoning, chunks, first_content_after_reasoning = "", "", 0, True
        for ch in self.chat(model, thinking, stream=True):
            chunks += 1
            if not ch.choices:
                continue
            d = ch.choices[0].delta
            r = getattr(d, "reasoning_content", None) or ""
            if r and content:
                first_content_after_reasoning = False
            reasoning += r
            content += d.content or ""
        expect(first_content_after_reasoning, "reasoning arrived after the answer had started")
        return content, reasoning, chunks

    def thinking_off(self, model: str) -> str:
        r = self.chat(model, False)
        m = r.choices[0].message
        no_think_tags(m.content)
        expect(bool((m.content or "").strip()), f"empty content (finish_reason {r.choices[0].finish_reason})")
        expect(not getattr(m, "reasoning_content", None), "reasoning_content present with thinking off")
        return f"{(m.content or '').strip()[:40]!r}"

    def thinking_on(self, model: str) -> str:
        r = self.chat(model, True)
        m = r.choices[0].message
        no_think_tags(m.content)
        reasoning = getattr(m, "reasoning_content", None) or ""
        expect(bool(reasoning.strip()), "no reasoning_content with thinking on")
        return f"{len(reasoning)} chars of reasoning, finish {r.choices[0].finish_reason}"

    def stream_off(self, model: str) -> str:
        content, reasoning, chunks = self.stream(model, False)
        no_think_tags(content)
        expect(bool(content.strip()), "no content streamed")
        expect(not reasoning, "reasoning streamed with thinking off")
        return f"{chunks} chunks"

    def stream_on(self, model: str) -> str:
        content, reasoning, chunks = self.stream(model, True)
        no_think_tags(content)
        expect(bool(reasoning.strip()), "no reasoning_content streamed with thinking on")
        return f"{chunks} chunks, {len(reasoning)} chars of reasoning"

    def structured(self, model: str) -> str:
        r = self.c.chat.completions.create(
            model=model, max_tokens=self.max_tokens,
            messages=[{"role": "user", "content": "Name a large city in Japan and its population as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}},
            extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        text = r.choices[0].message.content or ""
        try:
            value = json.loads(text)
        except ValueError:
            raise CheckFailed(f"content is not JSON: {text[:60]!r}") from None
        expect(isinstance(value, dict) and isinstance(value.get("city"), str)
               and isinstance(value.get("population"), int), f"JSON does not match the schema: {text[:60]!r}")
        return text[:50]


def run(url: str, names: list[str], max_tokens: int, api_key: str, timeout: float) -> list[Result] | None:
    registry = load_registry()
    base = url.rstrip("/")
    try:
        listed = requests.get(base + "/models", timeout=10).json()["data"]
    except (requests.RequestException, ValueError, KeyError) as err:
        print(f"smoke: cannot list models at {base}/models: {err}", file=sys.stderr)
        return None
    smoke = Smoke(openai.OpenAI(base_url=base, api_key=api_key, timeout=timeout, max_retries=0), max_tokens)
    wanted = {n.lower() for n in names}
    results = []
    for entry in listed:
        mid = entry["id"]
        if entry.get("variant_of"):
            continue   # a base model with fixed settings: its model's checks cover it
        if wanted and not wanted & {mid.lower(), *(a.lower() for a in entry.get("aliases", []))}:
            continue
        model = registry.find(mid)
        def listed(_model: str, status: str = entry.get("status")) -> str:
            expect(status == "ready", f"listed with status {status}")
            return status

        checks: list[tuple[str, Callable[[str], str]]] = [
            ("listed and ready", listed),
            ("chat, thinking off", smoke.thinking_off),
            ("stream, thinking off", smoke.stream_off),
        ]
        if model is not None and model.reasoning.mode != "none":
            checks += [("chat, thinking on", smoke.thinking_on), ("stream, thinking on", smoke.stream_on)]
        checks.append(("structured output (json_schema)", smoke.structured))
        for name, fn in checks:
            t0 = time.monotonic()
            try:
                detail, ok = fn(mid), True
            except CheckFailed as err:
                detail, ok = str(err), False
            except openai.APIError as err:
                detail, ok = f"{type(err).__name__}: {getattr(err, 'message', err)}"[:120], False
            results.append(Result(mid, name, ok, detail, time.monotonic() - t0))
    if wanted and not results:
        print(f"smoke: none of {names} is deployed at {base}", file=sys.stderr)
        return None
    return results


def render(results: list[Result]) -> str:
    width = max(len(r.model) for r in results)
    lines = [f"{'model':{width}}  {'check':32} {'result':6} {'time':>7}  detail"]
    for r in results:
        lines.append(f"{r.model:{width}}  {r.check:32} {'PASS' if r.ok else 'FAIL':6} {r.seconds:6.1f}s  {r.detail}")
    passed = sum(r.ok for r in results)
    lines.append(f"{passed}/{len(results)} checks passed")
    return "\n".join(lines)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://localhost:8000/v1", help="OpenAI base URL (default: %(default)s)")
    parser.add_argument("--model", action="append", default=[], help="check only this id or alias (repeatable)")
    parser.add_argument("--max-tokens", type=int, default=512,
                        help="per request; thinking needs room (default: %(default)s)")
    parser.add_argument("--api-key", default="none", help="sent as Bearer token (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300, help="per request, seconds (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    if args.max_tokens <= 0:
        print("smoke: --max-tokens must be positive", file=sys.stderr)
        return 2
    results = run(args.url, args.model, args.max_tokens, args.api_key, args.timeout)
    if results is None:
        return 2
    print(render(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cli_args(ap)
    sys.exit(main(ap.parse_args()))
