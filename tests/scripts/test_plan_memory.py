"""scripts/plan_memory.py: the arithmetic, the verdicts, and the README table it produces."""

from __future__ import annotations

import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from configs.registry import load_registry
from scripts.plan_memory import GIB, GPUS, deployment_env, knob_defaults, plan

REPO = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()
DEFAULTS = knob_defaults()


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "plan_memory.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_kv_bytes_per_token_follow_the_architecture():
    qwen, nemo = REGISTRY.find("qwen"), REGISTRY.find("nemotron")
    assert qwen.memory.kv_bytes_per_token(1) == 2 * 48 * 4 * 128          # K and V, 48 layers, FP8
    assert nemo.memory.kv_bytes_per_token(1) == 2 * 6 * 2 * 128           # only 6 attention layers
    # Mamba-2: 23 layers x (64 heads x 64 x 128 state x 4 bytes + conv state) ~ 47 MiB per sequence.
    assert 46 < nemo.memory.ssm.bytes_per_sequence(4) / 2**20 < 48


def test_the_main_job_fits_a_dgx_spark_with_the_shipped_defaults():
    p = plan(REGISTRY, "multi", GPUS["gb10"], DEFAULTS)
    assert p.fits and not p.settings
    qwen, nemo = p.models
    # dtype auto: what each checkpoint declares (registry memory.checkpoint_kv_format until it is here)
    assert qwen.kv_tokens == int(DEFAULTS["QWEN_KV_CACHE_MAX_TOKENS"]) and qwen.kv_dtype == "bf16"
    assert nemo.kv_tokens == int(DEFAULTS["NEMOTRON_KV_CACHE_MAX_TOKENS"]) and nemo.kv_dtype == "fp8"
    assert abs(qwen.kv_gib - qwen.kv_tokens * 2 * 49152 / GIB) < 1e-9
    assert nemo.kv_gib == 3.0, "a 1M-token cap of FP8 KV over 6 attention layers is 3 GiB"
    assert nemo.ssm_gib > 2, "64 sequences of Mamba state are counted"


def test_two_models_do_not_fit_an_rtx_5090_and_the_plan_says_why():
    p = plan(REGISTRY, "multi", GPUS["rtx5090"], DEFAULTS)
    assert not p.fits
    out = run("--profile", "multi", "--gpu", "rtx5090")
    assert out.returncode == 1
    assert "DOES NOT FIT" in out.stdout and "weights and runtime alone exceed this GPU" in out.stdout


def test_fp4_on_hopper_is_refused_with_an_fp8_alternative():
    out = run("--profile", "multi", "--gpu", "h100")
    assert out.returncode == 1
    assert "NVFP4 weights need a Blackwell GPU" in out.stdout
    assert "NEMOTRON_CHECKPOINT=nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-FP8" in out.stdout
    assert "build_engines quantize --model qwen --quant fp8" in out.stdout


def test_an_oversized_cap_is_caught_and_settings_that_fit_are_suggested(tmp_path):
    env = tmp_path / ".env"
    env.write_text("QWEN_KV_CACHE_MAX_TOKENS=2000000\nNEMOTRON_KV_CACHE_MAX_TOKENS=\n")
    out = run("--profile", "qwen", "--gpu", "rtx5090", "--env-file", str(env))
    assert out.returncode == 0, "the fraction still bounds the cap: it fits"
    small = run("--profile", "qwen", "--gpu", "rtx5090", "--gpu-memory-gib", "20", "--env-file", str(env))
    assert small.returncode == 1 and "less than one max_seq_len request" in small.stdout
    suggested = dict(re.findall(r"^\s+(\w+)=(\d+)$", small.stdout, re.M))
    assert int(suggested["QWEN_MAX_SEQ_LEN"]) <= int(suggested["QWEN_KV_CACHE_MAX_TOKENS"])
    env.write_text("".join(f"{k}={v}\n" for k, v in suggested.items()))
    fixed = run("--profile", "qwen", "--gpu", "rtx5090", "--gpu-memory-gib", "20", "--env-file", str(env))
    assert fixed.returncode == 0, fixed.stdout


def test_a_local_env_file_is_read_by_default(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("NEMOTRON_MAX_BATCH_SIZE=8\nNEMOTRON_KV_CACHE_FRACTION=\n")
    monkeypatch.chdir(tmp_path)
    env = deployment_env()
    assert env["NEMOTRON_MAX_BATCH_SIZE"] == "8"
    assert env["NEMOTRON_KV_CACHE_MAX_TOKENS"] == DEFAULTS["NEMOTRON_KV_CACHE_MAX_TOKENS"], "others keep defaults"
    small = plan(REGISTRY, "nemotron", GPUS["gb10"], env).models[0]
    default = plan(REGISTRY, "nemotron", GPUS["gb10"], DEFAULTS).models[0]
    assert small.max_batch_size == 8 and small.ssm_gib == pytest.approx(default.ssm_gib * 8 / default.max_batch_size)


@pytest.mark.parametrize("args, message", [
    ([], "give --profile and --gpu"),
    (["--profile", "nope", "--gpu", "gb10"], "unknown profile 'nope'"),
])
def test_bad_input_is_a_clear_error(args, message):
    out = run(*args)
    assert out.returncode == 2 and message in out.stderr


def test_the_readme_shows_the_current_table():
    table = run("--all", "--markdown").stdout.strip()
    assert table in (REPO / "README.md").read_text(), "README's memory table is stale: run " \
        "python scripts/plan_memory.py --all --markdown"


def test_the_plan_follows_the_kv_format_a_downloaded_checkpoint_declares(tmp_path):
    import json

    snap = tmp_path / "hub" / "models--nvidia--Qwen3-30B-A3B-FP4" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "hf_quant_config.json").write_text(json.dumps(
        {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8"}}))
    def qwen_plan(hub: Path) -> str:
        out = subprocess.run([sys.executable, str(REPO / "scripts" / "plan_memory.py"), "--profile", "qwen",
                              "--gpu", "gb10"], cwd=REPO, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "HF_HUB_CACHE": str(hub)})
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "262,144 tok fp8" in qwen_plan(tmp_path / "hub")
    assert "262,144 tok bf16" in qwen_plan(tmp_path / "empty"), "not downloaded: the registry's format"


@pytest.mark.parametrize("profile", ["nemotron-vllm", "gguf", "embeddings", "mixed"])
def test_the_profiles_of_other_engines_are_planned_from_their_registry_knobs(profile):
    out = run("--profile", profile, "--gpu", "gb10", "--env-file", "/dev/null")
    assert out.returncode == 0, out.stdout + out.stderr
    for m in REGISTRY.profile(profile):
        assert m.id in out.stdout, out.stdout


def test_a_llamacpp_context_knob_changes_its_kv_cache():
    env = {**DEFAULTS, "QWEN3_8B_GGUF_CTX_SIZE": "8192"}
    small = plan(REGISTRY, "gguf", GPUS["gb10"], env).models[0]
    default = plan(REGISTRY, "gguf", GPUS["gb10"], DEFAULTS).models[0]
    assert small.kv_tokens == 8192 and default.kv_tokens == 32768
    assert small.kv_gib == pytest.approx(default.kv_gib / 4)
    assert default.max_batch_size == 4, "--parallel -1: llama-server's auto, 4 slots"
