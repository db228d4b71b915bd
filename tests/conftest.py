"""Process fixtures: fake trtllm-serve backends and the real router (nginx + Lua) on loopback.

    def test_x(fake_backend, router):
        qwen = fake_backend(model="nvidia/Qwen3-30B-A3B-FP4")
        r = router({"qwen": [qwen.addr]})
        client = r.openai()

Every router started here fails its test if nginx's error.log gained [error]/[alert] lines
(pass allow_log=r"regex" for lines a test provokes on purpose) and prints the log on failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
QWEN = "nvidia/Qwen3-30B-A3B-FP4"
NEMOTRON = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4"
BAD_LOG = re.compile(r"\[(error|alert|crit|emerg)\]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0,
             proc: subprocess.Popen | None = None) -> None:
    """Poll `check` until true; fail early if `proc` died."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


@dataclass
class FakeBackend:
    port: int
    model: str
    args: list[str]
    proc: subprocess.Popen | None = None
    engine: str = "trtllm"   # trtllm (tests/fakes/trtllm_serve.py), vllm or llamacpp (engine_serve.py)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def start(self, wait: bool = True) -> "FakeBackend":
        fake = ["tests.fakes.trtllm_serve"] if self.engine == "trtllm" else \
            ["tests.fakes.engine_serve", "--engine", self.engine]
        cmd = [sys.executable, "-m", *fake, "--port", str(self.port), "--model", self.model, *self.args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(lambda: httpx.get(self.url + "/health", timeout=1).status_code == 200,
                 f"fake backend on {self.port}", timeout, self.proc)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_group(self.proc, sig)

    def control(self, **changes) -> None:
        httpx.post(self.url + "/fake/control", json=changes, timeout=5).raise_for_status()

    def release(self, n: int = 1) -> None:
        httpx.post(self.url + "/fake/release", json={"n": n}, timeout=5).raise_for_status()

    def requests(self) -> list[dict]:
        return httpx.get(self.url + "/fake/requests", timeout=5).json()


@dataclass
class Router:
    port: int
    prefix: Path
    proc: subprocess.Popen
    allow_log: re.Pattern | None = None
    log_offset: int = 0
    _clients: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    def openai(self, **kwargs):
        import openai

        client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0,
                               timeout=kwargs.pop("timeout", 30), **kwargs)
        self._clients.append(client)
        return client

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kw.pop("timeout", 10), **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def health(self) -> dict:
        return self.get("/health").json()

    def wait_state(self, model: str, state: str, timeout: float = 20.0) -> None:
        wait_for(lambda: self.health()["models"][model]["state"] == state,
                 f"{model} to be {state}", timeout, self.proc)

    def log_text(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def bad_log_lines(self) -> list[str]:
        lines = self.log_text()[self.log_offset:].splitlines()
        return [ln for ln in lines if BAD_LOG.search(ln) and not (self.allow_log and self.allow_log.search(ln))]


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def compose_defaults(path: Path) -> dict[str, str]:
    """The ${VAR:-default} pairs of a compose file (tests hold .env.example to them)."""
    return dict(re.findall(r"\$\{(\w+):-([^}]*)\}", path.read_text(encoding="utf-8")))


def write_registry(tmp_path: Path, models: dict | None = None, name: str = "models.yaml", **health) -> Path:
    """A copy of configs/models.yaml with router.health settings and model entries changed
    (models: {id: {section: {field: value}}}, merged deeply)."""
    data = yaml.safe_load((REPO / "configs" / "models.yaml").read_text())
    data.setdefault("router", {}).setdefault("health", {}).update(health)
    _merge(data["models"], models or {})
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session", autouse=True)
def openai_response_models_built():
    """Builds the openai SDK's response models once, in the main thread, before any test parses
    answers in threads. pydantic completes some of them lazily on first use, and two threads
    doing that at once can fail with "BaseModel cannot be instantiated directly" (seen in
    test_admission on a fresh clone; reproduced with 8 threads constructing a ChatCompletion:
    7 of 25 fresh interpreters failed cold, 0 of 25 after one construction first)."""
    from openai._models import construct_type
    from openai.types import Completion
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    message = {"role": "assistant", "content": "hi", "reasoning_content": None, "tool_calls": []}
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    common = {"id": "warm", "created": 1, "model": "m", "usage": usage}
    construct_type(type_=ChatCompletion, value={**common, "object": "chat.completion", "choices": [
        {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop", "stop_reason": None}]})
    construct_type(type_=ChatCompletionChunk, value={**common, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": "hi", "reasoning_content": ""}, "logprobs": None, "finish_reason": None}]})
    construct_type(type_=Completion, value={**common, "object": "text_completion", "choices": [
        {"index": 0, "text": "hi", "logprobs": None, "finish_reason": "stop"}]})


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def fake_backend():
    """Factory: fake_backend(model=..., start=True, wait=True, args=[...], engine="trtllm") -> FakeBackend."""
    started: list[FakeBackend] = []

    def make(model: str = QWEN, *, port: int | None = None, start: bool = True, wait: bool = True,
             args: list[str] | None = None, engine: str = "trtllm") -> FakeBackend:
        fb = FakeBackend(port or free_port(), model, list(args or []), engine=engine)
        started.append(fb)
        if start:
            fb.start(wait=wait)
        return fb

    yield make
    for fb in started:
        fb.stop()


def start_router(prefix: Path, upstreams: dict[str, list[str]] | None, *, health_interval: float = 0.1,
                 registry: Path | None = None, env: dict | None = None, port: int | None = None,
                 keys: Path | None = None, workers: int | None = None) -> Router:
    port = port or free_port()
    cmd = [sys.executable, str(REPO / "scripts" / "run_router.py"), "--port", str(port),
           "--prefix", str(prefix), "--health-interval", str(health_interval)]
    if keys:
        cmd += ["--keys", str(keys)]
    if workers:
        cmd += ["--workers", str(workers)]
    for name, addrs in (upstreams or {}).items():
        cmd += ["--upstream", f"{name}={','.join(addrs)}"]
    if registry:
        cmd += ["--registry", str(registry)]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, text=True)
    r = Router(port, prefix, proc)
    wait_for(lambda: httpx.get(r.url + "/livez", timeout=1).status_code == 200, "router", 20, proc)
    return r


def finish_router(r: Router, failed: bool) -> list[str]:
    stop_group(r.proc, signal.SIGTERM)
    bad = r.bad_log_lines()
    if failed or bad:
        sys.stderr.write(f"\n--- nginx error.log ({r.error_log}) ---\n{r.log_text()[-6000:]}\n")
    return bad


@pytest.fixture
def router(request, tmp_path):
    """Factory: router({"qwen": ["127.0.0.1:PORT"]}, health_interval=0.1, allow_log=None, ...)."""
    routers: list[Router] = []

    def make(upstreams: dict[str, list[str]] | None, *, allow_log: str | None = None, **kw) -> Router:
        r = start_router(tmp_path / f"router{len(routers)}", upstreams, **kw)
        r.allow_log = re.compile(allow_log) if allow_log else None
        routers.append(r)
        return r

    yield make
    failed = bool(getattr(request.node, "rep_call", None) and request.node.rep_call.failed)
    bad = []
    for r in routers:
        bad += finish_router(r, failed)
    if bad and not failed:
        pytest.fail("nginx error.log gained error lines:\n" + "\n".join(bad))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Both fake models behind one router, shared by a module's tests (the common case)."""
    tmp = tmp_path_factory.mktemp("stack")
    qwen = FakeBackend(free_port(), QWEN, []).start()
    nemo = FakeBackend(free_port(), NEMOTRON, []).start()
    # Plain fakes (no reasoning): these tests are about routing, not reasoning.
    unset = {"temperature": None, "top_p": None, "top_k": None}
    plain = {"reasoning": {"mode": "none", "sampling_thinking": unset, "sampling_non_thinking": unset}}
    registry = write_registry(tmp, {QWEN: plain, NEMOTRON: plain})
    r = start_router(tmp / "router", {"qwen": [qwen.addr], "nemotron": [nemo.addr]}, registry=registry)
    try:
        wait_for(lambda: r.health()["status"] == "ready", "both models ready", 20, r.proc)
        yield r, qwen, nemo
    finally:
        bad = finish_router(r, False)
        qwen.stop()
        nemo.stop()
    assert not bad, "nginx error.log gained error lines:\n" + "\n".join(bad)


def sse_events(resp: httpx.Response):
    """Yield decoded `data:` payloads of an SSE response as they arrive ('[DONE]' as a string)."""
    for line in resp.iter_lines():
        if line.startswith("data: "):
            payload = line[6:]
            yield payload if payload == "[DONE]" else json.loads(payload)
