"""Router overhead benchmark: the router vs plain nginx proxy_pass vs a minimal Lua router.

Usage:
    python scripts/bench_router.py                     # prints markdown tables
    python scripts/bench_router.py --rounds 5 --duration 3 --out results/bench_router.json
    python scripts/bench_router.py --metrics-ab 5      # metrics on / access log off / metrics off only
    python scripts/bench_router.py --messages-ab 5     # a chat completion vs the same as /v1/messages
    python scripts/bench_router.py --keys-ab 5         # keys + admission / admission only / neither
    python scripts/bench_router.py --status-ab 5 --poll-interval 2 0.1   # with the status page polling

Everything runs on loopback. The backend is nginx itself (not Python), so the numbers show
what the router adds, not what a slow fake costs. The anchors:
- plain nginx: proxy_pass with keepalive, no Lua;
- minimal Lua router: access_by_lua decodes the body with cjson, balancer_by_lua picks the
  peer, nothing else: the floor any Lua router pays.
Every target runs --rounds times, the targets' order rotating each round (a slow moment on a
shared machine lands on all of them), and the medians are reported, with ratios to both
anchors and the server CPU (utime + stime of the target's nginx processes) per request and
per streamed event. Measured:
- POST /v1/chat/completions answering a fixed chat.completion as trtllm-serve shapes it
  (wrk: req/s, p50/p99 at each --concurrency);
- chat streams at full speed (wrk, `?fast=1`): raw `<think>` tags in content (what a model
  without trtllm's reasoning parser streams) or, with `?parsed=1`, reasoning already split
  into reasoning_content (what the shipped registry entries get): streams/s, CPU per event;
- --streams concurrent chat streams with --events events --event-interval apart, each stamped
  when it left the backend: per-event delay p50/p99, TTFB, and reads that held more than one
  event (coalescing).
Needs nginx + Lua (scripts/check_system.py) and wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from configs.registry import load_registry
from configs.render import dumps, router_config
from scripts import keys as keytool
from scripts.run_router import DEBIAN_LUA_MODULES, DEBIAN_MODULES, find_nginx, make_prefix

MODEL = "qwen"

BACKEND_CONF = r"""
{main}
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    lua_package_path "$prefix/?.lua;;";
    # Microsecond wall clock for the event stamps, shared by the handlers below.
    init_by_lua_block {{
        local ffi = require("ffi")
        ffi.cdef("typedef struct {{ long tv_sec; long tv_usec; }} bench_tv; int gettimeofday(bench_tv *tv, void *tz);")
        local tv = ffi.new("bench_tv")
        package.loaded.bench_clock = {{ now_us = function()
            ffi.C.gettimeofday(tv, nil)
            return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
        end }}
    }}
    client_body_temp_path temp/cb; proxy_temp_path temp/p; fastcgi_temp_path temp/f;
    uwsgi_temp_path temp/u; scgi_temp_path temp/s;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /health {{ return 200; }}
        location = /health_generate {{ return 200; }}
        location = /v1/chat/completions {{
            default_type application/json;
            if ($http_x_bench_stream) {{
                rewrite ^ /bench-chat-stream last;
            }}
            # Shaped as trtllm-serve answers (compact JSON, reasoning_content always a string).
            return 200 '{{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"ok","reasoning_content":"","tool_calls":[]}},"logprobs":null,"finish_reason":"stop","stop_reason":null}}],"usage":{{"prompt_tokens":5,"total_tokens":6,"completion_tokens":1}}}}';
        }}
        location = /bench-chat-stream {{
                content_by_lua_block {{
                    -- A thinking model's stream: <think>, reasoning, </think>, answer, cut in pieces;
                    -- with ?parsed=1 as trtllm's reasoning parser streams it (compact JSON,
                    -- model_dump_json(exclude_none=True) in tensorrt_llm/serve/postprocess_handlers.py).
                    local now_us = require("bench_clock").now_us
                    local pieces = {{ "<thi", "nk>\\n", "Let", " me", " think", ".\\n", "</th", "ink>", "\\n\\n", "The" }}
                    local parsed = {{ {{ "", "Let" }}, {{ "", " me" }}, {{ "", " think" }}, {{ "", "." }}, {{ "\\n\\nThe", "" }} }}
                    local interval = ngx.var.arg_fast and 0 or {interval}
                    ngx.header["Content-Type"] = "text/event-stream"
                    for i = 1, {events} do
                        if i > 1 and interval > 0 then ngx.sleep(interval) end
                        if ngx.var.arg_parsed then
                            local p = parsed[i] or {{ " word", "" }}
                            ngx.print('data: {{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","t":', now_us(),
                                ',"choices":[{{"index":0,"delta":{{"content":"', p[1], '","reasoning_content":"', p[2],
                                '"}},"finish_reason":null}}]}}\n\n')
                        else
                            local piece = pieces[i] or " word"
                            ngx.print('data: {{"id":"c","object":"chat.completion.chunk","t":', now_us(),
                                ',"choices":[{{"index":0,"delta":{{"content":"', piece, '"}},"finish_reason":null}}]}}\n\n')
                        end
                        ngx.flush(true)
                    end
                    ngx.print('data: {{"id":"c","choices":[{{"index":0,"delta":{{"content":""}},"finish_reason":"stop"}}]}}\n\n')
                    ngx.print('data: {{"id":"c","choices":[],"usage":{{"completion_tokens":{events}}}}}\n\n')
                    ngx.print("data: [DONE]\n\n")
                }}
        }}
        location = /v1/completions {{
            content_by_lua_block {{
                local now_us = require("bench_clock").now_us
                ngx.header["Content-Type"] = "text/event-stream"
                for i = 1, {events} do
                    if i > 1 then ngx.sleep({interval}) end
                    ngx.print('data: {{"i":', i, ',"t":', now_us(), ',"choices":[{{"index":0,"text":"tok"}}]}}\n\n')
                    ngx.flush(true)
                end
                ngx.print("data: [DONE]\n\n")
            }}
        }}
    }}
}}
"""

# The anchors' shared main and http settings.
ANCHOR_HEAD = r"""
{main}
worker_processes auto;
pid logs/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path temp/cb; proxy_temp_path temp/p; fastcgi_temp_path temp/f;
    uwsgi_temp_path temp/u; scgi_temp_path temp/s;
    keepalive_requests 10000;
    client_max_body_size 8m; client_body_buffer_size 8m;
"""

PLAIN_CONF = ANCHOR_HEAD + r"""
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            postpone_output 0;
        }}
    }}
}}
"""

MINIMAL_CONF = ANCHOR_HEAD + r"""
    # The floor of a Lua router: decode the body once, pick the peer in the balancer.
    upstream backend {{
        server 0.0.0.1;
        balancer_by_lua_block {{
            local ok, err = require("ngx.balancer").set_current_peer("127.0.0.1", {backend})
            if not ok then ngx.log(ngx.ERR, err) return ngx.exit(500) end
        }}
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            access_by_lua_block {{
                ngx.req.read_body()
                local req = require("cjson.safe").decode(ngx.req.get_body_data() or "")
                if type(req) ~= "table" or type(req.model) ~= "string" then return ngx.exit(400) end
            }}
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            postpone_output 0;
        }}
    }}
}}
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"%s","messages":[{"role":"user","content":"Say hello in one word."}],"max_tokens":8}'
""" % MODEL

# Streams from a thinking model; usage asked for, so pass-through really passes through.
WRK_STREAM_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Bench-Stream"] = "1"
wrk.body = '{"model":"%s","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'
""" % MODEL

# --messages-ab: one script for both APIs (wrk sets wrk.path from the URL before it runs this),
# the same question as WRK_SCRIPT / WRK_STREAM_SCRIPT asked through /v1/messages.
WRK_API_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local stream = os.getenv("BENCH_STREAM") == "1"
if stream then wrk.headers["X-Bench-Stream"] = "1" end
if string.find(wrk.path, "/v1/messages", 1, true) then
    wrk.body = stream and '{"model":"%(m)s","max_tokens":2048,"stream":true,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"hi"}]}'
        or '{"model":"%(m)s","max_tokens":8,"messages":[{"role":"user","content":"Say hello in one word."}]}'
else
    wrk.body = stream and '{"model":"%(m)s","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'
        or '{"model":"%(m)s","messages":[{"role":"user","content":"Say hello in one word."}],"max_tokens":8}'
end
""" % {"m": MODEL}

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Throughput:
    target: str
    kind: str            # "chat" (non-streaming), "stream raw", "stream parsed"
    concurrency: int
    req_per_s: float     # median over rounds (streams/s for streams)
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float
    cpu_us_per_event: float | None
    errors: int
    runs: list[float] = field(default_factory=list)


@dataclass
class Streaming:
    target: str
    streams: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    event_delay_p50_ms: float
    event_delay_p99_ms: float
    events: int
    coalesced_reads: int


@dataclass
class Report:
    throughput: list[Throughput] = field(default_factory=list)
    streaming: list[Streaming] = field(default_factory=list)
    notes: dict = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main_lines(needs_modules: bool) -> str:
    lines = [f"load_module {DEBIAN_MODULES / m};" for m in DEBIAN_LUA_MODULES] if needs_modules else []
    if os.geteuid() == 0:
        lines.append("user root;")
    return "\n".join(lines)


def start_nginx(binary: str, prefix: Path, conf_text: str | None = None,
                env: dict[str, str] | None = None) -> subprocess.Popen:
    if conf_text is not None:
        (prefix / "conf").mkdir(parents=True, exist_ok=True)
        (prefix / "logs").mkdir(exist_ok=True)
        (prefix / "temp").mkdir(exist_ok=True)
        (prefix / "conf" / "nginx.conf").write_text(conf_text)
    return subprocess.Popen([binary, "-p", f"{prefix}/", "-c", "conf/nginx.conf", "-g", "daemon off;"],
                            start_new_session=True, env={**os.environ, **(env or {})})


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:   # any answer: the anchors have no /health
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready in {timeout}s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of an nginx master and its workers (children), in seconds."""
    total = 0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])   # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> tuple[float, float, float, int, int]:
    """wrk --latency output -> (req/s, p50 ms, p99 ms, errors, requests)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * _UNITS[m.group(2)]

    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return rps, pct("50"), pct("99"), errors, requests


def run_wrk(url: str, concurrency: int, duration: float, script: Path) -> tuple[float, float, float, int, int]:
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Target:
    name: str
    url: str
    pid: int   # the nginx master whose CPU is counted (0: not counted)


class StatusPoller:
    """GET /status every `interval` seconds, as the status page does, while a run lasts."""

    def __init__(self, url: str, interval: float):
        self.url, self.interval = url + "/status", interval
        self.stop, self.polls, self.failures = threading.Event(), 0, 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.wait(self.interval):
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.polls += 1
                self.failures += not ok

    def __enter__(self) -> "StatusPoller":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        print(f"    GET /status polls: {self.polls}, failed: {self.failures}", flush=True)


def interleaved(targets: list[Target], kind: str, path: str, concurrency: list[int], rounds: int,
                duration: float, script: Path, events_per_stream: int = 0,
                during: dict[str, Callable[[], contextlib.AbstractContextManager]] | None = None) -> list[Throughput]:
    """Median req/s, p50/p99 and CPU per request of each target over `rounds` runs, the order
    rotating every round: a slow minute on a shared machine then lands on every target.
    `during[name]()` is entered around each of that target's runs (e.g. a status poller)."""
    during = during or {}
    out = []
    for c in concurrency:
        runs: dict[str, list[tuple]] = {t.name: [] for t in targets}
        for t in targets:
            run_wrk(t.url + path, c, 1, script)  # warm-up
        for i in range(rounds):
            for t in targets[i % len(targets):] + targets[:i % len(targets)]:
                cpu0 = cpu_seconds(t.pid) if t.pid else 0.0
                with during.get(t.name, contextlib.nullcontext)():
                    rps, p50, p99, errors, requests = run_wrk(t.url + path, c, duration, script)
                cpu = (cpu_seconds(t.pid) - cpu0) if t.pid else float("nan")
                runs[t.name].append((rps, p50, p99, errors, cpu * 1e6 / max(requests, 1)))
        for t in targets:
            rs = runs[t.name]
            cpu_req = statistics.median(r[4] for r in rs)
            out.append(Throughput(t.name, kind, c, statistics.median(r[0] for r in rs),
                                  statistics.median(r[1] for r in rs), statistics.median(r[2] for r in rs),
                                  cpu_req, cpu_req / events_per_stream if events_per_stream else None,
                                  sum(r[3] for r in rs), [round(r[0]) for r in rs]))
            print(f"  {kind:13s} {t.name:34s} c={c:<3d} req/s {' '.join(f'{r[0]:,.0f}' for r in rs)}"
                  f"  cpu/req {cpu_req:.1f} us", flush=True)
    return out


async def _stream_once(host: str, port: int, body: bytes, path: str) -> tuple[float, list[float], int, int]:
    """One streamed request on a raw socket -> (ttfb ms, per-event delay ms, events, reads holding >1 event)."""
    t0 = time.time()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 f"X-Bench-Stream: 1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()
    ttfb, delays, events, coalesced, buf = None, [], 0, 0, b""
    head_done = False
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        now = time.time()
        if ttfb is None:
            ttfb = (now - t0) * 1000
        buf += chunk
        if not head_done:
            if b"\r\n\r\n" not in buf:
                continue
            buf = buf.split(b"\r\n\r\n", 1)[1]
            head_done = True
        n = 0
        for m in re.finditer(rb'"t":([0-9.e+]+)', buf):   # Lua prints the stamp as 1.79e+15
            delays.append(now * 1000 - float(m.group(1)) / 1000)
            n += 1
        if n > 1:
            coalesced += 1
        events += n
        cut = buf.rfind(b"\n\n")
        buf = buf[cut + 2:] if cut >= 0 else buf
        if b"[DONE]" in chunk:
            break
    writer.close()
    return ttfb or float("nan"), delays, events, coalesced


def bench_streaming(target: str, url: str, streams: int, path: str) -> Streaming:
    """`streams` chat streams at once, each event stamped by the backend when it left."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": "hi"}]}).encode()

    async def run():
        await _stream_once(host, int(port), body, path)   # warm up
        return await asyncio.gather(*(_stream_once(host, int(port), body, path) for _ in range(streams)))

    results = asyncio.run(run())
    ttfbs = [r[0] for r in results]
    delays = [d for r in results for d in r[1]]
    return Streaming(target, streams, percentile(ttfbs, 50), percentile(ttfbs, 99), percentile(delays, 50),
                     percentile(delays, 99), sum(r[2] for r in results), sum(r[3] for r in results))


def callgrind(binary: str, prefix: Path, env: dict[str, str] | None, requests: int, path: str,
              body: bytes, headers: dict[str, str]) -> float:
    """Instructions (valgrind callgrind's Ir) one nginx process spends per request: the target
    runs as a single process (master_process off) under callgrind, warms up, has its counters
    zeroed, serves `requests` keep-alive requests one after another, and is dumped. Repeatable
    to a few percent where wall-clock figures on a shared machine swing by half."""
    port = 0
    for conf in (prefix / "conf").glob("*.conf"):
        text = conf.read_text()
        m = re.search(r"listen 127\.0\.0\.1:(\d+)", text)
        port = int(m.group(1)) if m else port
        # One process, no workers: reuseport would leave a second, unserved socket taking
        # half the connections.
        conf.write_text(text.replace(" reuseport", ""))
    out = prefix / "callgrind.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--smc-check=all-non-file", f"--callgrind-out-file={out}",
                             binary, "-p", f"{prefix}/", "-c", "conf/nginx.conf", "-g", "daemon off; master_process off;"],
                            start_new_session=True, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code != 503:
                    break   # any answer but "not ready yet" (a router probes its backend first)
            except httpx.HTTPError:
                pass
            if time.monotonic() > end or proc.poll() is not None:
                raise RuntimeError(f"{prefix.name} did not get ready under valgrind")
            time.sleep(0.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

        def one() -> None:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{prefix.name}: HTTP {resp.status}")

        for _ in range(50):
            one()
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        for _ in range(requests):
            one()
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        conn.close()
        dumps = sorted(prefix.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        text = dumps[-1].read_text(errors="replace")
        total = int(re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M).group(1))
        return total / requests
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_callgrind(args: argparse.Namespace, binary: str, needs_modules: bool, tmp: Path,
                  procs: list[subprocess.Popen]) -> dict[str, dict[str, float]]:
    """Instructions per request (chat) and per streamed event (parsed chat stream) of plain
    nginx, the minimal Lua router and the router (shipped registry entry, think splitting)."""
    bport = free_port()
    main_text = main_lines(needs_modules)
    procs.append(start_nginx(binary, tmp / "backend", BACKEND_CONF.format(
        main=main_text, port=bport, model=MODEL, events=args.events, interval=args.event_interval)))
    prefixes: dict[str, tuple[Path, dict | None]] = {}
    for name, conf in (("plain-nginx", PLAIN_CONF), ("minimal-lua", MINIMAL_CONF)):
        prefix = tmp / name
        for d in ("conf", "logs", "temp"):
            (prefix / d).mkdir(parents=True, exist_ok=True)
        (prefix / "conf" / "nginx.conf").write_text(conf.format(main=main_text, port=free_port(), backend=bport))
        prefixes[name] = (prefix, None)
    reg = load_registry()
    upstream = {reg.find(MODEL).id: [f"127.0.0.1:{bport}"]}
    variants = [("router (registry entry)", {}, None), ("router (think splitting)", {"mode": "tags"}, None),
                ("router (access log off)", {}, {"ROUTER_ACCESS_LOG": "off"}),
                ("router (metrics off)", {}, {"ROUTER_METRICS": "off"})]
    for name, reasoning, env in variants[:args.callgrind_variants]:
        cfg = router_config(reg, upstream)
        # Under valgrind a health probe takes far longer than its 1 s budget (no false "down"),
        # and probes every 2 s would land in the count: one at start, then none.
        cfg["health"] = {**cfg["health"], "interval_s": 3600.0, "timeout_s": 120.0, "generate_interval_s": 3600.0}
        for m in cfg["models"]:
            m["reasoning"] = {**m["reasoning"], **reasoning}
        prefix = tmp / name.replace(" ", "_").replace("(", "").replace(")", "")
        make_prefix(prefix, dumps(cfg), "127.0.0.1", free_port(), needs_modules)
        prefixes[name] = (prefix, env)
    wait_http(f"http://127.0.0.1:{bport}/health", procs[-1])
    chat = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello in one word."}],
                       "max_tokens": 8}).encode()
    stream = json.dumps({"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
                         "messages": [{"role": "user", "content": "hi"}]}).encode()
    per_stream = args.events + 3
    out: dict[str, dict[str, float]] = {}
    for name, (prefix, env) in prefixes.items():
        row = {"chat": callgrind(binary, prefix, env, args.callgrind, "/v1/chat/completions", chat, {})}
        path = "/v1/chat/completions?fast=1" + ("" if "think" in name else "&parsed=1")
        per = callgrind(binary, prefix, env, max(1, args.callgrind // 10), path, stream, {"X-Bench-Stream": "1"})
        row["stream_event"] = per / per_stream
        out[name] = row
        print(f"  {name:26s} Ir/request {row['chat']:,.0f}   Ir/streamed event {row['stream_event']:,.0f}",
              flush=True)
    for name, row in out.items():
        if name.startswith("router"):
            print(f"- {name}: {row['chat'] / out['plain-nginx']['chat']:.2f}x plain nginx's instructions per request, "
                  f"{row['chat'] / out['minimal-lua']['chat']:.2f}x the minimal Lua router's; per streamed event "
                  f"{row['stream_event'] / out['plain-nginx']['stream_event']:.2f}x plain nginx's")
    return out


def ratios(report: Report) -> list[str]:
    """Every router variant against plain nginx and the minimal Lua router, per kind and concurrency."""
    lines = []
    by = {(t.kind, t.target, t.concurrency): t for t in report.throughput}
    for (kind, name, c), t in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        if not name.startswith("router"):
            continue
        plain, minimal = by.get((kind, "plain-nginx", c)), by.get((kind, "minimal-lua", c))
        if not (plain or minimal):
            continue   # an A/B mode without the anchors: the table says it all
        parts = [f"{kind}, c={c}: {name}"]
        if plain:
            parts.append(f"{t.req_per_s / plain.req_per_s:.2f}x plain nginx's req/s, CPU/req "
                         f"{t.cpu_us_per_req / plain.cpu_us_per_req:.2f}x")
        if minimal:
            parts.append(f"{t.req_per_s / minimal.req_per_s:.2f}x the minimal Lua router's req/s, "
                         f"p50 {t.p50_ms - minimal.p50_ms:+.3f} ms")
        lines.append("- " + "; ".join(parts))
    return lines


def markdown(report: Report) -> str:
    lines = ["| kind | target | c | req/s (median) | p50 ms | p99 ms | CPU us/req | CPU us/event | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for t in report.throughput:
        per_event = f"{t.cpu_us_per_event:.2f}" if t.cpu_us_per_event is not None else ""
        lines.append(f"| {t.kind} | {t.target} | {t.concurrency} | {t.req_per_s:,.0f} | {t.p50_ms:.3f} | "
                     f"{t.p99_ms:.3f} | {t.cpu_us_per_req:.1f} | {per_event} | {t.errors} |")
    if report.streaming:
        lines += ["", "| target | streams at once | TTFB p50 ms | TTFB p99 ms | event delay p50 ms | "
                  "event delay p99 ms | events | coalesced reads |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s in report.streaming:
            lines.append(f"| {s.target} | {s.streams} | {s.ttfb_p50_ms:.3f} | {s.ttfb_p99_ms:.3f} | "
                         f"{s.event_delay_p50_ms:.3f} | {s.event_delay_p99_ms:.3f} | {s.events} | {s.coalesced_reads} |")
    lines += [""] + ratios(report)
    by = {(t.kind, t.target, t.concurrency): t for t in report.throughput}
    for c in sorted({t.concurrency for t in report.throughput}):
        a, b = by.get(("stream raw", "router (pass-through)", c)), by.get(("stream raw", "router (think splitting)", c))
        if a and b:
            lines.append(f"- stream raw, c={c}: think splitting keeps {b.req_per_s / a.req_per_s:.2f}x of pass-through "
                         f"streams/s")
    sd = {s.target: s for s in report.streaming}
    for name, s in sd.items():
        base = sd.get("direct (raw tags)" if name == "router (think splitting)" else "direct")
        if base and not name.startswith("direct"):
            lines.append(f"- {s.streams} streams at once: {name} adds {s.event_delay_p99_ms - base.event_delay_p99_ms:+.3f} ms "
                         f"event delay p99 over {base.target} ({s.coalesced_reads} coalesced reads; "
                         f"{base.target} {base.coalesced_reads})")
    return "\n".join(lines)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run (default: 3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved runs of every target; medians are reported (default: 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64],
                        help="wrk connection counts (default: 1 64)")
    parser.add_argument("--streams", type=int, default=64, help="chat streams at once for event delays (default: 64)")
    parser.add_argument("--events", type=int, default=20, help="SSE events per stream (default: 20)")
    parser.add_argument("--event-interval", type=float, default=0.01,
                        help="seconds between the backend's events in the delay test (default: 0.01)")
    parser.add_argument("--only", choices=["chat", "streams", "delays"], nargs="+", default=None,
                        help="run only these parts (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here (default: none)")
    parser.add_argument("--status-ab", type=int, default=0, metavar="ROUNDS",
                        help="only compare the router with and without the status page polling GET /status "
                             "every --poll-interval: ROUNDS interleaved wrk runs, medians (default: 0)")
    parser.add_argument("--poll-interval", type=float, nargs="+", default=[2.0],
                        help="seconds between status polls for --status-ab, one variant each (default: 2, "
                             "what one open page does)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="NGINX_DIR",
                        help="also run the registry-entry router from another tree's nginx/ (conf + Lua), "
                             "interleaved with the rest: before/after figures from one run (default: none)")
    parser.add_argument("--callgrind", type=int, default=0, metavar="REQUESTS",
                        help="instead: count instructions per request and per streamed event with valgrind's "
                             "callgrind over REQUESTS chat requests (REQUESTS/10 streams) per target (default: 0)")
    parser.add_argument("--callgrind-variants", type=int, default=4, choices=[2, 3, 4],
                        help="router variants under --callgrind: registry entry, think splitting, access log off, "
                             "metrics off (default: all 4)")
    parser.add_argument("--keys-ab", type=int, default=0, metavar="ROUNDS",
                        help="only compare the routing-only router with API keys (every limit set, never reached) "
                             "and admission control, with admission only (the shipped default), and with neither: "
                             "ROUNDS interleaved wrk runs (default: 0)")
    parser.add_argument("--messages-ab", type=int, default=0, metavar="ROUNDS",
                        help="only compare the same question as a chat completion and as an Anthropic Messages "
                             "request (translated both ways), whole and streamed: ROUNDS interleaved wrk runs "
                             "(default: 0)")
    parser.add_argument("--metrics-ab", type=int, default=0, metavar="ROUNDS",
                        help="only compare the router with metrics on, access log off and metrics off: ROUNDS "
                             "interleaved wrk runs of each at each --concurrency (default: 0, the full benchmark)")


def main(args: argparse.Namespace) -> int:
    if not shutil.which("wrk"):
        print("error: wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    binary, needs_modules = find_nginx()
    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    procs: list[subprocess.Popen] = []
    report = Report(notes={"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
                           "event_interval_s": args.event_interval, "nginx": binary, "rounds": args.rounds,
                           "duration_s": args.duration})
    parts = set(args.only or ["chat", "streams", "delays"])
    try:
        if args.callgrind:
            report.notes["callgrind_ir"] = run_callgrind(args, binary, needs_modules, tmp, procs)
            return finish(report, args)
        bport, pport, mport = free_port(), free_port(), free_port()
        main_text = main_lines(needs_modules)
        procs.append(start_nginx(binary, tmp / "backend", BACKEND_CONF.format(
            main=main_text, port=bport, model=MODEL, events=args.events, interval=args.event_interval)))
        procs.append(start_nginx(binary, tmp / "plain", PLAIN_CONF.format(main=main_text, port=pport, backend=bport)))
        procs.append(start_nginx(binary, tmp / "minimal", MINIMAL_CONF.format(main=main_text, port=mport,
                                                                                backend=bport)))
        reg = load_registry()
        model_id = reg.find(MODEL).id
        upstream = {model_id: [f"127.0.0.1:{bport}"]}

        def router_with(name: str, env: dict[str, str] | None = None, nginx_dir: Path | None = None,
                        admission: dict | None = None, **reasoning) -> Target:
            """A router whose bench model has its registry reasoning (and admission) settings
            changed; with nginx_dir, running that tree's conf and Lua (an older commit, for
            before/after)."""
            cfg = router_config(reg, upstream)
            for m in cfg["models"]:
                m["reasoning"] = {**m["reasoning"], **reasoning}
                m["admission"] = {**m["admission"], **(admission or {})}
            port = free_port()
            make_prefix(tmp / name, dumps(cfg), "127.0.0.1", port, needs_modules)
            if nginx_dir is not None:
                for f in (nginx_dir / "conf").glob("*.conf"):
                    if f.name != "listen.conf":
                        shutil.copy(f, tmp / name / "conf" / f.name)
                (tmp / name / "lua").unlink()
                (tmp / name / "lua").symlink_to(nginx_dir.resolve() / "lua", target_is_directory=True)
            procs.append(start_nginx(binary, tmp / name, env=env))
            return Target(name, f"http://127.0.0.1:{port}", procs[-1].pid)

        # The shipped registry entry (trtllm's parser splits, the router normalises; metrics and
        # access log on); routing alone (no shaping, no sampling defaults); the router splitting
        # think tags itself (mode: tags); the registry entry with metrics / the access log off.
        unset = {"temperature": None, "top_p": None, "top_k": None}
        shipped = router_with("router-registry")
        routing = router_with("router-routing", mode="none", sampling_thinking=unset, sampling_non_thinking=unset)
        think = router_with("router-think", mode="tags")
        quiet = router_with("router-quiet", env={"ROUTER_METRICS": "off"})
        nolog = router_with("router-nolog", env={"ROUTER_ACCESS_LOG": "off"})
        baseline = router_with("router-baseline", nginx_dir=args.baseline) if args.baseline else None
        direct = Target("direct", f"http://127.0.0.1:{bport}", 0)
        plain = Target("plain-nginx", f"http://127.0.0.1:{pport}", procs[1].pid)
        minimal = Target("minimal-lua", f"http://127.0.0.1:{mport}", procs[2].pid)
        extra = [baseline] if baseline else []
        for t in (direct, plain, minimal, shipped, routing, think, quiet, nolog, *extra):
            wait_http(t.url + "/health", procs[0] if t is direct else next(p for p in procs if p.pid == t.pid))
        names = {"router-registry": "router (registry entry)", "router-routing": "router (routing only)",
                 "router-think": "router (think splitting)", "router-quiet": "router (registry, metrics off)",
                 "router-nolog": "router (registry, access log off)",
                 "router-baseline": f"router (registry entry, {args.baseline})"}
        for t in (shipped, routing, think, quiet, nolog, *extra):
            t.name = names[t.name]

        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        if args.status_ab:
            ab, during = [routing], {}
            for interval in args.poll_interval:
                t = Target(f"{routing.name} + /status every {interval:g} s", routing.url, routing.pid)
                ab.append(t)
                during[t.name] = lambda interval=interval: StatusPoller(routing.url, interval)
            report.throughput = interleaved(ab, "chat", "/v1/chat/completions", args.concurrency, args.status_ab,
                                            args.duration, script, during=during)
            report.notes["loadavg_end"] = os.getloadavg()
            return finish(report, args)
        if args.keys_ab:
            secret = keytool.new_key()
            keytool.save(tmp / "keys.yaml", [keytool.Key("bench", keytool.hash_key(secret), None, rpm=10**9,
                                                         tpm=10**12, max_concurrent=10**6)])
            plain = {"mode": "none", "sampling_thinking": unset, "sampling_non_thinking": unset}
            keyed = router_with("router-keys", {"ROUTER_KEYS_FILE": str(tmp / "keys.yaml")}, **plain)
            bare = router_with("router-open", admission={"max_in_flight": 0}, **plain)
            for t in (keyed, bare):
                wait_http(t.url + "/livez", next(p for p in procs if p.pid == t.pid))
            keyed.name, bare.name = "router (keys + admission)", "router (no keys, no admission)"
            adm = Target("router (admission only)", routing.url, routing.pid)
            key_script = tmp / "post-key.lua"
            key_script.write_text(WRK_SCRIPT + 'wrk.headers["Authorization"] = "Bearer %s"\n' % secret)
            report.throughput = interleaved([keyed, adm, bare], "chat", "/v1/chat/completions", args.concurrency,
                                            args.keys_ab, args.duration, key_script)
            report.notes["loadavg_end"] = os.getloadavg()
            return finish(report, args)
        if args.messages_ab:
            api_script = tmp / "api.lua"
            api_script.write_text(WRK_API_SCRIPT)
            pairs = [Target(f"{shipped.name}: {api}", shipped.url + path, shipped.pid)
                     for api, path in (("chat", "/v1/chat/completions"), ("messages", "/v1/messages"))]
            report.throughput = interleaved(pairs, "chat", "", args.concurrency, args.messages_ab, args.duration,
                                            api_script)
            os.environ["BENCH_STREAM"] = "1"
            try:
                stream_pairs = [Target(t.name, t.url + "?fast=1&parsed=1", t.pid) for t in pairs]
                report.throughput += interleaved(stream_pairs, "stream parsed", "", args.concurrency,
                                                 args.messages_ab, args.duration, api_script, args.events + 3)
            finally:
                del os.environ["BENCH_STREAM"]
            report.notes["loadavg_end"] = os.getloadavg()
            return finish(report, args)
        if args.metrics_ab:
            report.throughput = interleaved([shipped, nolog, quiet], "chat", "/v1/chat/completions",
                                            args.concurrency, args.metrics_ab, args.duration, script)
            report.notes["loadavg_end"] = os.getloadavg()
            return finish(report, args)
        if "chat" in parts:
            report.throughput += interleaved([plain, minimal, shipped, routing, quiet, nolog, *extra], "chat",
                                             "/v1/chat/completions", args.concurrency, args.rounds, args.duration,
                                             script)
        if "streams" in parts:
            stream_script = tmp / "stream.lua"
            stream_script.write_text(WRK_STREAM_SCRIPT)
            per_stream = args.events + 3   # + finish chunk, usage chunk, [DONE]
            # Events the router leaves as they are: trtllm already split the reasoning.
            report.throughput += interleaved([plain, minimal, shipped, *extra], "stream parsed",
                                             "/v1/chat/completions?fast=1&parsed=1", args.concurrency, args.rounds,
                                             args.duration, stream_script, per_stream)
            # Raw tags in content: passed through (routing only) vs split by the router.
            routing.name = "router (pass-through)"
            report.throughput += interleaved([plain, routing, think], "stream raw", "/v1/chat/completions?fast=1",
                                             args.concurrency, args.rounds, args.duration, stream_script, per_stream)
        if "delays" in parts:
            parsed, raw = "/v1/chat/completions?parsed=1", "/v1/chat/completions"
            for name, t, path in (("direct", direct, parsed), ("plain-nginx", plain, parsed),
                                  ("router (registry entry)", shipped, parsed), ("direct (raw tags)", direct, raw),
                                  ("router (think splitting)", think, raw)):
                report.streaming.append(bench_streaming(name, t.url, args.streams, path))
        report.notes["loadavg_end"] = os.getloadavg()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGQUIT)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    return finish(report, args)


def finish(report: Report, args: argparse.Namespace) -> int:
    print(markdown(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(p)
    sys.exit(main(p.parse_args()))
