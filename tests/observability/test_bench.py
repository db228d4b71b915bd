"""scripts/bench.py: parsing and maths on scripted streams with known timings, then a real run."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import httpx
import pytest

from scripts import bench
from tests.conftest import QWEN, REPO, FakeBackend, free_port
from tests.fakes.tiny_tokenizer import write_tiny_tokenizer


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
    with pytest.raises(SystemExit):
        parser.parse_args(["--depths", "0,-1"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--phases", "single,warp"])
    assert parser.parse_args(["--depths", "0,4096"]).depths == [0, 4096]


def test_a_run_against_the_fake_backend_writes_tables_json_csv_and_plots(fake_backend, tmp_path):
    fb = fake_backend(QWEN, args=["--output-tokens", "2048", "--token-interval", "0.001"])
    out = tmp_path / "run"
    cmd = [sys.executable, "scripts/bench.py", "--url", fb.url + "/v1", "--model", "qwen",
           "--single-lengths", "16,32", "--single-requests", "2", "--concurrency", "1,4",
           "--sweep-output-len", "16", "--langs", "en,ja", "--phases", "single,sweep", "--out-dir", str(out), "--quiet"]
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


# ---------------------------------------------------------------------------- depth (llama-benchy style)

@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    return write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_prompts_built_with_the_tokenizer_have_exactly_the_asked_token_count(tiny_tokenizer):
    prompts = bench.load_tokenizer([str(tiny_tokenizer)])
    assert prompts is not None and prompts.counting == f"tokenizer {tiny_tokenizer}"
    for n in (17, 100, 1000, 5000):
        text = prompts.text("[run1-d0-r0]", n, seed=3)
        assert text.startswith("[run1-d0-r0] ")
        assert prompts.estimate(text) == n
    with pytest.raises(ValueError, match="head alone"):
        prompts.text("[a long unique head for the prompt]", 3, seed=3)


def test_no_tokenizer_found_means_none_and_none_is_never_looked_up(tmp_path):
    assert bench.load_tokenizer([str(tmp_path / "missing"), "no-such-org/no-such-model"]) is None
    assert bench.tokenizer_names("qwen", "none") == []
    # A registry alias resolves to the checkpoint id, then its source repo, then the name itself.
    assert bench.tokenizer_names("qwen", None) == ["nvidia/Qwen3-30B-A3B-FP4", "Qwen/Qwen3-30B-A3B", "qwen"]


def test_calibrated_prompts_scale_words_by_the_measured_rate():
    prompts = bench.CalibratedPrompts(rate=2.0)
    text = prompts.text("[h]", 200, seed=1)
    assert len(text.split()) == 100 and prompts.estimate(text) == 200.0
    with pytest.raises(ValueError, match="did not grow"):
        bench.CalibratedPrompts(rate=0.0)


def test_depth_layout_puts_the_unique_head_first_and_the_template_cost_on_the_user_turn():
    prompts = bench.CalibratedPrompts(rate=1.0)
    msgs = bench.depth_messages(prompts, "[x-1]", 50, 20, 5, seed=1)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"].startswith("[x-1] ") and len(msgs[0]["content"].split()) == 50
    assert len(msgs[1]["content"].split()) == 15
    only = bench.depth_messages(prompts, "[x-2]", 0, 20, 5, seed=1)
    assert len(only) == 1 and only[0]["content"].startswith("[x-2] ") and len(only[0]["content"].split()) == 15


def test_pp_and_tg_speeds_at_depth_follow_llama_benchy_definitions():
    runs = [bench.DepthRun(prompt_tokens=1000, ttfr=0.6, e2e_ttft=0.61, tg_tps=40.0, cached_tokens=0),
            bench.DepthRun(prompt_tokens=1000, ttfr=1.1, e2e_ttft=1.12, tg_tps=60.0, cached_tokens=0),
            bench.DepthRun(prompt_tokens=0, ttfr=None, e2e_ttft=None, tg_tps=None, error="HTTP 503: down")]
    b = bench.depth_benchmark(4096, 1000, 32, runs, latency=0.1)
    # est_ppt = ttfr - latency: 0.5 s and 1.0 s; pp t/s = prompt tokens / est_ppt.
    assert b["pp_throughput"]["values"] == pytest.approx([2000.0, 1000.0])
    assert b["pp_throughput"]["mean"] == pytest.approx(1500.0) and b["pp_throughput"]["std"] == pytest.approx(500.0)
    assert b["tg_throughput"]["mean"] == pytest.approx(50.0)
    assert b["est_ppt"]["values"] == pytest.approx([500.0, 1000.0])
    assert (b["runs"], b["errors"], b["first_error"]) == (3, 1, "HTTP 503: down")
    doc = {"model": "m", "benchmarks": [bench.depth_benchmark(0, 1000, 32, runs[:2], 0.1), b]}
    table = bench.depth_table(doc)
    assert "| model | test | t/s | ttfr (ms) | est_ppt (ms) | e2e_ttft (ms) |" in table
    assert "| m | pp1000 | 1500.00 ± 500.00 | 850.00 ± 250.00 | 750.00 ± 250.00 | 865.00 ± 255.00 |" in table
    assert "| m | tg32 @ d4096 | 50.00 ± 10.00 |  |  |  |" in table
    faster = {"model": "m", "benchmarks": [{**b, "tg_throughput": bench.metric([100.0])}]}
    assert "| tg32 @ d4096 | 50.00 | 100.00 | 2.00 |" in bench.compare_depth({"benchmarks": [b]}, faster)


@pytest.fixture(scope="module")
def tokenizing_fake(tiny_tokenizer):
    """One fake that counts prompts with the tiny tokenizer and imitates KV block reuse."""
    fb = FakeBackend(free_port(), QWEN, ["--tokenizer", str(tiny_tokenizer), "--output-tokens", "64"]).start()
    yield fb
    fb.stop()


def test_the_fake_reuses_kv_blocks_of_a_repeated_prefix(tokenizing_fake):
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": bench.filler(99, 200)}]}
    first = httpx.post(tokenizing_fake.url + "/v1/chat/completions", json=body, timeout=10).json()["usage"]
    again = httpx.post(tokenizing_fake.url + "/v1/chat/completions", json=body, timeout=10).json()["usage"]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert again["prompt_tokens_details"]["cached_tokens"] == again["prompt_tokens"] // 32 * 32 > 0


def run_bench(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench.add_cli_args(parser)
    return bench.main(parser.parse_args(argv))


@pytest.mark.parametrize("tokenizer", ["dir", "none"])
def test_depth_runs_hit_the_asked_token_counts_with_nothing_reused(tokenizing_fake, tiny_tokenizer, tmp_path,
                                                                   tokenizer, capsys):
    fb = tokenizing_fake
    out = tmp_path / "depth"
    seen = len(fb.requests())
    assert run_bench(["--url", fb.url + "/v1", "--model", "qwen", "--phases", "depth", "--depths", "0,300,2000",
                      "--pp", "64", "--tg", "8", "--depth-runs", "2", "--out-dir", str(out), "--latency-mode", "none",
                      "--tokenizer", str(tiny_tokenizer) if tokenizer == "dir" else "none", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    doc = json.loads((out / "depth.json").read_text())
    assert {"version", "timestamp", "latency_mode", "latency_ms", "model", "max_concurrency", "benchmarks"} <= set(doc)
    assert [(b["context_size"], b["prompt_size"], b["response_size"]) for b in doc["benchmarks"]] == [
        (0, 64, 8), (300, 64, 8), (2000, 64, 8)]
    for b in doc["benchmarks"]:
        assert b["errors"] == 0 and b["cached_tokens"] == [0, 0]
        assert len(b["pp_throughput"]["values"]) == 2 and b["tg_throughput"]["mean"] > 0
        target = b["context_size"] + b["prompt_size"]
        if tokenizer == "dir":
            assert b["prompt_tokens"] == [target, target]
        else:  # calibrated to the word: within a few tokens of the target
            assert all(abs(n - target) <= 8 for n in b["prompt_tokens"]), b["prompt_tokens"]
    assert ("tokenizer" if tokenizer == "dir" else "calibrated") in doc["token_counting"]
    assert "| qwen | pp64 @ d2000 |" in (out / "depth.md").read_text() and "| qwen | tg8 @ d300 |" in stdout
    assert json.loads((out / "results.json").read_text())["depth"] == doc
    assert (out / "speed_vs_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every generation request opened with its own head: no two share a prefix the cache could reuse.
    bodies = [json.loads(r["body"]) for r in fb.requests()[seen:]]
    heads = [b["messages"][0]["content"].split()[0] for b in bodies if b.get("max_tokens") == 8]
    assert len(heads) == 6 and len(set(heads)) == 6
