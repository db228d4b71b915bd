"""scripts/smoke.py and scripts/wait_healthy.py against the real router and fake trtllm-serve."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import NEMOTRON, QWEN, FakeBackend, free_port, wait_for
from scripts import wait_healthy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def thinking_stack(router):
    """Both models with fakes that think like the real ones, behind the router."""
    qwen = FakeBackend(free_port(), QWEN, ["--think-style", "qwen3", "--reasoning-parser", "qwen3"]).start()
    nemo = FakeBackend(free_port(), NEMOTRON, ["--think-style", "nemotron", "--reasoning-parser", "nano-v3"]).start()
    r = router({"qwen": [qwen.addr], "nemotron": [nemo.addr]}, allow_log=r"executor|upstream|recv\(\) failed")
    wait_for(lambda: r.health()["status"] == "ready", "both ready", 20, r.proc)
    yield r, qwen, nemo
    qwen.stop()
    nemo.stop()


def script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_smoke_passes_every_check_on_a_healthy_deployment(thinking_stack):
    r, _, _ = thinking_stack
    out = script("smoke.py", "--url", r.url + "/v1")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if " PASS " in line]
    assert len(rows) == 12 and "12/12 checks passed" in out.stdout
    for check in ("listed and ready", "stream, thinking on", "structured output (json_schema)"):
        assert sum(check in row for row in rows) == 2


def test_smoke_reports_a_broken_model_as_failed_and_exits_1(thinking_stack):
    r, qwen, _ = thinking_stack
    qwen.control(generate_ok=False)
    out = script("smoke.py", "--url", r.url + "/v1", "--model", "qwen")
    assert out.returncode == 1
    fails = [line for line in out.stdout.splitlines() if " FAIL " in line]
    assert fails and all(QWEN in line for line in fails)
    assert NEMOTRON not in out.stdout, "--model limits the run"


def test_smoke_without_a_router_exits_2_with_a_message():
    out = script("smoke.py", "--url", f"http://127.0.0.1:{free_port()}/v1")
    assert out.returncode == 2 and "cannot list models" in out.stderr


def test_wait_healthy_follows_a_model_from_loading_to_ready(router):
    port = free_port()
    r = router({"qwen": [f"127.0.0.1:{port}"]}, allow_log="connect|refused")
    late = FakeBackend(port, QWEN, ["--load-seconds", "1.5"])
    late.start(wait=False)
    try:
        out = script("wait_healthy.py", "--url", r.url, "--timeout", "30", "--interval", "0.2")
    finally:
        late.stop()
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    assert "starting" in lines[0] and f"{QWEN}: ready" in lines[-2] and lines[-1].startswith("all ready")


def test_wait_healthy_times_out_naming_the_model_and_its_reason(router):
    r = router({"qwen": [f"127.0.0.1:{free_port()}"]}, allow_log="connect|refused")
    buf = io.StringIO()
    rc = wait_healthy.wait(r.url, timeout=0.5, interval=0.1, wanted=None, out=buf)
    assert rc == 1
    text = buf.getvalue()
    assert "connection refused" in text and f"not ready: {QWEN}" in text


def test_wait_healthy_without_a_router_exits_2():
    out = script("wait_healthy.py", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "0.5",
                 "--interval", "0.1")
    assert out.returncode == 2 and "never answered" in out.stdout
