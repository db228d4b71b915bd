"""Router overhead benchmark: the router vs direct access vs plain nginx proxy_pass, one run.

Usage:
    python scripts/bench_router.py                     # prints a markdown table
    python scripts/bench_router.py --duration 10 --out results/bench_router.json
    python scripts/bench_router.py --metrics-ab 5      # metrics on / access log off / metrics off only
    python scripts/bench_router.py --status-ab 5 --poll-interval 2 0.1   # with the status page polling

Everything runs on loopback. The backend is nginx itself (not Python), so the numbers show
what the router adds, not what a slow fake costs:
- POST /v1/chat/completions answers a fixed chat.completion (non-streaming, wrk measures
  req/s and p50/p99 latency at each --concurrency);
- POST /v1/completions streams --events SSE events --event-interval apart, each stamped with
  the time it left the backend, so the client sees each event's delay through each path,
  the time to first byte, and whether two events ever arrived in one read (coalescing).
Needs nginx + Lua (scripts/check_system.py) and wrk.
"""

from __future__ import annotations

import argparse
import contextlib
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
            return 200 '{{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"ok"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}}}';
        }}
        location = /bench-chat-stream {{
                content_by_lua_block {{
                    -- A thinking model's stream: <think>, reasoning, </think>, answer, cut in pieces.
                    local now_us = require("bench_clock").now_us
                    local pieces = {{ "<thi", "nk>\\n", "Let", " me", " think", ".\\n", "</th", "ink>", "\\n\\n", "The" }}
                    local interval = ngx.var.arg_fast and 0 or {interval}
                    ngx.header["Content-Type"] = "text/event-stream"
                    for i = 1, {events} do
                        if i > 1 and interval > 0 then ngx.sleep(interval) end
                        local piece = pieces[i] or " word"
                        ngx.print('data: {{"id":"c","object":"chat.completion.chunk","t":', now_us(),
                            ',"choices":[{{"index":0,"delta":{{"content":"', piece, '"}},"finish_reason":null}}]}}\n\n')
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

PLAIN_CONF = r"""
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


@dataclass
class Throughput:
    target: str
    concurrency: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


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
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready in {timeout}s")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> tuple[float, float, float, int]:
    """wrk --latency output -> (req/s, p50 ms, p99 ms, errors)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

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
    return rps, pct("50"), pct("99"), errors


def run_wrk(url: str, concurrency: int, duration: float, script: Path) -> tuple[float, float, float, int]:
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


def stream_once(client: httpx.Client, url: str, chat: bool = False) -> tuple[float, list[float], int, int]:
    """One streamed request -> (ttfb ms, per-event delay ms, events, reads holding >1 event)."""
    if chat:
        path, headers = "/v1/chat/completions", {"X-Bench-Stream": "1"}
        body = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "hi"}]}
    else:
        path, headers = "/v1/completions", {}
        body = {"model": MODEL, "prompt": "hi", "stream": True, "max_tokens": 16}
    t0 = time.time()
    ttfb, delays, events, coalesced, buf = None, [], 0, 0, b""
    with client.stream("POST", url + path, json=body, headers=headers) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_raw():
            now = time.time()
            if ttfb is None:
                ttfb = (now - t0) * 1000
            buf += chunk
            complete = buf.count(b"\n\n")
            if complete > 1:
                coalesced += 1
            *done, buf = buf.split(b"\n\n")
            for ev in done:
                if ev.startswith(b"data: {"):
                    sent_us = json.loads(ev[6:]).get("t")
                    if sent_us is not None:
                        delays.append(now * 1000 - sent_us / 1000)
                    events += 1
    return ttfb or float("nan"), delays, events, coalesced


def bench_streaming(target: str, url: str, streams: int, chat: bool = False) -> Streaming:
    ttfbs, delays, events, coalesced = [], [], 0, 0
    with httpx.Client(timeout=30) as client:
        stream_once(client, url, chat)  # warm up connections
        for _ in range(streams):
            t, d, n, c = stream_once(client, url, chat)
            ttfbs.append(t)
            delays += d
            events += n
            coalesced += c
    return Streaming(target, streams, percentile(ttfbs, 50), percentile(ttfbs, 99),
                     percentile(delays, 50), percentile(delays, 99), events, coalesced)


def markdown(report: Report) -> str:
    lines = ["| target | concurrency | req/s | p50 ms | p99 ms | errors |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for t in report.throughput:
        lines.append(f"| {t.target} | {t.concurrency} | {t.req_per_s:,.0f} | {t.p50_ms:.3f} | {t.p99_ms:.3f} | {t.errors} |")
    lines += ["", "| target | streams | TTFB p50 ms | TTFB p99 ms | event delay p50 ms | event delay p99 ms | events | coalesced reads |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in report.streaming:
        lines.append(f"| {s.target} | {s.streams} | {s.ttfb_p50_ms:.3f} | {s.ttfb_p99_ms:.3f} | "
                     f"{s.event_delay_p50_ms:.3f} | {s.event_delay_p99_ms:.3f} | {s.events} | {s.coalesced_reads} |")
    by = {(t.target, t.concurrency): t for t in report.throughput}
    lines.append("")
    for c in sorted({t.concurrency for t in report.throughput}):
        d, r, p = by.get(("direct", c)), by.get(("router", c)), by.get(("plain-nginx", c))
        if d and r and p:
            lines.append(f"- c={c}: router adds {r.p50_ms - d.p50_ms:+.3f} ms p50 over direct "
                         f"(plain nginx {p.p50_ms - d.p50_ms:+.3f} ms); router throughput = "
                         f"{100 * r.req_per_s / p.req_per_s:.1f}% of plain nginx")
    for c in sorted({t.concurrency for t in report.throughput}):
        on, off = by.get(("router", c)), by.get(("router (metrics off)", c))
        if on and off:
            lines.append(f"- c={c}: metrics + access log on cost {on.p50_ms - off.p50_ms:+.3f} ms p50 and keep "
                         f"{100 * on.req_per_s / off.req_per_s:.1f}% of the metrics-off throughput")
        nolog = by.get(("router (access log off)", c))
        if nolog and off:
            lines.append(f"- c={c}: metrics alone (access log off) cost {nolog.p50_ms - off.p50_ms:+.3f} ms p50 and keep "
                         f"{100 * nolog.req_per_s / off.req_per_s:.1f}% of the metrics-off throughput")
    sd = {s.target: s for s in report.streaming}
    for c in sorted({t.concurrency for t in report.throughput}):
        a, b = by.get(("router (pass-through), chat streams", c)), by.get(("router (think splitting), chat streams", c))
        if a and b:
            lines.append(f"- c={c}: think splitting keeps {100 * b.req_per_s / a.req_per_s:.1f}% of pass-through "
                         f"stream throughput")
    if "direct (chat)" in sd and "router (think splitting)" in sd:
        lines.append(f"- think splitting: event delay p99 {sd['router (think splitting)'].event_delay_p99_ms:.3f} ms "
                     f"vs direct {sd['direct (chat)'].event_delay_p99_ms:.3f} ms (+"
                     f"{sd['router (think splitting)'].event_delay_p99_ms - sd['direct (chat)'].event_delay_p99_ms:.3f} ms)")
    if "direct" in sd and "router" in sd:
        lines.append(f"- streaming: router adds {sd['router'].ttfb_p50_ms - sd['direct'].ttfb_p50_ms:+.3f} ms TTFB p50, "
                     f"{sd['router'].event_delay_p99_ms - sd['direct'].event_delay_p99_ms:+.3f} ms event delay p99 "
                     f"(router p99 {sd['router'].event_delay_p99_ms:.3f} ms); coalesced reads via router: "
                     f"{sd['router'].coalesced_reads}")
    return "\n".join(lines)


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


def metrics_ab(targets: dict[str, str], concurrency: list[int], rounds: int, duration: float,
               script: Path, during: dict[str, Callable[[], contextlib.AbstractContextManager]] | None = None,
               ) -> list[Throughput]:
    """Median req/s and p50/p99 of each target over `rounds` runs, the targets' order rotating
    every round: a slow minute on a shared machine then lands on every target, not on one.
    `during[name]()` is entered around each of that target's runs (e.g. a status poller)."""
    out = []
    names = list(targets)
    during = during or {}
    for c in concurrency:
        runs: dict[str, list[tuple[float, float, float, int]]] = {n: [] for n in names}
        for name in names:
            run_wrk(targets[name] + "/v1/chat/completions", c, 1, script)  # warm-up
        for i in range(rounds):
            for name in names[i % len(names):] + names[:i % len(names)]:
                with during.get(name, contextlib.nullcontext)():
                    runs[name].append(run_wrk(targets[name] + "/v1/chat/completions", c, duration, script))
        for name in names:
            rs = runs[name]
            out.append(Throughput(name, c, statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                                  statistics.median(r[2] for r in rs), sum(r[3] for r in rs)))
            print(f"  {name:24s} c={c:<3d} req/s {' '.join(f'{r[0]:,.0f}' for r in rs)}", flush=True)
    return out


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default: 5)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64],
                        help="wrk connection counts (default: 1 64)")
    parser.add_argument("--streams", type=int, default=30, help="streamed requests per target (default: 30)")
    parser.add_argument("--events", type=int, default=20, help="SSE events per stream (default: 20)")
    parser.add_argument("--event-interval", type=float, default=0.01,
                        help="seconds between the backend's events (default: 0.01)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here (default: none)")
    parser.add_argument("--metrics-ab", type=int, default=0, metavar="ROUNDS",
                        help="only compare the router with metrics on, access log off and metrics off: ROUNDS "
                             "interleaved wrk runs of each at each --concurrency, medians reported, so a noisy "
                             "machine slows all three alike (default: 0, the full benchmark)")
    parser.add_argument("--status-ab", type=int, default=0, metavar="ROUNDS",
                        help="only compare the router with and without the status page polling GET /status "
                             "every --poll-interval: ROUNDS interleaved wrk runs, medians (default: 0)")
    parser.add_argument("--poll-interval", type=float, nargs="+", default=[2.0],
                        help="seconds between status polls for --status-ab, one variant each (default: 2, "
                             "what one open page does)")


def main(args: argparse.Namespace) -> int:
    if not shutil.which("wrk"):
        print("error: wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    binary, needs_modules = find_nginx()
    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    procs: list[subprocess.Popen] = []
    report = Report(notes={"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
                           "event_interval_s": args.event_interval, "nginx": binary})
    try:
        bport, pport = free_port(), free_port()
        main_text = main_lines(needs_modules)
        procs.append(start_nginx(binary, tmp / "backend", BACKEND_CONF.format(
            main=main_text, port=bport, model=MODEL, events=args.events, interval=args.event_interval)))
        procs.append(start_nginx(binary, tmp / "plain", PLAIN_CONF.format(main=main_text, port=pport, backend=bport)))
        reg = load_registry()
        model_id = reg.find(MODEL).id
        upstream = {model_id: [f"127.0.0.1:{bport}"]}

        def router_with(name: str, env: dict[str, str] | None = None, **reasoning) -> str:
            """A router prefix whose bench model has its registry reasoning settings changed."""
            cfg = router_config(reg, upstream)
            for m in cfg["models"]:
                m["reasoning"] = {**m["reasoning"], **reasoning}
            port = free_port()
            make_prefix(tmp / name, dumps(cfg), "127.0.0.1", port, needs_modules)
            procs.append(start_nginx(binary, tmp / name, env=env))
            return f"http://127.0.0.1:{port}"

        # Routing alone (no reasoning shaping, no sampling defaults); the shipped registry
        # entry (trtllm's parser splits, the router normalises); the router splitting tags.
        unset = {"temperature": None, "top_p": None, "top_k": None}
        router_url = router_with("router", mode="none", sampling_thinking=unset, sampling_non_thinking=unset)
        shaped_url = router_with("router-registry")
        think_url = router_with("router-think", mode="tags")
        # The same routing-only router with metrics and the access log off (ROUTER_METRICS=off).
        quiet_url = router_with("router-quiet", env={"ROUTER_METRICS": "off"}, mode="none",
                                sampling_thinking=unset, sampling_non_thinking=unset)
        # Metrics on, access log off: splits the cost between the counters and the log line.
        nolog_url = router_with("router-nolog", env={"ROUTER_ACCESS_LOG": "off"}, mode="none",
                                sampling_thinking=unset, sampling_non_thinking=unset)
        targets = {"direct": f"http://127.0.0.1:{bport}", "router": router_url,
                   "plain-nginx": f"http://127.0.0.1:{pport}", "router (registry entry)": shaped_url,
                   "router (metrics off)": quiet_url, "router (access log off)": nolog_url}
        for proc, url in zip(procs, [targets["direct"], targets["plain-nginx"], router_url, shaped_url, think_url,
                                     quiet_url, nolog_url]):
            wait_http(url + "/health", proc)

        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        if args.status_ab:
            ab = {"router": router_url}
            during = {}
            for interval in args.poll_interval:
                name = f"router + /status every {interval:g} s"
                ab[name] = router_url
                during[name] = lambda interval=interval: StatusPoller(router_url, interval)
            report.throughput = metrics_ab(ab, args.concurrency, args.status_ab, args.duration, script, during)
            report.notes["loadavg_end"] = os.getloadavg()
            return finish(report, args)
        if args.metrics_ab:
            ab = {name: targets[name] for name in ("router", "router (access log off)", "router (metrics off)")}
            report.throughput = metrics_ab(ab, args.concurrency, args.metrics_ab, args.duration, script)
            report.notes["loadavg_end"] = os.getloadavg()
            return finish(report, args)
        for c in args.concurrency:
            for name, url in targets.items():
                run_wrk(url + "/v1/chat/completions", c, 1, script)  # warm-up
                rps, p50, p99, errors = run_wrk(url + "/v1/chat/completions", c, args.duration, script)
                report.throughput.append(Throughput(name, c, rps, p50, p99, errors))
                print(f"  {name:12s} c={c:<3d} {rps:10,.0f} req/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms", flush=True)
        for name in ("direct", "router", "plain-nginx", "router (metrics off)"):
            report.streaming.append(bench_streaming(name, targets[name], args.streams))

        # Think splitting: chat streams of a thinking model, pass-through vs the router splitting.
        stream_script = tmp / "stream.lua"
        stream_script.write_text(WRK_STREAM_SCRIPT)
        think_targets = {"router (pass-through)": targets["router"], "router (think splitting)": think_url}
        for c in args.concurrency:
            for name, url in think_targets.items():
                run_wrk(url + "/v1/chat/completions?fast=1", c, 1, stream_script)
                rps, p50, p99, errors = run_wrk(url + "/v1/chat/completions?fast=1", c, args.duration, stream_script)
                report.throughput.append(Throughput(name + ", chat streams", c, rps, p50, p99, errors))
                print(f"  {name:26s} c={c:<3d} {rps:10,.0f} streams/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms", flush=True)
        for name, url in {"direct (chat)": targets["direct"], **think_targets}.items():
            report.streaming.append(bench_streaming(name, url, args.streams, chat=True))
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
