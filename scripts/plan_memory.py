"""Will a profile fit on a GPU? Weights + KV cache + Mamba state + runtime per model, and settings.

Usage:
    python scripts/plan_memory.py --profile multi --gpu gb10
    python scripts/plan_memory.py --profile qwen --gpu rtx5090 --env-file .env
    python scripts/plan_memory.py --all --markdown        # the README's table

Inputs: each model's `memory` facts in configs/models.yaml, its serve config (trtllm/*.yaml,
vllm/*.yaml), and the knobs compose passes it (registry defaults, overridden by --env-file).
vLLM takes gpu-memory-utilization of the GPU's total memory; llama.cpp a KV cache for its whole
--ctx-size. Models start in profile order
(compose's depends_on chain), so each one's `free_gpu_memory_fraction` applies to what the ones
before it left free; `KV_CACHE_MAX_TOKENS` caps it (the smaller limit wins in TensorRT-LLM).

These are estimates: the runtime allowance (CUDA context, activations for max_num_tokens, CUDA
graphs, sampler and grammar buffers) is a fixed figure per backend, not a measurement.
Exit status: 0 fits, 1 does not fit (or cannot run on that GPU), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from configs.registry import LLAMACPP_DEFAULT_PARALLEL, REPO_ROOT, Model, RegistryError, load_registry

GIB = 2**30
# Runtime allowance per model in GiB; AutoDeploy also holds torch.compile'd graphs. vLLM: CUDA
# graphs and activations inside its budget; llama.cpp: compute buffers (estimates, not measured).
RUNTIME_GIB = {"pytorch": 3.0, "tensorrt": 2.0, "_autodeploy": 4.0, "vllm": 3.0, "llamacpp": 1.0}
# Plan KV for this many concurrent full-length sequences when recommending caps.
TARGET_FULL_SEQUENCES = 4


@dataclass(frozen=True)
class Gpu:
    key: str
    name: str
    memory_gib: float      # what CUDA reports as total
    reserve_gib: float     # left for the OS/desktop (unified memory) or display and driver
    blackwell: bool
    note: str = ""

    @property
    def usable_gib(self) -> float:
        return self.memory_gib - self.reserve_gib


GPUS = {g.key: g for g in (
    Gpu("gb10", "DGX Spark (GB10, 128 GB unified)", 119.7, 10.0, True,
        "memory is shared with the OS: close other GPU/CPU-heavy work"),
    Gpu("rtx5090", "GeForce RTX 5090 (32 GB)", 31.8, 1.0, True),
    Gpu("rtx-pro-6000", "RTX PRO 6000 Blackwell (96 GB)", 95.6, 1.0, True),
    Gpu("b200", "B200 (180 GB)", 179.0, 0.5, True),
    Gpu("h100", "H100 (80 GB)", 79.6, 0.5, False, "Hopper: no FP4 tensor cores"),
)}


@dataclass
class ModelPlan:
    model: Model
    weights_gib: float
    runtime_gib: float
    kv_dtype: str
    kv_bytes_per_token: int
    kv_tokens: int
    kv_gib: float
    ssm_gib: float
    max_seq_len: int
    max_batch_size: int
    problems: list[str] = field(default_factory=list)

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.runtime_gib + self.kv_gib + self.ssm_gib


@dataclass
class Plan:
    gpu: Gpu
    profile: str
    models: list[ModelPlan]
    settings: dict[str, str]

    @property
    def used_gib(self) -> float:
        return sum(m.total_gib for m in self.models)

    @property
    def fits(self) -> bool:
        return not any(m.problems for m in self.models) and self.used_gib <= self.gpu.usable_gib


def knob_defaults(registry=None) -> dict[str, str]:
    """Every deployment's knobs and their registry defaults: what compose passes when .env says nothing."""
    registry = registry or load_registry()
    return {k: v for d in registry.deployments() for k, v in d.knobs().items()}


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}:{n}: expected KEY=VALUE")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def deployment_env(env_file: Path | None = None, registry=None) -> dict[str, str]:
    """The registry's knob defaults, overridden by the non-empty values of env_file (default ./.env)."""
    env = knob_defaults(registry)
    env_file = env_file or (Path(".env") if Path(".env").exists() else None)
    if env_file:
        env.update({k: v for k, v in read_env_file(env_file).items() if v})
    return env


def serve_options(model: Model, env: dict[str, str]) -> dict:
    """The model's trtllm options with its compose knobs laid over (what trtllm/launch.py does)."""
    from trtllm.launch import effective_options

    options = yaml.safe_load((REPO_ROOT / model.serve.config).read_text(encoding="utf-8")) or {}
    knobs = {k.removeprefix(model.env_prefix): v for k, v in env.items() if k.startswith(model.env_prefix)}
    return effective_options(options, knobs)


def knobs(model: Model, env: dict[str, str]) -> dict[str, str]:
    """The model's compose knobs without their prefix (QWEN3_8B_GGUF_CTX_SIZE -> CTX_SIZE)."""
    return {k.removeprefix(model.env_prefix): v for k, v in env.items() if k.startswith(model.env_prefix) and v}


def plan_vllm(model: Model, env: dict[str, str], gpu: Gpu) -> ModelPlan:
    """vLLM takes gpu-memory-utilization of the GPU's TOTAL memory and fills what weights and
    runtime leave with KV cache (and, for hybrids, Mamba state for max-num-seqs sequences)."""
    mem = _memory(model)
    options = yaml.safe_load((REPO_ROOT / model.serve.config).read_text(encoding="utf-8")) or {}
    k = knobs(model, env)
    util = float(k.get("GPU_MEMORY_UTILIZATION") or options.get("gpu-memory-utilization", 0.9))
    max_seq_len = int(k.get("MAX_MODEL_LEN") or options.get("max-model-len") or mem.native_context)
    batch = int(options.get("max-num-seqs", 256))
    kv_dtype = "fp8" if str(options.get("kv-cache-dtype", "auto")).startswith("fp8") else mem.checkpoint_kv_format
    per_token = mem.kv_bytes_per_token(1 if kv_dtype == "fp8" else 2)
    weights, runtime = mem.weights_gb * 1e9 / GIB, RUNTIME_GIB["vllm"]
    ssm = batch * mem.ssm.bytes_per_sequence(2) / GIB if mem.ssm else 0.0
    budget = util * gpu.memory_gib
    kv_gib = max(budget - weights - runtime - ssm, 0.0)
    tokens = int(kv_gib * GIB // per_token)
    p = ModelPlan(model, weights, runtime, kv_dtype, per_token, tokens, kv_gib, ssm, max_seq_len, batch)
    if weights + runtime + ssm > budget:
        p.problems.append(f"gpu-memory-utilization {util} gives {budget:.1f} GiB, weights + runtime need "
                          f"{weights + runtime + ssm:.1f}: raise {model.env_prefix}GPU_MEMORY_UTILIZATION")
    elif tokens < max_seq_len:
        p.problems.append(f"KV cache holds {tokens:,} tokens, less than one max-model-len request ({max_seq_len:,})")
    return p


def plan_llamacpp(model: Model, env: dict[str, str]) -> ModelPlan:
    """llama-server allocates the KV cache for its whole context (--ctx-size, shared by its slots)."""
    mem = _memory(model)
    k = knobs(model, env)
    ctx = int(k.get("CTX_SIZE") or 0) or mem.native_context   # --ctx-size 0: the training context
    per_token = mem.kv_bytes_per_token(2)                        # f16 cache (llama.cpp's default)
    weights, runtime = mem.weights_gb * 1e9 / GIB, RUNTIME_GIB["llamacpp"]
    slots = int(k.get("PARALLEL") or -1)                         # -1: auto, 4 slots (docs/engines.md)
    return ModelPlan(model, weights, runtime, "f16", per_token, ctx, ctx * per_token / GIB, 0.0, ctx,
                     slots if slots > 0 else LLAMACPP_DEFAULT_PARALLEL)


def _memory(model: Model):
    if model.memory is None:
        raise ValueError(f"models.{model.id}.memory: needed for planning; copy the numbers from its config.json")
    return model.memory


def plan_model(model: Model, options: dict, free_gib: float, declared_kv: str | None = None) -> ModelPlan:
    """`declared_kv`: the KV format the checkpoint on this machine declares (None: not here; the
    registry's memory.checkpoint_kv_format stands in) - what kv_cache_config.dtype: auto gives."""
    mem = model.memory
    if mem is None:
        raise ValueError(f"models.{model.id}.memory: needed for planning; copy the numbers from its config.json")
    kv_cfg = options.get("kv_cache_config", {})
    kv_dtype = kv_cfg.get("dtype", "auto")
    if kv_dtype == "auto":
        kv_dtype = declared_kv or mem.checkpoint_kv_format
    per_token = mem.kv_bytes_per_token(1 if kv_dtype in ("fp8", "nvfp4") else 2)   # NVFP4 KV: counted as FP8
    max_seq_len = int(options.get("max_seq_len") or mem.native_context)
    batch = int(options.get("max_batch_size") or 2048)
    weights = mem.weights_gb * 1e9 / GIB
    runtime = RUNTIME_GIB[model.serve.backend]
    ssm = 0.0
    if mem.ssm is not None:
        state_bytes = 4 if kv_cfg.get("mamba_ssm_cache_dtype") == "float32" else 2
        ssm = batch * mem.ssm.bytes_per_sequence(state_bytes) / GIB
    # TensorRT-LLM sizes the KV cache from memory free once weights are loaded.
    fraction = float(kv_cfg.get("free_gpu_memory_fraction", 0.9))
    after_load = max(free_gib - weights - runtime - ssm, 0.0)
    tokens = int(fraction * after_load * GIB // per_token)
    if kv_cfg.get("max_tokens"):
        tokens = min(tokens, int(kv_cfg["max_tokens"]))
    p = ModelPlan(model, weights, runtime, kv_dtype, per_token, tokens, tokens * per_token / GIB, ssm,
                  max_seq_len, batch)
    if weights + runtime + ssm > free_gib:
        p.problems.append(f"weights + runtime need {weights + runtime + ssm:.1f} GiB, {free_gib:.1f} GiB free")
    elif tokens < max_seq_len:
        p.problems.append(f"KV cache holds {tokens:,} tokens, less than one max_seq_len request ({max_seq_len:,})")
    return p


def plan(registry, profile: str, gpu: Gpu, env: dict[str, str]) -> Plan:
    models = registry.profile(profile)
    free = gpu.usable_gib
    plans = []
    from trtllm.launch import checkpoint_kv_cache

    for m in models:
        if m.serve.engine == "vllm":
            p = plan_vllm(m, env, gpu)
        elif m.serve.engine == "llamacpp":
            p = plan_llamacpp(m, env)
        else:
            checkpoint = env.get(m.env_prefix + "CHECKPOINT") or m.serve.checkpoint or m.id
            p = plan_model(m, serve_options(m, env), free, checkpoint_kv_cache(checkpoint))
        if m.serve.engine != "trtllm" and p.total_gib > free and not p.problems:
            p.problems.append(f"needs {p.total_gib:.1f} GiB, {free:.1f} GiB left by the models before it")
        if m.memory.weights_format == "nvfp4" and not gpu.blackwell:
            p.problems.insert(0, "NVFP4 weights need a Blackwell GPU (SM100/SM120/GB10)")
        plans.append(p)
        free -= p.total_gib
    return Plan(gpu, profile, plans, recommend(plans, gpu))


def recommend(plans: list[ModelPlan], gpu: Gpu) -> dict[str, str]:
    """Settings that make a profile fit: KV caps sharing what weights, runtime and Mamba state
    leave (10% headroom), each model wanting room for a few full-length sequences."""
    if all(not p.problems for p in plans) and sum(p.total_gib for p in plans) <= gpu.usable_gib:
        return {}
    if any("Blackwell" in x for p in plans for x in p.problems):
        return {}
    fixed = sum(p.weights_gib + p.runtime_gib + p.ssm_gib for p in plans)
    budget = (gpu.usable_gib - fixed) * 0.9
    if budget <= 0:
        return {}
    if any(p.model.serve.engine != "trtllm" for p in plans):
        return {}   # KV caps in tokens are trtllm's knob; vLLM and llama.cpp are sized by their own
    want = {p.model.id: min(p.max_batch_size, TARGET_FULL_SEQUENCES) * p.max_seq_len for p in plans}
    need = sum(want[p.model.id] * p.kv_bytes_per_token for p in plans) / GIB
    scale = min(1.0, budget / need)
    out: dict[str, str] = {}
    for p in plans:
        tokens = int(want[p.model.id] * scale) // 1024 * 1024
        out[p.model.env_prefix + "KV_CACHE_MAX_TOKENS"] = str(tokens)
        if tokens < p.max_seq_len:
            out[p.model.env_prefix + "MAX_SEQ_LEN"] = str(max(tokens, 1024))
    return out


def render_text(pl: Plan) -> str:
    g = pl.gpu
    lines = [f"Profile '{pl.profile}' on {g.name}: {g.usable_gib:.1f} GiB usable "
             f"({g.memory_gib:.1f} total, {g.reserve_gib:.1f} kept back)" + (f"; {g.note}" if g.note else "")]
    head = f"{'model':44} {'weights':>8} {'runtime':>8} {'KV cache':>22} {'Mamba':>7} {'total':>8}"
    lines += [head, "-" * len(head)]
    for p in pl.models:
        kv = f"{p.kv_tokens:,} tok {p.kv_dtype} {p.kv_gib:5.1f}"
        lines.append(f"{p.model.id:44} {p.weights_gib:8.1f} {p.runtime_gib:8.1f} {kv:>22} {p.ssm_gib:7.1f} "
                     f"{p.total_gib:8.1f}")
    lines.append(f"{'all models (GiB)':44} {'':8} {'':8} {'':>22} {'':7} {pl.used_gib:8.1f}")
    for p in pl.models:
        for problem in p.problems:
            lines.append(f"  ! {p.model.id}: {problem}")
    if pl.fits:
        lines.append(f"FITS: {g.usable_gib - pl.used_gib:.1f} GiB to spare.")
    else:
        lines.append("DOES NOT FIT as configured.")
        if any("Blackwell" in x for p in pl.models for x in p.problems):
            lines.append("  On Hopper, serve FP8 instead: NEMOTRON_CHECKPOINT=nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-FP8,"
                         " and for Qwen build one: python -m build_engines quantize --model qwen --quant fp8,"
                         " then QWEN_CHECKPOINT=/engines/<its folder>.")
    if pl.settings:
        lines.append("To fit, put in .env (KV caps sharing what is left, 10% headroom):")
        lines += [f"  {k}={v}" for k, v in pl.settings.items()]
    elif not pl.fits and sum(p.weights_gib + p.runtime_gib + p.ssm_gib for p in pl.models) > g.usable_gib:
        lines.append("  The weights and runtime alone exceed this GPU: run one model per GPU (a single-model "
                     "profile), or lower MAX_BATCH_SIZE where a Mamba state is listed.")
    return "\n".join(lines)


def render_markdown(plans: list[Plan]) -> str:
    rows = ["| profile | GPU | usable GiB | per model GiB: weights + runtime + KV and Mamba state (KV tokens) | total GiB | verdict |",
            "|---|---|---:|---|---:|---|"]
    for pl in plans:
        per = "; ".join(f"{p.model.aliases[0] if p.model.aliases else p.model.id}: {p.weights_gib:.1f} + "
                        f"{p.runtime_gib:.0f} + {p.kv_gib + p.ssm_gib:.1f} ({p.kv_tokens // 1024}k)" for p in pl.models)
        problems = dict.fromkeys(x for p in pl.models for x in p.problems[:1])
        verdict = "fits" if pl.fits else "no: " + "; ".join(problems)
        rows.append(f"| {pl.profile} | {pl.gpu.key} | {pl.gpu.usable_gib:.0f} | {per} | {pl.used_gib:.1f} | {verdict} |")
    return "\n".join(rows)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="compose profile from configs/models.yaml (e.g. multi)")
    parser.add_argument("--gpu", choices=sorted(GPUS), help="target GPU")
    parser.add_argument("--gpu-memory-gib", type=float, help="override the GPU's total memory in GiB")
    parser.add_argument("--env-file", type=Path,
                        help="a .env whose knobs override the registry's defaults (default: ./.env if present)")
    parser.add_argument("--all", action="store_true", help="every profile on every GPU")
    parser.add_argument("--markdown", action="store_true", help="one markdown table (for the README)")


def main(args: argparse.Namespace) -> int:
    try:
        registry = load_registry()
        env = deployment_env(args.env_file)
        if args.all:
            pairs = [(p, g) for p in registry.profiles for g in GPUS.values()]
        elif args.profile and args.gpu:
            gpu = GPUS[args.gpu]
            if args.gpu_memory_gib:
                gpu = Gpu(gpu.key, f"{gpu.name}, {args.gpu_memory_gib} GiB", args.gpu_memory_gib, gpu.reserve_gib,
                          gpu.blackwell, gpu.note)
            pairs = [(args.profile, gpu)]
        else:
            print("plan_memory: give --profile and --gpu, or --all", file=sys.stderr)
            return 2
        plans = [plan(registry, p, g, env) for p, g in pairs]
    except (RegistryError, ValueError, OSError) as err:
        print(f"plan_memory: {err}", file=sys.stderr)
        return 2
    if args.markdown:
        print(render_markdown(plans))
    else:
        print("\n\n".join(render_text(pl) for pl in plans))
    return 0 if all(pl.fits for pl in plans) else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cli_args(ap)
    sys.exit(main(ap.parse_args()))
