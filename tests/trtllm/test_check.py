"""trtllm/check.py (the `check` compose profile) against fake tensorrt_llm / modelopt / torch packages.

The fakes (tests/trtllm/fake_image/) imitate the classes of the pinned image (NVIDIA sources and
commits in docs/trtllm.md); FAKE_IMAGE picks the failure each test needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FAKE_IMAGE = Path(__file__).resolve().parent / "fake_image"


@pytest.fixture
def repo(tmp_path) -> Path:
    """compose.yml (and the compose.models.yml it includes) and trtllm/ copied, so a test can break one file."""
    for name in ("compose.yml", "compose.models.yml", "monitoring/compose.yml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "trtllm", tmp_path / "trtllm", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def run_check(repo: Path, *fail: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("QWEN_", "NEMOTRON_", "FAKE_", "HF_"))}
    return subprocess.run([sys.executable, "-m", "trtllm.check", "--compose", str(repo / "compose.yml")],
                          cwd=repo, capture_output=True, text=True, timeout=120,
                          env={**clean, "PYTHONPATH": f"{FAKE_IMAGE}{os.pathsep}{REPO}", "FAKE_IMAGE": ",".join(fail),
                               "HF_HUB_CACHE": str(repo / "hub"), **(env or {})})


def rows(out: str) -> dict[str, tuple[str, str]]:
    table = {}
    for line in out.splitlines()[2:-1]:
        name, _, rest = line.partition("  ")
        status, _, detail = rest.strip().partition("  ")
        if name.strip() and status in ("PASS", "FAIL", "WARN", "SKIP"):
            table[name.strip()] = (status, detail.strip())
    return table


def fix_under(out: str, check: str) -> str:
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(check + " "))
    assert "fix: " in lines[at + 1], out
    return lines[at + 1].split("fix: ", 1)[1]


def test_our_services_pass_on_the_pinned_image():
    out = run_check(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    table = rows(out.stdout)
    assert table["import tensorrt_llm"] == ("PASS", "version 1.3.0rc13")
    assert table["GPU"][0] == "PASS" and "12.1" in table["GPU"][1]
    for service in ("qwen", "nemotron", "qwen3-4b"):
        for part in ("parsers", "flags", "options"):
            assert table[f"{service}: {part}"][0] == "PASS", (service, part, out.stdout)
    assert "LlmArgs (_autodeploy)" in table["nemotron: options"][1]
    assert "TorchLlmArgs (pytorch)" in table["qwen: options"][1]
    assert table["qwen: KV cache"][0] == "SKIP", "nothing downloaded: no hf_quant_config.json to read"
    assert out.stdout.splitlines()[-1].startswith("0 failed")


def test_an_image_started_without_nvidias_entrypoint_fails_with_the_entrypoint_fix(repo):
    out = run_check(repo, "libnvinfer")
    assert out.returncode == 1
    status, detail = rows(out.stdout)["import tensorrt_llm"]
    assert status == "FAIL" and "libnvinfer.so.10" in detail
    assert "/opt/nvidia/nvidia_entrypoint.sh" in fix_under(out.stdout, "import tensorrt_llm")
    assert "Traceback" not in out.stderr


def test_an_unknown_flag_is_named_with_its_service(repo):
    out = run_check(repo, "no-tool-parser-flag")
    assert out.returncode == 1
    status, detail = rows(out.stdout)["qwen: flags"]
    assert status == "FAIL" and "--tool_parser" in detail, out.stdout
    assert "compose.yml" in fix_under(out.stdout, "qwen: flags")


def test_a_parser_this_image_lacks_is_named(repo):
    out = run_check(repo, "no-nano-v3")
    table = rows(out.stdout)
    assert out.returncode == 1
    assert table["nemotron: parsers"][0] == "FAIL" and "--reasoning_parser nano-v3" in table["nemotron: parsers"][1]
    assert "deepseek-r1, qwen3" in table["nemotron: parsers"][1]
    assert table["qwen: parsers"][0] == "PASS"


def test_the_autodeploy_batch_size_rule_is_caught_without_cuda_graph_config(repo):
    # The Nemotron options as they were: max_batch_size 64 and no cuda_graph_config (128 by default).
    path = repo / "trtllm" / "nemotron-3-nano-30b-a3b-nvfp4.yaml"
    options = yaml.safe_load(path.read_text())
    del options["cuda_graph_config"]
    path.write_text(yaml.safe_dump(options))
    out = run_check(repo)
    status, detail = rows(out.stdout)["nemotron: options"]
    assert out.returncode == 1 and status == "FAIL"
    assert "must be greater than or equal to `cuda_graph_config.max_batch_size` (128)" in detail
    assert "nemotron-3-nano-30b-a3b-nvfp4.yaml" in fix_under(out.stdout, "nemotron: options")


def test_knobs_from_the_env_file_are_validated_too(repo):
    (repo / ".env").write_text("QWEN_MAX_BATCH_SIZE=9000\nNEMOTRON_MAX_BATCH_SIZE=8\n")
    out = run_check(repo)
    table = rows(out.stdout)
    assert table["qwen: options"][0] == "FAIL" and "exceeds max_num_tokens 8192" in table["qwen: options"][1]
    assert table["nemotron: options"][0] == "PASS", "launch.py lowers the CUDA-graph sizes with the knob"


def test_an_unknown_option_key_fails_with_the_classes_message(repo):
    path = repo / "trtllm" / "qwen3-30b-a3b-fp4.yaml"
    options = yaml.safe_load(path.read_text())
    options["kv_cache_config"]["free_gpu_mem_fraction"] = 0.5
    path.write_text(yaml.safe_dump(options))
    status, detail = rows(run_check(repo).stdout)["qwen: options"]
    assert status == "FAIL" and "kv_cache_config.free_gpu_mem_fraction: Extra inputs are not permitted" in detail


def test_a_gpu_without_nvfp4_is_refused():
    status, detail = rows(run_check(REPO, "hopper").stdout)["GPU"]
    assert status == "FAIL" and "9.0" in detail and "Blackwell" in detail


def test_the_old_modelopt_of_the_image_is_reported_not_failed():
    out = run_check(REPO, "modelopt-0.37")
    assert out.returncode == 0, out.stdout
    status, detail = rows(out.stdout)["ModelOpt (build profile)"]
    assert status == "WARN" and detail.startswith("0.37.0")
    assert "no MAMBA_MOE_NVFP4_CONSERVATIVE_CFG" in detail and "no max_shard_size" in detail


def test_a_downloaded_checkpoint_that_contradicts_the_memory_plan_fails(repo):
    snap = repo / "hub" / "models--nvidia--Qwen3-30B-A3B-FP4" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "hf_quant_config.json").write_text(json.dumps(
        {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8"}}))
    out = run_check(repo)
    status, detail = rows(out.stdout)["qwen: KV cache"]
    assert status == "FAIL" and "declares fp8, the memory plan assumes bf16" in detail
    assert "checkpoint_kv_format: fp8" in fix_under(out.stdout, "qwen: KV cache")
