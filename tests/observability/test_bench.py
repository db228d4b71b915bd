"""scripts/bench.py: parsing and maths on scripted streams with known timings, then a real run."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from scripts import bench
from tests.conftest import QWEN, REPO


def chunk(content: str = "", reasoning: str | None = None, usage: dict | None = None, choices: bool = True) -> str:
    delta = {"content": content}
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    obj = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}] if choices else []}
    if usage:
        obj["usage"] = usage
    return "data: " + json.dumps(obj)


def scripted(times_and_lines):
    return [(t, line) for t, line in times_and_lines]


def test_a_stream_with_known_timings_gives_exact_ttft_itl_and_decode_speed():
    # role chunk at 0.05 carries no text; tokens at 0.2, 0.3, 0.5, 0.6; usage says 4 tokens.
    lines = scripted([
        (0.05, 'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'), (0.05, ""),
        (0.2, chunk("Hel")), (0.2, ""), (0.3, chunk("lo")), (0.5, chunk(reasoning="hmm")),
        (0.6, chunk(" world")), (0.61, chunk(choices=False, usage={"completion_tokens": 4})),
        (0.62, "data: [DONE]"),
    ])
    r = bench.consume_stream(lines, start=0.0)
    assert r.ok and r.error is None
    assert r.ttft == pytest.approx(0.2)
    assert r.itls == pytest.approx([0.1, 0.2, 0.1])
    assert r.output_tokens == 4
    assert r.decode_tps == pytest.approx(3 / 0.4)
    assert r.end == pytest.approx(0.62)


def test_keepalive_comments_crlf_and_other_fields_are_not_tokens():
    lines = scripted([(0.1, ": keep-alive"), (0.2, "event: message"), (0.3, chunk("a") + "\r\n"),
                      (0.4, "retry: 10"), (0.5, chunk("b")), (0.6, "data: [DONE]")])
    r = bench.consume_stream(lines, start=0.0)
    assert r.token_times == [0.3, 0.5]
    assert r.usage_tokens is None and r.output_tokens == 2


def test_usage_counts_win_over_chunk_counts_when_chunks_carry_several_tokens():
    lines = scripted([(1.0, chunk("ab")), (2.0, chunk("cd")), (2.0, chunk(choices=False, usage={"completion_tokens": 9}))])
    r = bench.consume_stream(lines, start=0.5)
    assert r.output_tokens == 9 and r.decode_tps == pytest.approx(8.0)


def test_an_empty_stream_an_error_event_and_bad_json_are_errors():
    assert bench.consume_stream([(0.1, "data: [DONE]")], 0.0).error == "no tokens in stream"
    err = bench.consume_stream([(0.1, 'data: {"error": {"message": "boom"}}')], 0.0)
    assert not err.ok and "boom" in err.error
    assert "bad SSE data" in bench.consume_stream([(0.1, "data: {nope")], 0.0).error


def test_percentiles_interpolate_linearly():
    vals = [float(x) for x in range(1, 101)]
    assert bench.percentile(vals, 50) == pytest.approx(50.5)
    assert bench.percentile(vals, 99) == pytest.approx(99.01)
    assert bench.percentile([7.0], 99) == 7.0
    assert bench.percentile([], 50) is None


def test_a_level_summary_pools_latencies_and_counts_errors():
    def req(start, times, tokens=None):
        return bench.RequestResult(start=start, end=times[-1], token_times=times, usage_tokens=tokens)
    results = [req(0.0, [0.1, 0.2, 0.3]), req(0.0, [0.3, 0.5, 0.7, 0.9]),
               bench.RequestResult(start=0.0, end=0.1, error="HTTP 503: down")]
    s = bench.summarize("sweep", "en", 2, 4, results, wall_s=1.0)
    assert (s.requests, s.errors, s.output_tokens) == (3, 1, 7)
    assert s.total_tps == pytest.approx(7.0)
    assert s.session_tps == pytest.approx((2 / 0.2 + 3 / 0.6) / 2)
    assert s.ttft_p50_ms == pytest.approx(200.0)
    assert s.itl_p50_ms == pytest.approx(200.0)  # gaps 100, 100, 200, 200, 200 ms
    assert s.itl_p99_ms == pytest.approx(200.0)


def test_prompts_are_fixed_by_seed_and_language():
    assert bench.make_prompt("en", 1, 16) == bench.make_prompt("en", 1, 16)
    assert bench.make_prompt("en", 1, 16) != bench.make_prompt("en", 2, 16)
    ja = bench.make_prompt("ja", 1, 16)
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in ja)
    with pytest.raises(ValueError):
        bench.make_prompt("xx", 1, 4)


def test_compare_puts_matching_rows_side_by_side_with_ratios():
    row = {"phase": "sweep", "lang": "en", "concurrency": 4, "output_len": 64, "total_tps": 100.0,
           "session_tps": 25.0, "ttft_p50_ms": 10.0, "itl_p50_ms": 2.0, "itl_p99_ms": 4.0}
    a = {"label": "router", "model": "m", "rows": [row]}
    b = {"label": "direct", "model": "m", "rows": [{**row, "total_tps": 110.0}]}
    table = bench.compare_tables(a, b)
    assert "A = router, B = direct" in table
    assert "| sweep | en | 4 | 64 | total tok/s | 100.0 | 110.0 | 1.10 |" in table


def test_bad_flag_values_are_refused_with_a_message():
    parser = argparse.ArgumentParser()
    bench.add_cli_args(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--concurrency", "1,x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--langs", "en,fr"])


def test_a_run_against_the_fake_backend_writes_tables_json_csv_and_plots(fake_backend, tmp_path):
    fb = fake_backend(QWEN, args=["--output-tokens", "2048", "--token-interval", "0.001"])
    out = tmp_path / "run"
    cmd = [sys.executable, "scripts/bench.py", "--url", fb.url + "/v1", "--model", "qwen",
           "--single-lengths", "16,32", "--single-requests", "2", "--concurrency", "1,4",
           "--sweep-output-len", "16", "--langs", "en,ja", "--out-dir", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "### Single stream" in proc.stdout and "### Concurrency sweep" in proc.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["model"] == "qwen"
    rows = doc["rows"]
    assert [(r["phase"], r["lang"], r["concurrency"], r["output_len"]) for r in rows] == [
        ("single", "en", 1, 16), ("single", "en", 1, 32), ("sweep", "en", 1, 16), ("sweep", "en", 4, 16),
        ("single", "ja", 1, 16), ("single", "ja", 1, 32), ("sweep", "ja", 1, 16), ("sweep", "ja", 4, 16)]
    assert all(r["errors"] == 0 for r in rows)
    # ignore_eos + max_tokens: every request produced exactly the requested length (usage from the fake).
    assert all(r["output_tokens"] == r["requests"] * r["output_len"] for r in rows)
    assert rows[3]["requests"] == 8
    sent = [b for b in fb.requests() if b.get("stream")]
    assert all(b["model"] == "qwen" and b["ignore_eos"] is True and b["stream_options"]["include_usage"] for b in sent)
    for name in ("results.csv", "results.md", "single_stream.png", "sweep_throughput.png", "sweep_latency.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "single_stream.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    cmp_out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--compare", str(out / "results.json"),
                           str(out / "results.json"), "--out-dir", str(cmp_out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "| 1.00 |" in proc.stdout and (cmp_out / "sweep_throughput.png").exists()
