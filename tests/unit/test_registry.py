"""The registry schema: defaults, resolution and errors that name the field."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from configs.registry import DEFAULT_REGISTRY, REPO_ROOT, RegistryError, load_registry, parse_registry
from configs.render import ROUTER_JSON, dumps, router_config

BASE = yaml.safe_load(DEFAULT_REGISTRY.read_text())
QWEN = "nvidia/Qwen3-30B-A3B-FP4"
NEMOTRON = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4"


def edited(fn) -> dict:
    data = copy.deepcopy(BASE)
    fn(data)
    return data


def test_the_shipped_registry_loads_with_both_models_and_profiles():
    reg = load_registry()
    assert {QWEN, NEMOTRON} <= set(reg.models)
    assert [m.id for m in reg.profile("multi")] == [QWEN, NEMOTRON]
    assert reg.models[QWEN].upstreams == ("qwen:8000",)


@pytest.mark.parametrize("name,expected", [
    ("qwen", QWEN), ("Qwen3", QWEN), ("qwen3:30b", QWEN), ("Qwen/Qwen3-30B-A3B", QWEN),
    ("nemotron", NEMOTRON), ("NVIDIA-Nemotron-3-Nano", NEMOTRON),
])
def test_names_resolve_by_id_alias_then_rule(name, expected):
    assert load_registry().resolve(name).id == expected


def test_unknown_and_ambiguous_names_are_refused():
    reg = load_registry()
    with pytest.raises(RegistryError, match="not in the registry"):
        reg.resolve("llama3")
    with pytest.raises(RegistryError, match="several models"):
        reg.resolve("qwen-nemotron")


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["models"][NEMOTRON]["aliases"].append("qwen"),
     f"models.{NEMOTRON}.aliases[3]: name 'qwen' is already used by model '{QWEN}'"),
    (lambda d: d["models"][QWEN]["aliases"].append("QWEN3"), "name 'QWEN3' is listed twice"),
    (lambda d: d["models"][NEMOTRON]["match"].append("qwen3"), "routing would be ambiguous"),
    (lambda d: d["models"][QWEN].update(upstreams=["qwen"]), "upstreams: [0]: 'qwen' is not HOST:PORT"),
    (lambda d: d["models"][QWEN].update(upstreams=["bad host:80"]), "neither an IP address nor a host name"),
    (lambda d: d["models"][QWEN].update(alias=["q"]), f"models.{QWEN}.alias: Extra inputs are not permitted"),
    (lambda d: d["models"][QWEN]["serve"].update(backend="vllm"), f"models.{QWEN}.serve.backend"),
    (lambda d: d["models"][QWEN]["serve"].pop("service"), f"models.{QWEN}.serve.service: Field required"),
    (lambda d: d["router"]["health"].update(interval_s=0), "router.health.interval_s"),
    (lambda d: d["profiles"].update(solo=["llama"]), "profiles.solo[0]: 'llama' is not a model id or alias"),
    (lambda d: d["models"][QWEN].update(id="x"), f"models.{QWEN}.id: the key is the id"),
    (lambda d: d["models"][NEMOTRON]["variants"].update(qwen3={"thinking": False}),
     f"models.{NEMOTRON}.variants.qwen3: name 'qwen3' is already used by model '{QWEN}'"),
    (lambda d: d["models"][QWEN]["variants"]["qwen-nothink"].update(temperature=0), "Extra inputs are not permitted"),
    (lambda d: d["models"][QWEN].update(wait_for_ready_s=-1), f"models.{QWEN}.wait_for_ready_s"),
    (lambda d: d["models"][QWEN].update(backend_key_env="sk-123"), f"models.{QWEN}.backend_key_env"),
])
def test_bad_entries_are_rejected_naming_the_field(mutate, message):
    with pytest.raises(RegistryError) as err:
        parse_registry(edited(mutate))
    assert message in str(err.value)


def test_variants_resolve_to_their_model_and_every_model_has_a_human_name():
    reg = load_registry()
    assert reg.resolve("qwen-nothink").id == QWEN and reg.resolve("Nemotron-NoThink").id == NEMOTRON
    assert reg.models[QWEN].variants["qwen-nothink"].thinking is False
    assert reg.models[QWEN].name == "Qwen3 30B-A3B (NVFP4)"
    data = edited(lambda d: d["models"][QWEN].pop("display_name"))
    assert parse_registry(data).models[QWEN].name == QWEN


def test_a_missing_models_section_is_a_clear_error():
    with pytest.raises(RegistryError, match="'models' mapping"):
        parse_registry({"router": {}})


def test_the_upstream_defaults_to_the_compose_service():
    data = edited(lambda d: d["models"][QWEN]["serve"].update(service="qwen-a", port=9000))
    assert parse_registry(data).models[QWEN].upstreams == ("qwen-a:9000",)


def test_the_rendered_router_json_is_up_to_date():
    assert ROUTER_JSON.read_text() == dumps(router_config(load_registry())), \
        "nginx/registry.json is stale: run `python -m configs.render`"
    out = subprocess.run([sys.executable, "-m", "configs.render", "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_upstream_overrides_deploy_only_the_models_given():
    cfg = router_config(load_registry(), {QWEN: ["127.0.0.1:1", "127.0.0.1:2"]}, health_interval_s=0.5)
    assert cfg["deployed"] == [QWEN]
    assert cfg["models"][0]["upstreams"] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert cfg["models"][1]["upstreams"] == []
    assert cfg["health"]["interval_s"] == 0.5


def test_a_backend_key_is_rendered_as_the_name_of_its_variable_never_its_value():
    reg = parse_registry(edited(lambda d: d["models"][QWEN].update(backend_key_env="QWEN_BACKEND_KEY")))
    models = {m["id"]: m for m in router_config(reg)["models"]}
    assert models[QWEN]["backend_key_env"] == "QWEN_BACKEND_KEY"
    assert "backend_key_env" not in models[NEMOTRON]


def test_admission_limits_default_from_the_serve_configs_max_batch_size():
    reg = load_registry()
    qwen = reg.find("qwen")
    assert qwen.max_batch_size() == yaml.safe_load((REPO_ROOT / qwen.serve.config).read_text())["max_batch_size"] == 64
    assert qwen.admission_limits() == {"max_in_flight": 64, "queue_size": 128, "queue_timeout_s": 60.0}
    assert router_config(reg)["models"][0]["admission"]["max_in_flight"] == 64


def test_admission_limits_can_be_set_or_turned_off_per_model():
    data = yaml.safe_load(DEFAULT_REGISTRY.read_text())
    data["models"][QWEN]["admission"] = {"max_in_flight": 0, "queue_timeout_s": 5}
    data["models"][NEMOTRON]["admission"] = {"max_in_flight": 8, "queue_size": 3}
    reg = parse_registry(data)
    assert reg.find("qwen").admission_limits() == {"max_in_flight": 0, "queue_size": 0, "queue_timeout_s": 5.0}
    assert reg.find("nemotron").admission_limits() == {"max_in_flight": 8, "queue_size": 3, "queue_timeout_s": 60.0}
    data["models"][QWEN]["admission"] = {"queue_timeout_s": 0}
    with pytest.raises(RegistryError, match="admission.queue_timeout_s"):
        parse_registry(data)
# --- engines (issue 16) ---------------------------------------------------------------------

def _shipped() -> dict:
    return yaml.safe_load(DEFAULT_REGISTRY.read_text())


@pytest.mark.parametrize("change,where", [
    (lambda d: d["models"][QWEN]["serve"].update(engine="vllm"), "backend: only for engine trtllm"),
    (lambda d: d["models"]["Qwen/Qwen3-8B-GGUF"]["serve"].update(config="trtllm/x.yaml"), "llama-server reads no config"),
    (lambda d: d["models"]["Qwen/Qwen3-Embedding-0.6B-GGUF"].update(reasoning={"mode": "tags"}), "does not generate text"),
    (lambda d: d["profiles"].update(x=["nemotron@sglang"]), "has no engine variant 'sglang'"),
    (lambda d: d["models"][QWEN]["serve"].update(engine="tgi"), "serve.engine"),
    (lambda d: d["models"][QWEN]["serve"]["knobs"].update(KV_CAP="1"), "serve: knobs: ['KV_CAP'] are no engine's knobs"),
    (lambda d: d["profiles"].update(x=["qwen", "qwen3"]), "profiles.x[1]: model 'nvidia/Qwen3-30B-A3B-FP4' is already"),
])
def test_engine_mistakes_are_refused_naming_the_field(change, where):
    data = _shipped()
    change(data)
    with pytest.raises(RegistryError, match=re.escape(where)):
        parse_registry(data)


def test_an_engine_variant_serves_the_same_model_with_its_engine_facts():
    from configs.registry import ENGINES

    reg = load_registry()
    base = reg.find("nemotron")
    vllm = reg.deployment("nemotron@vllm")
    assert (vllm.id, vllm.reasoning, vllm.aliases) == (base.id, base.reasoning, base.aliases)
    assert vllm.serve.engine == "vllm" and vllm.upstreams == ("nemotron-vllm:8000",)
    assert vllm.request.drop == ENGINES["vllm"].drop == () and base.request.drop == ENGINES["trtllm"].drop
    assert vllm.engine.generate_probe is None and base.engine.generate_probe == "/health_generate"


def test_knob_defaults_come_from_the_registry_and_follow_the_engine():
    reg = load_registry()
    assert reg.find("qwen").knobs()["QWEN_KV_CACHE_MAX_TOKENS"] == "262144"
    nemotron = reg.find("nemotron").id
    assert reg.deployment("nemotron@vllm").knobs() == {
        "NEMOTRON_VLLM_CHECKPOINT": nemotron, "NEMOTRON_VLLM_GPU_MEMORY_UTILIZATION": "",
        "NEMOTRON_VLLM_MAX_MODEL_LEN": ""}
    # Switching the engine is one setting: the other engine's knobs stay, unused.
    data = _shipped()
    data["models"][QWEN]["serve"].update(engine="vllm", config="vllm/nemotron-3-nano-30b-a3b-nvfp4.yaml")
    del data["models"][QWEN]["serve"]["backend"]
    assert set(parse_registry(data).models[QWEN].knobs()) == {"QWEN_CHECKPOINT", "QWEN_GPU_MEMORY_UTILIZATION",
                                                                "QWEN_MAX_MODEL_LEN"}
