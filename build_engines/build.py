"""`build`: the TensorRT engine path, where TensorRT-LLM has one for the architecture.

    python -m build_engines build --model qwen3-4b            # says whether an engine is needed
    python -m build_engines build --model qwen3-4b --engine   # runs trtllm-build (TensorRT-LLM container only)

trtllm-serve's default PyTorch backend loads the checkpoint `quantize` exported, so most users
need no engine: without --engine this command only says so. The legacy TensorRT backend
(`trtllm-serve <engine dir> --backend tensorrt`) needs an engine built for one GPU and one set
of limits. It exists only for architectures in TensorRT-LLM's legacy model map
(tensorrt_llm/models/__init__.py MODEL_MAP: Llama, Mistral, Mixtral, Qwen2, Qwen2-MoE, Qwen3
dense, Gemma, Phi-3, ...), and not for hybrid or newer MoE models - Nemotron-H runs only on the
PyTorch/AutoDeploy backends, Qwen3-MoE, DeepSeek-V3 and gpt-oss only on PyTorch.

--engine, inside the TensorRT-LLM image (refused clearly anywhere else):
1. `trtllm-build` reads TensorRT-LLM's own checkpoint format, not a unified HF checkpoint, so the
   export is converted first the way TensorRT-LLM's LLM API does it for a pre-quantized HF
   checkpoint (llmapi/llm_utils.py ModelLoader._load_model_from_hf: the QuantConfig comes from
   hf_quant_config.json, then MODEL_MAP[architecture].from_hugging_face(...).save_checkpoint());
2. `trtllm-build --checkpoint_dir ... --output_dir ... --max_batch_size ... --max_seq_len ...`
   (`--gemm_plugin nvfp4` for NVFP4, as ModelLoader forces), its output streamed;
3. the tokenizer is copied beside the engine. Everything is written into a temporary directory
   and renamed into `<checkpoint>-engine` only when trtllm-build succeeded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from build_engines import manifest
from build_engines.recipe import BuildError, add_recipe_args, atomic_directory, check_free_disk, fail, resolve

# model_type -> why there is no engine path in TensorRT-LLM.
PYTORCH_ONLY = {
    "nemotron_h": "Nemotron-H (hybrid Mamba-2 + MoE) runs only on the PyTorch/AutoDeploy backends",
    "qwen3_moe": "Qwen3-MoE is supported on the PyTorch backend only",
    "qwen3_next": "Qwen3-Next is supported on the PyTorch backend only",
    "deepseek_v3": "DeepSeek-V3 is supported on the PyTorch backend only",
    "gpt_oss": "gpt-oss is supported on the PyTorch backend only",
}
# HF architectures with a legacy TensorRT model (a subset of tensorrt_llm.models.MODEL_MAP, checked at
# NVIDIA/TensorRT-LLM 02267d3). Used to answer without TensorRT-LLM installed; inside the container the
# installed MODEL_MAP is the authority.
ENGINE_ARCHITECTURES = {
    "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM", "Qwen2MoeForCausalLM",
    "Qwen3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM",
    "GraniteForCausalLM", "InternLM2ForCausalLM", "ExaoneForCausalLM",
}
TOKENIZER_GLOBS = ("tokenizer*", "vocab.json", "merges.txt", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")


@dataclass(frozen=True)
class EngineResult:
    engine_dir: Path | None     # None: no engine needed or built
    message: str


def engine_dir(checkpoint: Path) -> Path:
    return checkpoint.parent / f"{checkpoint.name}-engine"


def _architecture(checkpoint: Path) -> tuple[str | None, str | None, dict]:
    config_path = checkpoint / "config.json"
    if not config_path.exists():
        raise BuildError(f"{checkpoint}: no checkpoint there; run `python -m build_engines quantize` first")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    archs = config.get("architectures") or [None]
    return config.get("model_type"), archs[0], config


def _quant_config(checkpoint: Path):
    from tensorrt_llm.models.modeling_utils import QuantConfig
    from tensorrt_llm.quantization import QuantAlgo

    path = checkpoint / "hf_quant_config.json"
    if not path.exists():
        return QuantConfig()
    hfq = dict(json.loads(path.read_text(encoding="utf-8")).get("quantization") or {})
    qc = QuantConfig(quant_algo=QuantAlgo(hfq.pop("quant_algo")))
    kv = hfq.pop("kv_cache_quant_algo", None)
    if kv:
        qc.kv_cache_quant_algo = QuantAlgo(kv)
    for key, value in hfq.items():          # group_size, exclude_modules, ...: as ModelLoader copies them
        setattr(qc, key, value)
    return qc


def run(checkpoint: Path, engine: bool, max_batch_size: int, max_seq_len: int, force: bool,
        trtllm_build: str | None = None) -> EngineResult:
    """Say whether an engine is needed; with `engine`, build one with the `trtllm_build` executable."""
    model_type, arch, _ = _architecture(checkpoint)
    if model_type in PYTORCH_ONLY:
        reason = PYTORCH_ONLY[model_type]
        if engine:
            raise BuildError(f"no TensorRT engine path for model_type '{model_type}': {reason}. "
                             f"Serve {checkpoint} with the PyTorch backend (no build needed)")
        return _say(EngineResult(None, f"no engine needed: {reason}; trtllm-serve loads {checkpoint} directly"))
    if not engine:
        return _say(EngineResult(None, f"no engine needed: trtllm-serve's PyTorch backend loads {checkpoint} "
                                       "directly (--engine builds one for the legacy TensorRT backend)"))
    if trtllm_build is None:
        raise BuildError("trtllm-build is not on PATH: it ships only in the TensorRT-LLM container; run "
                         "`docker compose --profile build run --rm build build --model ... --engine` "
                         "(or serve the checkpoint with the PyTorch backend: no engine needed)")
    try:
        from tensorrt_llm.models import MODEL_MAP
    except ImportError:
        raise BuildError("trtllm-build is here but the tensorrt_llm package is not importable by this Python: "
                         "build inside the TensorRT-LLM container") from None
    if arch not in MODEL_MAP:
        raise BuildError(f"architecture '{arch}' has no TensorRT engine path in this TensorRT-LLM "
                         "(not in tensorrt_llm.models.MODEL_MAP); serve it with the PyTorch backend")
    out = engine_dir(checkpoint)
    if out.exists() and not force:
        return _say(EngineResult(out, f"already built: {out} (--force rebuilds)"))
    ckpt_bytes = sum(p.stat().st_size for p in checkpoint.glob("*.safetensors"))
    check_free_disk(out.parent, int(ckpt_bytes * 2.2) + (64 << 20))  # converted checkpoint + engine, then one goes
    quant = _quant_config(checkpoint)
    with atomic_directory(out, replace=force) as tmp:
        trt_ckpt = tmp / "trtllm-checkpoint"
        print(f"converting {checkpoint} ({arch}) to a TensorRT-LLM checkpoint")
        model = MODEL_MAP[arch].from_hugging_face(str(checkpoint), dtype="auto", quant_config=quant,
                                                  load_model_on_cpu=True)
        model.save_checkpoint(str(trt_ckpt), save_config=True)
        del model
        cmd = [trtllm_build, "--checkpoint_dir", str(trt_ckpt), "--output_dir", str(tmp),
               "--max_batch_size", str(max_batch_size), "--max_seq_len", str(max_seq_len)]
        algo = getattr(getattr(quant, "quant_algo", None), "value", getattr(quant, "quant_algo", None))
        if str(algo) == "NVFP4":
            cmd += ["--gemm_plugin", "nvfp4"]
        print("running " + " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, check=False).returncode
        if rc != 0:
            raise BuildError(f"trtllm-build failed (exit status {rc}); nothing was written to {out}")
        shutil.rmtree(trt_ckpt)
        for pattern in TOKENIZER_GLOBS:
            for f in checkpoint.glob(pattern):
                shutil.copy2(f, tmp / f.name)
        (tmp / "build_args.json").write_text(json.dumps({
            "checkpoint": str(checkpoint), "architecture": arch, "max_batch_size": max_batch_size,
            "max_seq_len": max_seq_len, "command": cmd[1:], "tools": manifest.versions()}, indent=2) + "\n")
    return _say(EngineResult(out, f"built engine {out}: serve it with `trtllm-serve {out} --backend tensorrt`"))


def _say(result: EngineResult) -> EngineResult:
    print(result.message)
    return result


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    add_recipe_args(parser)
    parser.add_argument("--engine", action="store_true", help="build a TensorRT engine (default: only say if one is needed)")
    parser.add_argument("--max-batch-size", type=int, default=64, help="engine limit (default: %(default)s)")
    parser.add_argument("--max-seq-len", type=int, default=32768, help="engine limit (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild an existing engine (default: off)")


def main(args: argparse.Namespace) -> int:
    try:
        if args.max_batch_size <= 0 or args.max_seq_len <= 0:
            raise BuildError("--max-batch-size and --max-seq-len must be positive")
        checkpoint = args.output.resolve() if args.output and not (args.model or args.source) else resolve(args).output
        if not (checkpoint / "config.json").exists():
            raise BuildError(f"{checkpoint}: not built yet; run `python -m build_engines quantize` first")
        run(checkpoint, args.engine, args.max_batch_size, args.max_seq_len, args.force,
            trtllm_build=shutil.which("trtllm-build"))
    except BuildError as err:
        return fail(err)
    return 0
