"""The vLLM and llama.cpp settings in the registry and vllm/*.yaml stay inside each engine's
allow-list (vllm/allowed_options.yaml, llamacpp/allowed_options.yaml), whose entries name the
upstream source; an unknown flag would fail the real server only after a long start."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from configs.registry import ENGINES, load_registry

REPO = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()
SERVED = [m.on_engine(v) for m in REGISTRY.models.values() for v in m.engine_variants] + list(REGISTRY.models.values())
ALLOWED = {name: yaml.safe_load((REPO / e.allowed_options).read_text()) for name, e in ENGINES.items()}
OTHERS = [m for m in SERVED if m.serve.engine != "trtllm"]


def test_every_engine_has_an_allow_list_with_a_pinned_image():
    for name, allowed in ALLOWED.items():
        assert allowed["image"] and not allowed["image"].endswith(":latest"), name
        assert allowed["cli_flags"], name


@pytest.mark.parametrize("model", OTHERS, ids=[m.serve.service for m in OTHERS])
def test_parsers_and_env_are_in_the_engines_allow_list(model):
    allowed = ALLOWED[model.serve.engine]
    if model.serve.reasoning_parser:
        key = "reasoning_parsers" if model.serve.engine == "vllm" else "reasoning_formats"
        assert model.serve.reasoning_parser in allowed[key]
    if model.serve.tool_parser:
        assert model.serve.tool_parser in allowed["tool_parsers"]
    assert set(model.serve.env) <= set(allowed.get("env", {}))


@pytest.mark.parametrize("model", [m for m in OTHERS if m.serve.engine == "vllm"],
                         ids=lambda m: m.serve.service)
def test_vllm_config_keys_are_vllm_serve_flags(model):
    options = yaml.safe_load((REPO / model.serve.config).read_text())
    unknown = sorted(k for k in options if "--" + k not in ALLOWED["vllm"]["cli_flags"])
    assert not unknown, f"{model.serve.config}: not in vllm/allowed_options.yaml: {unknown}"
    assert 0 < options["gpu-memory-utilization"] <= 1
