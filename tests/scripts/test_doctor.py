"""scripts/doctor.py: one line per check, a fix per failure, never a traceback (fake docker / nvidia-smi)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake(bindir: Path, name: str, script: str) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def doctor(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "QWEN_", "NEMOTRON_", "ROUTER_"))}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "doctor.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**clean, "PATH": str(bindir), "HF_CACHE": str(tmp_path / "hf"),
                               "ROUTER_PORT": str(free_port()), **(env or {})})


def healthy_docker(bindir: Path, root: Path, runtimes: str = '{"nvidia":{},"runc":{}}') -> None:
    fake(bindir, "docker", f"""case "$*" in
  "version --format {{{{.Server.Version}}}}") echo 28.1.1;;
  "compose version --short") echo 2.35.1;;
  "info --format {{{{json .Runtimes}}}}") echo '{runtimes}';;
  "info --format {{{{.DockerRootDir}}}}") echo {root};;
  *) echo "unexpected: $*" >&2; exit 3;;
esac""")


def test_a_host_without_docker_or_a_gpu_gets_one_line_each_and_no_traceback(tmp_path):
    out = doctor(tmp_path)
    assert out.returncode == 1 and out.stderr == ""
    lines = out.stdout.splitlines()
    assert [line for line in lines if line.startswith("FAIL")] == [
        "FAIL docker: not installed -> install Docker Engine: https://docs.docker.com/engine/install/",
        "FAIL GPU: nvidia-smi not found: no NVIDIA driver on this host -> install the NVIDIA driver (580 or newer) "
        "for your Blackwell GPU"]
    assert any(line.startswith("skip memory plan: no known GPU") for line in lines)
    assert lines[-1].startswith("2 problem(s)")


def test_a_ready_dgx_spark_passes_and_is_pointed_at_the_check_profile(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    healthy_docker(bindir, tmp_path)
    fake(bindir, "nvidia-smi", 'echo "NVIDIA GB10, [N/A], 580.95.05, 12.1"')
    out = doctor(tmp_path, env={"HF_TOKEN": "hf_test"})
    assert out.returncode == 0, out.stdout
    assert "ok   GPU 0: NVIDIA GB10, unified memory, driver 580.95.05, compute capability 12.1" in out.stdout
    assert "ok   memory plan: multi on gb10" in out.stdout
    assert out.stdout.rstrip().endswith("docker compose --profile check run --rm check")


@pytest.mark.parametrize("problem, expect", [
    ("runtime", "FAIL nvidia runtime: Docker has no nvidia runtime -> install the NVIDIA Container Toolkit"),
    ("driver", "FAIL GPU 0: NVIDIA GeForce RTX 5090, 32 GiB, driver 570.86.10, compute capability 12.0 -> "
               "the image needs driver 580 or newer"),
    ("hopper", "FAIL GPU 0: NVIDIA H100 80GB HBM3, 80 GiB, driver 580.95.05, compute capability 9.0: no NVFP4"),
    ("port", "is in use"),
    ("plan", "FAIL memory plan: multi on rtx5090 does not fit"),
])
def test_each_problem_is_one_failing_line_with_its_fix(tmp_path, problem, expect):
    # One model per RTX 5090 (qwen fits, multi does not); the H100 line comes with the plan's own refusal.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    healthy_docker(bindir, tmp_path, runtimes='{"runc":{}}' if problem == "runtime" else '{"nvidia":{}}')
    gpu = {"driver": "NVIDIA GeForce RTX 5090, 32607, 570.86.10, 12.0",
           "hopper": "NVIDIA H100 80GB HBM3, 81559, 580.95.05, 9.0",
           "plan": "NVIDIA GeForce RTX 5090, 32607, 580.95.05, 12.0"}.get(problem, "NVIDIA GB10, [N/A], 580.95.05, 12.1")
    fake(bindir, "nvidia-smi", f'echo "{gpu}"')
    env = {"HF_TOKEN": "hf_test"}
    with socket.socket() as busy:
        if problem == "port":
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            env["ROUTER_PORT"] = str(busy.getsockname()[1])
        out = doctor(tmp_path, "--profile", "multi" if problem in ("plan", "hopper") else "qwen", env=env)
    failing = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert out.returncode == 1 and len(failing) == (2 if problem == "hopper" else 1), out.stdout
    assert expect in failing[0] and " -> " in failing[0]
    assert "Traceback" not in out.stdout + out.stderr
