"""Benchmark an OpenAI-compatible endpoint: single-stream speed, a concurrency sweep, TTFT and ITL.

Usage:
    python scripts/bench.py --url http://localhost:8000/v1 --model qwen
    python scripts/bench.py --url http://localhost:8001/v1 --model nvidia/Qwen3-30B-A3B-FP4 --out-dir bench/direct
    python scripts/bench.py --compare bench/router/results.json bench/direct/results.json
    python scripts/bench.py --url http://localhost:8000/v1 --model qwen --phases depth --depths 0,4096,16384,32768

Works against the router or a trtllm-serve directly (or any server speaking /v1/chat/completions
with SSE). The model name is passed through as given: the router resolves aliases such as `qwen`.

What is measured, per streamed request (client-side clock, `time.perf_counter`):
- TTFT: request sent -> first chunk carrying generated text (content or reasoning_content);
- ITL (inter-token latency): gaps between successive text-bearing chunks. trtllm-serve sends one
  chunk per decode step by default (`stream_interval: 1`), so a gap is one step;
- output tokens: `usage.completion_tokens` from the final usage chunk (requested with
  `stream_options.include_usage`), else the number of text-bearing chunks;
- session tok/s (decode speed): (output tokens - 1) / (last chunk - first chunk).
Per level: total tok/s = all output tokens / wall time of the level; session tok/s is the mean
over its requests; TTFT and ITL p50/p99 pool all requests; errors are failed or empty requests.

Prompts are generated from a fixed seed (English and Japanese), requests carry `seed` and
`ignore_eos` (accepted by trtllm-serve and vLLM; `--no-ignore-eos` for servers that refuse it)
so every run asks for the same work. Results: results.json, results.csv, results.md and PNG
plots in --out-dir.

Depth phase (llama-benchy style): --pp prompt tokens after `depth` tokens of context, --tg generated,
per depth: pp t/s = prompt tokens / (ttfr - latency), tg t/s as above; depth.md and depth.json use
llama-benchy's table and JSON. Prompt sizes are exact with the model's tokenizer.json when found
offline, else calibrated from the server's usage.prompt_tokens; every request opens with a unique
head so KV-cache block reuse has nothing to reuse (depth_messages says why that suffices).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import random
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Optional

SINGLE_LENGTHS = (64, 128, 256, 512, 1024)
CONCURRENCY = (1, 4, 8, 16, 32, 64)
DEPTHS = (0, 4096, 16384, 32768)
PHASES = ("single", "sweep", "depth")

EN_WORDS = ("river mountain engine garden signal winter harbor lantern market orbit forest copper "
            "village thunder compass library silver meadow bridge ocean canyon festival").split()
JA_WORDS = ("川 山 機関 庭 信号 冬 港 灯籠 市場 軌道 森 銅 村 雷 羅針盤 図書館 銀 草原 橋 海 峡谷 祭り").split()
INSTRUCTIONS = {
    "en": "Write a long, detailed story that uses all of these words, and do not stop early: ",
    "ja": "次の単語をすべて使って、長く詳しい物語を日本語で書いてください。途中でやめないでください：",
}


# ---------------------------------------------------------------------------- pure parts

def make_prompt(lang: str, seed: int, words: int) -> str:
    """A deterministic prompt: same (lang, seed, words) -> same text on every machine."""
    if lang not in INSTRUCTIONS:
        raise ValueError(f"unknown prompt language {lang!r} (choose from {sorted(INSTRUCTIONS)})")
    rng = random.Random(f"{lang}:{seed}:{words}")
    pool = EN_WORDS if lang == "en" else JA_WORDS
    sep = " " if lang == "en" else "、"
    return INSTRUCTIONS[lang] + sep.join(rng.choice(pool) for _ in range(words))


def sse_data(line: str) -> Optional[str]:
    """The payload of one SSE line, or None for comments, blank lines and other fields."""
    line = line.rstrip("\r\n")
    if not line.startswith("data:"):
        return None
    return line[5:].lstrip(" ")


def chunk_text(obj: dict[str, Any]) -> tuple[int, Optional[dict]]:
    """(number of choices with generated text in this chunk, usage or None)."""
    n = 0
    for choice in obj.get("choices") or []:
        delta = choice.get("delta") or {}
        text = (delta.get("content") or "") + (delta.get("reasoning_content") or "") + (delta.get("reasoning") or "")
        if text or choice.get("text"):
            n += 1
    return n, obj.get("usage")


def chunk_parts(obj: dict[str, Any]) -> tuple[str, str]:
    """(answer text, reasoning text) of the first choice of one chunk."""
    choices = obj.get("choices") or []
    if not choices:
        return "", ""
    delta = choices[0].get("delta") or {}
    answer = (delta.get("content") or "") + (choices[0].get("text") or "")
    # Mirrored reasoning (`reasoning` beside `reasoning_content`) is the same text: count it once.
    return answer, delta.get("reasoning_content") or delta.get("reasoning") or ""


@dataclass
class RequestResult:
    start: float
    end: float
    token_times: list[float] = field(default_factory=list)
    usage_tokens: Optional[int] = None
    error: Optional[str] = None
    first_response: Optional[float] = None   # first chunk with choices, text or not (llama-benchy's ttfr)
    prompt_tokens: Optional[int] = None      # usage.prompt_tokens, as the server counted the prompt
    cached_tokens: Optional[int] = None      # usage.prompt_tokens_details.cached_tokens (KV blocks reused)
    text: str = ""                           # the answer (delta.content), for graders
    reasoning: str = ""                      # delta.reasoning_content / reasoning

    @property
    def output_tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else len(self.token_times)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.token_times)

    @property
    def ttft(self) -> Optional[float]:
        return self.token_times[0] - self.start if self.token_times else None

    @property
    def itls(self) -> list[float]:
        t = self.token_times
        return [b - a for a, b in zip(t, t[1:])]

    @property
    def decode_tps(self) -> Optional[float]:
        t = self.token_times
        if len(t) < 2 or t[-1] <= t[0]:
            return None
        # Tokens after the first over the time they took; with usage, chunks may carry several tokens.
        return (self.output_tokens - 1) / (t[-1] - t[0])


def consume_stream(lines: Iterable[tuple[float, str]], start: float) -> RequestResult:
    """Fold timestamped SSE lines of one streamed chat completion into a RequestResult."""
    res = RequestResult(start=start, end=start)
    for ts, line in lines:
        res.end = ts
        data = sse_data(line)
        if data is None or data == "":
            continue
        if data == "[DONE]":
            break
        try:
            obj = json.loads(data)
        except json.JSONDecodeError:
            res.error = f"bad SSE data: {data[:80]!r}"
            break
        if "error" in obj and not obj.get("choices"):
            res.error = f"stream error: {json.dumps(obj['error'])[:200]}"
            break
        if obj.get("choices") and res.first_response is None:
            res.first_response = ts
        n, usage = chunk_text(obj)
        if n:
            res.token_times.append(ts)
            answer, reasoning = chunk_parts(obj)
            res.text += answer
            res.reasoning += reasoning
        if usage and usage.get("completion_tokens") is not None:
            res.usage_tokens = int(usage["completion_tokens"])
        if usage and usage.get("prompt_tokens") is not None:
            res.prompt_tokens = int(usage["prompt_tokens"])
            res.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if res.error is None and not res.token_times:
        res.error = "no tokens in stream"
    return res


def percentile(values: list[float], q: float) -> Optional[float]:
    """Linear-interpolated percentile (q in 0..100), None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class LevelStats:
    phase: str            # "single" or "sweep"
    lang: str
    concurrency: int
    output_len: int
    requests: int
    errors: int
    output_tokens: int
    wall_s: float
    total_tps: float
    session_tps: Optional[float]
    ttft_p50_ms: Optional[float]
    ttft_p99_ms: Optional[float]
    itl_p50_ms: Optional[float]
    itl_p99_ms: Optional[float]


def summarize(phase: str, lang: str, concurrency: int, output_len: int,
              results: list[RequestResult], wall_s: float) -> LevelStats:
    ok = [r for r in results if r.ok]
    tokens = sum(r.output_tokens for r in ok)
    sess = [r.decode_tps for r in ok if r.decode_tps is not None]
    ttfts = [r.ttft for r in ok]
    itls = [g for r in ok for g in r.itls]

    def ms(v: Optional[float]) -> Optional[float]:
        return None if v is None else v * 1000.0

    return LevelStats(phase=phase, lang=lang, concurrency=concurrency, output_len=output_len,
                      requests=len(results), errors=len(results) - len(ok), output_tokens=tokens,
                      wall_s=wall_s, total_tps=tokens / wall_s if wall_s > 0 else 0.0,
                      session_tps=statistics.fmean(sess) if sess else None,
                      ttft_p50_ms=ms(percentile(ttfts, 50)), ttft_p99_ms=ms(percentile(ttfts, 99)),
                      itl_p50_ms=ms(percentile(itls, 50)), itl_p99_ms=ms(percentile(itls, 99)))


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown_tables(rows: list[LevelStats]) -> str:
    out = []
    single = [r for r in rows if r.phase == "single"]
    if single:
        out += ["### Single stream", "",
                "| lang | output len | tok/s | TTFT p50 ms | ITL p50 ms | ITL p99 ms | errors |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        out += [f"| {r.lang} | {r.output_len} | {_fmt(r.session_tps)} | {_fmt(r.ttft_p50_ms)} | "
                f"{_fmt(r.itl_p50_ms, 2)} | {_fmt(r.itl_p99_ms, 2)} | {r.errors}/{r.requests} |" for r in single]
        out.append("")
    sweep = [r for r in rows if r.phase == "sweep"]
    if sweep:
        out += ["### Concurrency sweep", "",
                "| lang | conc | total tok/s | session tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | "
                "ITL p99 ms | errors |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        out += [f"| {r.lang} | {r.concurrency} | {_fmt(r.total_tps)} | {_fmt(r.session_tps)} | "
                f"{_fmt(r.ttft_p50_ms)} | {_fmt(r.ttft_p99_ms)} | {_fmt(r.itl_p50_ms, 2)} | "
                f"{_fmt(r.itl_p99_ms, 2)} | {r.errors}/{r.requests} |" for r in sweep]
        out.append("")
    return "\n".join(out)


def _key(r: dict) -> tuple:
    return (r["phase"], r["lang"], r["concurrency"], r["output_len"])


def compare_tables(a: dict, b: dict) -> str:
    """Side-by-side markdown of two results.json documents, matched on (phase, lang, conc, len)."""
    name_a, name_b = a.get("label") or "A", b.get("label") or "B"
    rows_b = {_key(r): r for r in b["rows"]}
    metrics = [("total_tps", "total tok/s"), ("session_tps", "session tok/s"),
               ("ttft_p50_ms", "TTFT p50 ms"), ("itl_p50_ms", "ITL p50 ms"), ("itl_p99_ms", "ITL p99 ms")]
    out = [f"A = {name_a}, B = {name_b}", "",
           "| phase | lang | conc | len | metric | A | B | B/A |", "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for ra in a["rows"]:
        rb = rows_b.get(_key(ra))
        if rb is None:
            continue
        for k, label in metrics:
            va, vb = ra.get(k), rb.get(k)
            ratio = vb / va if va and vb is not None else None
            out.append(f"| {ra['phase']} | {ra['lang']} | {ra['concurrency']} | {ra['output_len']} | {label} | "
                       f"{_fmt(va)} | {_fmt(vb)} | {_fmt(ratio, 2)} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- depth (llama-benchy style)

def filler(seed: int, words: int) -> str:
    """Deterministic English filler text for context depth."""
    rng = random.Random(f"depth:{seed}")
    return " ".join(rng.choice(EN_WORDS) for _ in range(words))


class TokenizerPrompts:
    """Prompt text of an exact token count, by the model's own tokenizer (transformers)."""

    def __init__(self, tokenizer: Any, name: str):
        self.tok, self.name = tokenizer, name
        self.counting = f"tokenizer {name}"

    def estimate(self, text: str) -> float:
        return float(len(self.tok.encode(text, add_special_tokens=False)))

    def text(self, head: str, n: int, seed: int) -> str:
        if n <= self.estimate(head):
            raise ValueError(f"cannot build a {n}-token prompt: its unique head alone is longer")
        words = max(n, 16)
        while True:
            ids = self.tok.encode(head + " " + filler(seed, words), add_special_tokens=False)
            if len(ids) >= n:
                break
            words *= 2
        # Cutting token ids and decoding can merge or split at the cut: re-count and move the cut.
        k, text = n, ""
        for _ in range(8):
            text = self.tok.decode(ids[:k])
            m = int(self.estimate(text))
            if m == n:
                break
            k += n - m
        return text


class CalibratedPrompts:
    """Without a tokenizer: words x tokens-per-word, the rate measured from the server's usage.prompt_tokens."""

    def __init__(self, rate: float):
        if not rate > 0:
            raise ValueError(f"the server's prompt_tokens did not grow with the prompt (rate {rate})")
        self.rate = rate
        self.counting = f"calibrated through usage.prompt_tokens ({rate:.3f} tokens/word)"

    def estimate(self, text: str) -> float:
        return self.rate * len(text.split())

    def text(self, head: str, n: int, seed: int) -> str:
        words = round(n / self.rate) - len(head.split())
        if words < 1:
            raise ValueError(f"cannot build a {n}-token prompt: its unique head alone is longer")
        return head + " " + filler(seed, words)


def depth_messages(prompts, head: str, depth: int, pp: int, overhead: int, seed: int) -> list[dict[str, str]]:
    """llama-benchy's layout: the depth as a system message, then the pp prompt as the user turn.

    `head` (unique per request) opens the first message, so no two requests share more than the
    chat template's few opening tokens: less than one KV-cache block (trtllm's tokens_per_block is
    32 by default, KvCacheConfig in tensorrt_llm/llmapi/llm_args.py), so block reuse (prefix
    caching) has no full block to reuse. The template's own tokens (`overhead`) are taken off the
    user part, so the server counts depth + pp tokens."""
    if depth > 0:
        return [{"role": "system", "content": prompts.text(head, depth, seed)},
                {"role": "user", "content": prompts.text("Continue:", pp - overhead, seed + 1)}]
    return [{"role": "user", "content": prompts.text(head, pp - overhead, seed)}]


@dataclass
class DepthRun:
    """One request of the depth phase, timed on the client clock (seconds)."""
    prompt_tokens: int        # as the server counted it (usage), else as built
    ttfr: Optional[float]     # first chunk with choices
    e2e_ttft: Optional[float]  # first chunk with generated text
    tg_tps: Optional[float]   # (completion tokens - 1) / (last token - first token)
    cached_tokens: Optional[int] = None  # what the server says it reused (should be 0)
    error: Optional[str] = None


def metric(values: list[float]) -> Optional[dict[str, Any]]:
    """llama-benchy's BenchmarkMetric: mean, population std, raw values."""
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "values": values}


def depth_benchmark(depth: int, pp: int, tg: int, runs: list[DepthRun], latency: float) -> dict[str, Any]:
    """One llama-benchy `BenchmarkRun` (concurrency 1, no context-prefill phase) from timed runs."""
    ok = [r for r in runs if r.error is None and r.ttfr is not None]
    est = [max(r.ttfr - latency, 0.0) for r in ok]
    pp_speeds = [r.prompt_tokens / e for r, e in zip(ok, est) if e > 0]
    tg_speeds = [r.tg_tps for r in ok if r.tg_tps is not None]
    pp_m, tg_m = metric(pp_speeds), metric(tg_speeds)
    return {"concurrency": 1, "context_size": depth, "prompt_size": pp, "response_size": tg,
            "is_context_prefill_phase": False,
            "pp_throughput": pp_m, "pp_req_throughput": pp_m, "tg_throughput": tg_m, "tg_req_throughput": tg_m,
            "peak_throughput": None, "peak_req_throughput": None,
            "ttfr": metric([r.ttfr * 1000 for r in ok]), "est_ppt": metric([e * 1000 for e in est]),
            "e2e_ttft": metric([r.e2e_ttft * 1000 for r in ok if r.e2e_ttft is not None]),
            # Ours, beside llama-benchy's fields: what the server counted, and failures.
            "prompt_tokens": [r.prompt_tokens for r in ok], "cached_tokens": [r.cached_tokens for r in ok],
            "runs": len(runs), "errors": len(runs) - len(ok),
            "first_error": next((r.error for r in runs if r.error), None)}


def depth_table(doc: dict[str, Any]) -> str:
    """The llama-benchy Markdown table (concurrency 1): model | test | t/s | ttfr | est_ppt | e2e_ttft."""
    def fmt(m: Optional[dict]) -> str:
        return "" if not m else f"{m['mean']:.2f} ± {m['std']:.2f}"

    out = ["| model | test | t/s | ttfr (ms) | est_ppt (ms) | e2e_ttft (ms) |",
           "|:--|--:|--:|--:|--:|--:|"]
    for b in doc["benchmarks"]:
        d = f" @ d{b['context_size']}" if b["context_size"] else ""
        out.append(f"| {doc['model']} | pp{b['prompt_size']}{d} | {fmt(b['pp_throughput'])} | {fmt(b['ttfr'])} | "
                   f"{fmt(b['est_ppt'])} | {fmt(b['e2e_ttft'])} |")
        out.append(f"| {doc['model']} | tg{b['response_size']}{d} | {fmt(b['tg_throughput'])} |  |  |  |")
    return "\n".join(out) + "\n"


def compare_depth(a: dict, b: dict) -> str:
    """pp and tg t/s of two depth documents side by side, matched on (depth, pp, tg)."""
    def key(x: dict) -> tuple:
        return x["context_size"], x["prompt_size"], x["response_size"]

    rows_b = {key(x): x for x in b["benchmarks"]}
    out = ["| test | A t/s | B t/s | B/A |", "| --- | ---: | ---: | ---: |"]
    for xa in a["benchmarks"]:
        xb = rows_b.get(key(xa))
        if xb is None:
            continue
        d = f" @ d{xa['context_size']}" if xa["context_size"] else ""
        for name, field_ in ((f"pp{xa['prompt_size']}{d}", "pp_throughput"), (f"tg{xa['response_size']}{d}", "tg_throughput")):
            va = (xa[field_] or {}).get("mean")
            vb = (xb[field_] or {}).get("mean")
            ratio = vb / va if va and vb is not None else None
            out.append(f"| {name} | {_fmt(va, 2)} | {_fmt(vb, 2)} | {_fmt(ratio, 2)} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- network

def chat_body(model: str, prompt: str, max_tokens: int, seed: int, ignore_eos: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": max_tokens, "stream": True, "seed": seed, "temperature": 0.0,
                            "stream_options": {"include_usage": True}}
    if ignore_eos:
        body["ignore_eos"] = True
    return body


async def _timed_lines(resp) -> AsyncIterator[tuple[float, str]]:
    async for line in resp.aiter_lines():
        yield time.perf_counter(), line


async def one_request(client, url: str, body: dict[str, Any]) -> RequestResult:
    start = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode("utf-8", "replace")[:200]
                return RequestResult(start=start, end=time.perf_counter(), error=f"HTTP {resp.status_code}: {text}")
            lines = [x async for x in _timed_lines(resp)]
        return consume_stream(lines, start)
    except Exception as exc:  # network errors count as errors of the level, not a crash
        return RequestResult(start=start, end=time.perf_counter(), error=f"{type(exc).__name__}: {exc}")


async def run_level(client, url: str, bodies: list[dict[str, Any]], concurrency: int, bar) -> tuple[list[RequestResult], float]:
    queue = list(reversed(bodies))
    results: list[RequestResult] = []

    async def worker() -> None:
        while queue:
            body = queue.pop()
            results.append(await one_request(client, url, body))
            bar.update(1)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - t0


@dataclass
class Plan:
    phase: str
    lang: str
    concurrency: int
    output_len: int
    n_requests: int


def build_plan(args: argparse.Namespace) -> list[Plan]:
    plan = []
    for lang in args.langs:
        plan += [Plan("single", lang, 1, n, args.single_requests) for n in args.single_lengths]
        plan += [Plan("sweep", lang, c, args.sweep_output_len, max(c * args.rounds, args.min_requests))
                 for c in args.concurrency]
    return plan


async def run_all(args: argparse.Namespace, model: str, plan: list[Plan]) -> list[LevelStats]:
    import httpx
    from tqdm import tqdm

    url = args.url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=max(p.concurrency for p in plan) + 4)
    rows = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout), limits=limits, headers=headers) as client:
        # One warm-up request so connection set-up and first-request costs stay out of the numbers.
        await one_request(client, url, chat_body(model, make_prompt("en", args.seed, args.prompt_words), 8,
                                                 args.seed, args.ignore_eos))
        total = sum(p.n_requests for p in plan)
        with tqdm(total=total, desc="requests", unit="req", file=sys.stderr, disable=args.quiet) as bar:
            for p in plan:
                bar.set_postfix_str(f"{p.phase} {p.lang} c={p.concurrency} len={p.output_len}")
                bodies = [chat_body(model, make_prompt(p.lang, args.seed + i, args.prompt_words), p.output_len,
                                    args.seed + i, args.ignore_eos) for i in range(p.n_requests)]
                results, wall = await run_level(client, url, bodies, p.concurrency, bar)
                rows.append(summarize(p.phase, p.lang, p.concurrency, p.output_len, results, wall))
                errs = [r.error for r in results if r.error]
                if errs and not args.quiet:
                    tqdm.write(f"{len(errs)} error(s) at {p.phase} c={p.concurrency}: {errs[0]}", file=sys.stderr)
    return rows


def tokenizer_names(model: str, explicit: Optional[str]) -> list[str]:
    """Where to look for the model's tokenizer: --tokenizer, else the registry's ids for the name."""
    if explicit:
        return [] if explicit == "none" else [explicit]
    names = [model]
    try:
        from configs.registry import load_registry
        m = load_registry().find(model)
    except Exception:  # the registry is optional here: bench works against any server
        m = None
    if m is not None:
        names = [m.id] + ([m.build.source] if m.build and m.build.source else []) + names
    return list(dict.fromkeys(names))


class _TokenizerJson:
    """A tokenizer.json through the `tokenizers` library: what AutoTokenizer would use, without
    importing transformers (and torch), which takes seconds."""

    def __init__(self, path: str):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(path)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)


def _cached(name: str, filename: str) -> Optional[str]:
    """`filename` of a directory, or of an HF repo in the local cache (no network)."""
    local = Path(name) / filename
    if local.is_file():
        return str(local)
    try:
        from huggingface_hub import try_to_load_from_cache
        hit = try_to_load_from_cache(name, filename)
    except Exception:  # not an HF repo id, or no huggingface_hub
        return None
    return hit if isinstance(hit, str) else None


def load_tokenizer(names: list[str]) -> Optional[TokenizerPrompts]:
    """The first of `names` found offline (a directory, or the local HF cache): its tokenizer.json,
    else transformers' AutoTokenizer (local_files_only) where only a tokenizer_config.json is there."""
    for name in names:
        path = _cached(name, "tokenizer.json")
        try:
            if path:
                return TokenizerPrompts(_TokenizerJson(path), name)
            if _cached(name, "tokenizer_config.json"):
                from transformers import AutoTokenizer
                return TokenizerPrompts(AutoTokenizer.from_pretrained(name, local_files_only=True), name)
        except Exception:  # unreadable, or no transformers: the next name, then calibrate
            continue
    return None


async def served_prompt_tokens(client, url: str, model: str, messages: list[dict[str, str]]) -> Optional[int]:
    """usage.prompt_tokens the server reports for `messages` (a 1-token request)."""
    body = {**chat_body(model, "", 1, 0, False), "messages": messages}
    res = await one_request(client, url, body)
    if res.error and res.error != "no tokens in stream":
        raise RuntimeError(f"calibration request failed: {res.error}")
    return res.prompt_tokens


async def calibrate(client, url: str, model: str, prompts, run_id: str, seed: int):
    """(prompts, overhead per layout): the chat template's token cost for [user] and [system, user].

    Without a tokenizer, first the tokens-per-word rate: two prompts of known word counts."""
    if prompts is None:
        sizes = (64, 576)
        counts = []
        for k in sizes:
            n = await served_prompt_tokens(client, url, model, [{"role": "user", "content": filler(seed + k, k)}])
            if n is None:
                raise RuntimeError("the server reports no usage.prompt_tokens and no tokenizer was found: "
                                   "pass --tokenizer with a local tokenizer")
            counts.append(n)
        prompts = CalibratedPrompts((counts[1] - counts[0]) / (sizes[1] - sizes[0]))
    overhead = {}
    for depth in (0, 1):
        msgs = depth_messages(prompts, f"[{run_id}-probe{depth}]", 64 * depth, 128, 0, seed)
        n = await served_prompt_tokens(client, url, model, msgs)
        built = sum(prompts.estimate(m["content"]) for m in msgs)
        overhead[depth] = 0 if n is None else round(n - built)
    return prompts, overhead


async def measure_latency(client, base: str, url: str, model: str, mode: str, run_id: str) -> float:
    """llama-benchy's latency modes: `api` (GET /models to headers), `generation` (first chunk of a
    1-token request), `none`. Subtracted from ttfr to estimate the server's prompt processing time."""
    if mode == "none":
        return 0.0
    times = []
    for i in range(3):
        t0 = time.perf_counter()
        if mode == "api":
            async with client.stream("GET", base + "/models") as resp:
                times.append(time.perf_counter() - t0)
                await resp.aread()
        else:
            res = await one_request(client, url, chat_body(model, f"[{run_id}-lat{i}] hello", 1, 0, False))
            if res.first_response is not None:
                times.append(res.first_response - res.start)
    return statistics.fmean(times) if times else 0.0


async def run_depth(args: argparse.Namespace, model: str, run_id: str) -> dict[str, Any]:
    """pp and tg at each --depths, as a llama-benchy JSON document (concurrency 1)."""
    import httpx
    from tqdm import tqdm

    base = args.url.rstrip("/")
    url = base + "/chat/completions"
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    prompts = load_tokenizer(tokenizer_names(model, args.tokenizer))
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout), headers=headers) as client:
        prompts, overhead = await calibrate(client, url, model, prompts, run_id, args.seed)
        latency = await measure_latency(client, base, url, model, args.latency_mode, run_id)
        benchmarks = []
        total = len(args.depths) * args.depth_runs
        with tqdm(total=total, desc="depth", unit="req", file=sys.stderr, disable=args.quiet) as bar:
            for depth in args.depths:
                bar.set_postfix_str(f"d={depth}")
                ovh = overhead[1 if depth else 0]
                target = depth + args.pp
                # One 1-token request at full size: checks the count (calibrated: corrects it) and
                # warms this size up. Its head is unique too, so it leaves nothing the runs could reuse.
                # Same filler in every request of a depth (only the head differs), so the counts agree.
                for attempt in range(3):
                    msgs = depth_messages(prompts, f"[{run_id}-d{depth}-c{attempt}]", depth, args.pp, ovh, args.seed)
                    n = await served_prompt_tokens(client, url, model, msgs)
                    if n is None or n == target:
                        break
                    ovh += n - target
                runs = []
                for i in range(args.depth_runs):
                    msgs = depth_messages(prompts, f"[{run_id}-d{depth}-r{i}]", depth, args.pp, ovh, args.seed)
                    body = {**chat_body(model, "", args.tg, args.seed + i, args.ignore_eos), "messages": msgs}
                    res = await one_request(client, url, body)
                    ttft = res.ttft
                    runs.append(DepthRun(prompt_tokens=res.prompt_tokens or target,
                                         ttfr=None if res.first_response is None else res.first_response - res.start,
                                         e2e_ttft=ttft, tg_tps=res.decode_tps, cached_tokens=res.cached_tokens,
                                         error=None if res.ok else res.error))
                    bar.update(1)
                benchmarks.append(depth_benchmark(depth, args.pp, args.tg, runs, latency))
    return {"version": "scripts/bench.py", "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
            "latency_mode": args.latency_mode, "latency_ms": latency * 1000, "model": model,
            "prefix_caching_enabled": False, "max_concurrency": 1, "token_counting": prompts.counting,
            "unique_prefix": f"every request opens with [{run_id}-<depth>-<run>]", "benchmarks": benchmarks}


def resolve_model(args: argparse.Namespace) -> str:
    if args.model:
        return args.model
    import httpx
    r = httpx.get(args.url.rstrip("/") + "/models", timeout=10)
    r.raise_for_status()
    data = r.json().get("data") or []
    if not data:
        raise SystemExit(f"{args.url}/models lists no model; pass --model")
    return data[0]["id"]


# ---------------------------------------------------------------------------- output

def write_results(out_dir: Path, meta: dict[str, Any], rows: list[LevelStats],
                  depth: Optional[dict[str, Any]] = None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "csv": out_dir / "results.csv", "md": out_dir / "results.md"}
    dicts = [asdict(r) for r in rows]
    doc = {**meta, "rows": dicts, **({"depth": depth} if depth else {})}
    paths["json"].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dicts[0]) if dicts else [f for f in LevelStats.__dataclass_fields__])
        w.writeheader()
        w.writerows(dicts)
    md = f"# Benchmark: {meta['model']} at {meta['url']}\n\n" + markdown_tables(rows)
    if depth:
        md += f"\n### Speed at depth\n\n{depth_table(depth)}\ntokens: {depth['token_counting']}\n"
        paths["depth_json"] = out_dir / "depth.json"
        paths["depth_md"] = out_dir / "depth.md"
        paths["depth_json"].write_text(json.dumps(depth, indent=2, ensure_ascii=False) + "\n")
        paths["depth_md"].write_text(depth_table(depth))
    paths["md"].write_text(md)
    return paths


def plot_depth(docs: list[dict], path: Path) -> Optional[Path]:
    """pp and tg t/s against context depth, one line per document with a depth phase."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [d for d in docs if d.get("depth")]
    if not docs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for doc in docs:
        bs = sorted(doc["depth"]["benchmarks"], key=lambda b: b["context_size"])
        for ax, key in zip(axes, ("pp_throughput", "tg_throughput")):
            pts = [(b["context_size"], b[key]["mean"]) for b in bs if b[key]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=doc.get("label") or doc["model"])
    for ax, title in zip(axes, ("Prompt processing (pp)", "Generation (tg)")):
        ax.set_xlabel("context depth (tokens)")
        ax.set_ylabel("tokens/s")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot(docs: list[dict], out_dir: Path) -> list[Path]:
    """PNG plots; several result documents are overlaid (compare mode)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    specs = [("single_stream.png", "single", "output_len", [("session_tps", "tok/s")], "output tokens",
              "Single-stream decode speed"),
             ("sweep_throughput.png", "sweep", "concurrency", [("total_tps", "total"), ("session_tps", "per session")],
              "concurrency", "Output tokens/s"),
             ("sweep_latency.png", "sweep", "concurrency", [("ttft_p50_ms", "TTFT p50"), ("ttft_p99_ms", "TTFT p99"),
                                                             ("itl_p50_ms", "ITL p50"), ("itl_p99_ms", "ITL p99")],
              "concurrency", "Latency (ms)")]
    for fname, phase, xkey, series, xlabel, title in specs:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        drew = False
        for doc in docs:
            for lang in sorted({r["lang"] for r in doc["rows"]}):
                rows = sorted((r for r in doc["rows"] if r["phase"] == phase and r["lang"] == lang),
                              key=lambda r: r[xkey])
                for key, label in series:
                    pts = [(r[xkey], r[key]) for r in rows if r[key] is not None]
                    if pts:
                        ax.plot(*zip(*pts), marker="o", label=f"{doc.get('label') or doc['model']} {lang} {label}")
                        drew = True
        if not drew:
            plt.close(fig)
            continue
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        written.append(out_dir / fname)
    depth = plot_depth(docs, out_dir / "speed_vs_depth.png")
    return written + ([depth] if depth else [])


# ---------------------------------------------------------------------------- CLI

def _int_list(text: str, lowest: int, what: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or any(v < lowest for v in vals):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return vals


def _ints(text: str) -> list[int]:
    return _int_list(text, 1, "positive integers")


def _depths(text: str) -> list[int]:
    return _int_list(text, 0, "depths >= 0")


def _choices(text: str, allowed: Iterable[str], what: str) -> list[str]:
    vals = [x.strip() for x in text.split(",") if x.strip()]
    if not vals or any(v not in allowed for v in vals):
        raise argparse.ArgumentTypeError(f"{what} must be among {sorted(allowed)}, got {text!r}")
    return vals


def _phases(text: str) -> list[str]:
    return _choices(text, PHASES, "phases")


def _langs(text: str) -> list[str]:
    return _choices(text, INSTRUCTIONS, "languages")


def add_endpoint_args(parser: argparse.ArgumentParser) -> None:
    """--url, --model, --api-key, --timeout: the endpoint flags bench.py and eval.py share."""
    parser.add_argument("--url", default="http://localhost:8000/v1",
                        help="OpenAI base URL: the router or a backend (default: http://localhost:8000/v1)")
    parser.add_argument("--model", default=None,
                        help="model id or alias as clients send it (default: the first of /v1/models)")
    parser.add_argument("--api-key", default=None, help="bearer token, if the endpoint wants one (default: none)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request timeout in seconds (default: 600)")


def read_json_docs(paths: list[Path], what: str) -> list[dict]:
    docs = []
    for p in paths:
        try:
            docs.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"cannot read {what} file {p}: {exc}")
    return docs


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    add_endpoint_args(parser)
    parser.add_argument("--single-lengths", type=_ints, default=list(SINGLE_LENGTHS),
                        help="output lengths of the single-stream phase (default: 64,128,256,512,1024)")
    parser.add_argument("--single-requests", type=int, default=3,
                        help="requests per single-stream length (default: 3)")
    parser.add_argument("--concurrency", type=_ints, default=list(CONCURRENCY),
                        help="concurrency levels of the sweep (default: 1,4,8,16,32,64)")
    parser.add_argument("--sweep-output-len", type=int, default=256, help="output tokens per sweep request (default: 256)")
    parser.add_argument("--rounds", type=int, default=2, help="sweep requests per level = rounds x concurrency (default: 2)")
    parser.add_argument("--min-requests", type=int, default=4, help="at least this many requests per sweep level (default: 4)")
    parser.add_argument("--langs", type=_langs, default=["en", "ja"], help="prompt languages (default: en,ja)")
    parser.add_argument("--phases", type=_phases, default=list(PHASES),
                        help="what to run (default: single,sweep,depth)")
    parser.add_argument("--depths", type=_depths, default=list(DEPTHS),
                        help="context depths of the depth phase, in tokens (default: 0,4096,16384,32768)")
    parser.add_argument("--pp", type=int, default=2048,
                        help="prompt tokens processed at each depth, llama-benchy's --pp (default: 2048)")
    parser.add_argument("--tg", type=int, default=32,
                        help="tokens generated at each depth, llama-benchy's --tg (default: 32)")
    parser.add_argument("--depth-runs", type=int, default=3, help="requests per depth (default: 3)")
    parser.add_argument("--tokenizer", default=None,
                        help="HF tokenizer id or directory for exact prompt sizes, loaded offline; 'none' "
                             "calibrates through the server's usage.prompt_tokens instead (default: the "
                             "model's checkpoint from the registry, if in the local HF cache)")
    parser.add_argument("--latency-mode", choices=["generation", "api", "none"], default="generation",
                        help="latency taken off ttfr for est_ppt, as llama-benchy (default: generation)")
    parser.add_argument("--prompt-words", type=int, default=64, help="words in each generated prompt (default: 64)")
    parser.add_argument("--seed", type=int, default=1234, help="seed for prompts and sampling (default: 1234)")
    parser.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                        help="do not send ignore_eos (default: sent, so outputs have the requested length)")
    parser.add_argument("--label", default=None, help="name of this run in compare tables and plots (default: the model)")
    parser.add_argument("--out-dir", type=Path, default=Path("bench-results"),
                        help="where results.json/.csv/.md and PNGs go (default: bench-results)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"), default=None,
                        help="no benchmark: print two results.json side by side and plot them into --out-dir")
    parser.add_argument("--no-plots", dest="plots", action="store_false",
                        help="write no PNGs (default: plots written; scripts/report.py draws its own)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")


def main(args: argparse.Namespace) -> int:
    if args.compare:
        docs = read_json_docs(args.compare, "results")
        for d, p in zip(docs, args.compare):
            d["label"] = d.get("label") or p.parent.name or p.stem
        table = compare_tables(docs[0], docs[1])
        if docs[0].get("depth") and docs[1].get("depth"):
            table += "\n" + compare_depth(docs[0]["depth"], docs[1]["depth"])
        print(table)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "compare.md").write_text(table)
        for path in plot(docs, args.out_dir):
            print(f"wrote {path}")
        return 0
    for name in ("single_requests", "rounds", "sweep_output_len", "prompt_words", "min_requests", "pp", "tg",
                 "depth_runs"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be positive")
    model = resolve_model(args)
    plan = [p for p in build_plan(args) if p.phase in args.phases]
    t0 = time.time()
    rows = asyncio.run(run_all(args, model, plan)) if plan else []
    depth = None
    if "depth" in args.phases:
        try:
            depth = asyncio.run(run_depth(args, model, uuid.uuid4().hex[:12]))
        except (ValueError, RuntimeError) as exc:
            raise SystemExit(f"depth phase: {exc}")
    meta = {"url": args.url, "model": model, "label": args.label or model, "started": t0,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                         if k not in ("api_key", "compare")}}
    paths = write_results(args.out_dir, meta, rows, depth)
    print(markdown_tables(rows))
    if depth:
        print(depth_table(depth) + f"\ntokens: {depth['token_counting']}\n")
    doc = {**meta, "rows": [asdict(r) for r in rows], **({"depth": depth} if depth else {})}
    for path in list(paths.values()) + (plot([doc], args.out_dir) if args.plots else []):
        print(f"wrote {path}")
    failed_rows = rows and all(r.errors == r.requests for r in rows)
    failed_depth = depth and all(b["errors"] == b["runs"] for b in depth["benchmarks"])
    return 1 if failed_rows or failed_depth else 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(_parser)
    sys.exit(main(_parser.parse_args()))
