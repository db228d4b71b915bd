"""trtllm/*.yaml and trtllm/launch.py, held to the option facts in trtllm/allowed_options.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from configs.registry import load_registry
from trtllm.launch import KNOBS, LaunchError, effective_options

REPO = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()
ALLOWED = yaml.safe_load((REPO / "trtllm" / "allowed_options.yaml").read_text())
MODELS = [m for m in REGISTRY.models.values() if m.serve.engine == "trtllm"]
ALL_KNOBS = {"KV_CACHE_FRACTION": "0.5", "KV_CACHE_MAX_TOKENS": "65536", "MAX_SEQ_LEN": "16384", "MAX_BATCH_SIZE": "8"}


def allowed_tree(backend: str) -> dict:
    """common + the backend's own keys, merged one level deep (nested sections combine)."""
    out: dict = {}
    for part in ("common", backend):
        for key, value in ALLOWED["options"].get(part, {}).items():
            if isinstance(value, dict):
                out.setdefault(key, {}).update(value)
            else:
                out[key] = value
    return out


def unknown_keys(options: dict, allowed: dict, where: str = "") -> list[str]:
    bad = []
    for key, value in options.items():
        path = f"{where}{key}"
        if key not in allowed:
            bad.append(path)
        elif isinstance(value, dict):
            if not isinstance(allowed[key], dict):
                bad.append(path + " (not a section)")
            else:
                bad += unknown_keys(value, allowed[key], path + ".")
    return bad


def load(model) -> dict:
    return yaml.safe_load((REPO / model.serve.config).read_text())


@pytest.mark.parametrize("model", MODELS, ids=[m.serve.service for m in MODELS])
def test_every_option_key_is_allowed_for_the_models_backend(model):
    options = load(model)
    assert not unknown_keys(options, allowed_tree(model.serve.backend))
    # ... and still after every knob is applied.
    assert not unknown_keys(effective_options(options, ALL_KNOBS), allowed_tree(model.serve.backend))


def test_the_allow_list_check_catches_a_key_of_the_other_backend():
    qwen = REGISTRY.find("qwen")
    options = {**load(qwen), "compile_backend": "torch-cudagraph"}
    assert unknown_keys(options, allowed_tree("pytorch")) == ["compile_backend"]
    nested = {**load(qwen), "kv_cache_config": {"dtype": "fp8", "free_gpu_mem_fraction": 0.5}}
    assert unknown_keys(nested, allowed_tree("pytorch")) == ["kv_cache_config.free_gpu_mem_fraction"]


def test_every_allow_list_entry_names_its_source():
    def walk(node, where=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{where}{key}.")
            else:
                yield f"{where}{key}", value
    for section in ("cli_flags", "reasoning_parsers", "tool_parsers", "options"):
        for key, source in walk(ALLOWED[section]):
            assert isinstance(source, str) and len(source) > 8, f"{section}.{key} has no source"


@pytest.mark.parametrize("model", MODELS, ids=[m.serve.service for m in MODELS])
def test_serve_configs_turn_on_structured_output_perf_metrics_and_chunked_prefill(model):
    options = load(model)
    assert options["guided_decoding_backend"] == "xgrammar"
    assert options["return_perf_metrics"] is True
    assert options["enable_chunked_prefill"] is True
    assert 0 < options["kv_cache_config"]["free_gpu_memory_fraction"] < 1
    assert model.serve.reasoning_parser is None or model.serve.reasoning_parser in ALLOWED["reasoning_parsers"]
    assert model.serve.tool_parser is None or model.serve.tool_parser in ALLOWED["tool_parsers"]


def test_nemotron_runs_as_nvidia_documents_it():
    nemo = REGISTRY.find("nemotron")
    options = load(nemo)
    assert nemo.serve.backend == "_autodeploy" and nemo.serve.trust_remote_code
    assert nemo.serve.env.get("TRTLLM_ENABLE_PDL") == "1"
    assert options["kv_cache_config"]["enable_block_reuse"] is False      # no prefix caching for this hybrid
    assert options["kv_cache_config"]["mamba_ssm_cache_dtype"] == "float32"
    assert options["compile_backend"] == "torch-cudagraph"


def test_published_checkpoints_get_the_kv_cache_their_hf_quant_config_declares():
    # FP8 KV without calibrated scales costs accuracy: `auto` takes the checkpoint's kv_cache_quant_algo.
    qwen = REGISTRY.find("qwen")
    options = load(qwen)
    assert qwen.serve.backend == "pytorch" and qwen.serve.reasoning_parser == "qwen3"
    for model in MODELS:
        assert load(model)["kv_cache_config"].get("dtype", "auto") == "auto", model.id
    assert options["max_seq_len"] <= qwen.memory.native_context


def test_knobs_land_in_the_options_file_and_empty_ones_change_nothing():
    base = {"max_seq_len": 32768, "kv_cache_config": {"dtype": "fp8", "free_gpu_memory_fraction": 0.9}}
    out = effective_options(base, {**ALL_KNOBS, "MAX_BATCH_SIZE": "  "})
    assert out == {"max_seq_len": 16384, "kv_cache_config": {"dtype": "fp8", "free_gpu_memory_fraction": 0.5,
                                                             "max_tokens": 65536}}
    assert base["kv_cache_config"]["free_gpu_memory_fraction"] == 0.9, "the input is not modified"
    assert effective_options(base, {}) == base
    assert set(KNOBS) == set(ALL_KNOBS)


@pytest.mark.parametrize("env, message", [
    ({"KV_CACHE_FRACTION": "1.5"}, "between 0 and 1"),
    ({"KV_CACHE_FRACTION": "half"}, "not a number"),
    ({"KV_CACHE_MAX_TOKENS": "12k"}, "not an integer"),
    ({"MAX_BATCH_SIZE": "0"}, "positive integer"),
])
def test_bad_knob_values_are_refused_by_name(env, message):
    with pytest.raises(LaunchError, match=message) as err:
        effective_options({}, env)
    assert next(iter(env)) in str(err.value)


@pytest.fixture
def fake_trtllm_serve(tmp_path):
    """A `trtllm-serve` on PATH that records its argv and the options file it was given."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "record.yaml"
    script = bindir / "trtllm-serve"
    script.write_text(f"""#!{sys.executable}
import sys, yaml
argv = sys.argv[1:]
opts = yaml.safe_load(open(argv[argv.index("--extra_llm_api_options") + 1]))
yaml.safe_dump({{"argv": argv, "options": opts}}, open({str(record)!r}, "w"))
""")
    script.chmod(0o755)
    return bindir, record


def launch(bindir: Path, tmp_path: Path, config: str, command: list[str], env: dict):
    return subprocess.run([sys.executable, str(REPO / "trtllm" / "launch.py"), "--config", str(REPO / config),
                           "--out-dir", str(tmp_path), "--", *command],
                          env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", **env},
                          capture_output=True, text=True, timeout=60)


def test_the_launcher_execs_trtllm_serve_with_the_effective_options(fake_trtllm_serve, tmp_path):
    bindir, record = fake_trtllm_serve
    qwen = REGISTRY.find("qwen")
    cmd = ["trtllm-serve", "serve", qwen.id, "--host", "0.0.0.0", "--backend", "pytorch"]
    out = launch(bindir, tmp_path, qwen.serve.config, cmd, {"KV_CACHE_MAX_TOKENS": "4096", "MAX_SEQ_LEN": "2048"})
    assert out.returncode == 0, out.stderr
    got = yaml.safe_load(record.read_text())
    assert got["argv"][:5] == cmd[1:6] and got["argv"][-2] == "--extra_llm_api_options"
    expected = effective_options(load(qwen), {"KV_CACHE_MAX_TOKENS": "4096", "MAX_SEQ_LEN": "2048"})
    assert got["options"] == expected
    assert got["options"]["kv_cache_config"]["enable_block_reuse"] is True, "the file's own values are kept"
    assert "max_tokens: 4096" in out.stdout, "the effective file is printed to the container log"


@pytest.mark.parametrize("command, env, message", [
    (["trtllm-serve", "serve", "m", "--config", "x.yaml"], {}, "--config is set by the launcher"),
    (["trtllm-serve", "serve", "m", "--kv_cache_free_gpu_memory_fraction", "0.5"], {}, "use KV_CACHE_FRACTION"),
    (["python3", "-m", "http.server"], {}, "expected a trtllm-serve command"),
    (["trtllm-serve", "serve", "m"], {"KV_CACHE_FRACTION": "2"}, "between 0 and 1"),
])
def test_the_launcher_refuses_what_would_be_silently_ignored(fake_trtllm_serve, tmp_path, command, env, message):
    bindir, record = fake_trtllm_serve
    out = launch(bindir, tmp_path, "trtllm/qwen3-30b-a3b-fp4.yaml", command, env)
    assert out.returncode == 2 and message in out.stderr
    assert not record.exists()


def cuda_graph_max(options: dict) -> int:
    """What TorchLlmArgs makes of cuda_graph_config.max_batch_size (docs/trtllm.md, "AutoDeploy batch sizes")."""
    graphs = options.get("cuda_graph_config") or {}
    return graphs.get("max_batch_size") or max(graphs.get("batch_sizes") or [128])


@pytest.mark.parametrize("model", MODELS, ids=[m.serve.service for m in MODELS])
@pytest.mark.parametrize("batch", ["", "1", "8", "63", "64", "200", "4096"])
def test_cuda_graph_batch_sizes_stay_within_max_batch_size_after_every_knob(model, batch):
    options = effective_options(load(model), {**ALL_KNOBS, "MAX_BATCH_SIZE": batch})
    assert options["max_batch_size"] == int(batch or load(model)["max_batch_size"])
    if model.serve.backend == "_autodeploy":   # AutoDeploy's LlmArgs raises otherwise
        assert "cuda_graph_config" in options, "an unset cuda_graph_config means 128 graphs"
    if "cuda_graph_config" in options:
        assert cuda_graph_max(options) <= options["max_batch_size"]


def test_the_launcher_keeps_explicit_graph_sizes_and_refuses_more_sequences_than_tokens():
    out = effective_options({"max_batch_size": 64, "cuda_graph_config": {"batch_sizes": [1, 4, 32, 64]}},
                            {"MAX_BATCH_SIZE": "16"})
    assert out["cuda_graph_config"] == {"batch_sizes": [1, 4]}
    assert effective_options({"max_batch_size": 64, "cuda_graph_config": {}}, {})["cuda_graph_config"] == \
        {"max_batch_size": 64}
    with pytest.raises(LaunchError, match="exceeds max_num_tokens 8192"):
        effective_options({"max_num_tokens": 8192}, {"MAX_BATCH_SIZE": "9000"})
