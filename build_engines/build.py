"""`build`: the TensorRT engine path, where TensorRT-LLM has one for the architecture.

    python -m build_engines build --model qwen3-4b            # says whether an engine is needed
    python -m build_engines build --model qwen3-4b --engine   # builds one (inside the TRT-LLM image)

trtllm-serve's default PyTorch backend loads the checkpoint `quantize` exported, so most users
need no engine. The legacy TensorRT backend (`--backend tensorrt`) needs an engine built for one
GPU and one set of limits; it exists for classic decoder architectures only, and not at all for
hybrid models such as Nemotron-H, which TensorRT-LLM runs on PyTorch/AutoDeploy only
(examples/models/core/nemotron/README_nemotron_nano_v3.md). The engine is built through
TensorRT-LLM's LLM API (tensorrt_llm._tensorrt_engine.LLM, then .save()), which reads ModelOpt's
hf_quant_config.json itself; output is written atomically like every other step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from build_engines import manifest
from build_engines.recipe import BuildError, add_recipe_args, atomic_directory, fail, resolve

# model_type -> why there is no engine path in TensorRT-LLM.
PYTORCH_ONLY = {
    "nemotron_h": "Nemotron-H (hybrid Mamba-2 + MoE) runs only on the PyTorch/AutoDeploy backends",
    "qwen3_moe": "Qwen3 MoE is supported on the PyTorch backend only",
    "qwen3": "Qwen3 is supported on the PyTorch backend only",
    "deepseek_v3": "DeepSeek-V3 is supported on the PyTorch backend only",
    "gpt_oss": "gpt-oss is supported on the PyTorch backend only",
}
# Architectures with a TensorRT (engine) path in TensorRT-LLM's legacy model definitions.
ENGINE_ARCHS = {"llama", "mistral", "mixtral", "qwen2", "gemma2", "phi3"}


def engine_dir(checkpoint: Path) -> Path:
    return checkpoint.parent / f"{checkpoint.name}-engine"


def run(checkpoint: Path, engine: bool, max_batch_size: int, max_seq_len: int, force: bool) -> Path | None:
    config_path = checkpoint / "config.json"
    if not config_path.exists():
        raise BuildError(f"{checkpoint}: no checkpoint there; run `python -m build_engines quantize` first")
    arch = json.loads(config_path.read_text()).get("model_type")
    if arch in PYTORCH_ONLY:
        reason = PYTORCH_ONLY[arch]
        if engine:
            raise BuildError(f"no TensorRT engine path for model_type '{arch}': {reason}. "
                             f"Serve {checkpoint} with the PyTorch backend (no build needed)")
        print(f"no engine needed: {reason}; trtllm-serve loads {checkpoint} directly")
        return None
    if not engine:
        print(f"no engine needed: trtllm-serve's PyTorch backend loads {checkpoint} directly "
              "(--engine builds one for the legacy TensorRT backend)")
        return None
    if arch not in ENGINE_ARCHS:
        raise BuildError(f"model_type '{arch}' has no TensorRT engine path in TensorRT-LLM "
                         f"(engine architectures: {', '.join(sorted(ENGINE_ARCHS))}); serve it with the PyTorch backend")
    try:
        from tensorrt_llm._tensorrt_engine import LLM
        from tensorrt_llm.llmapi import BuildConfig
    except ImportError:
        raise BuildError("TensorRT-LLM is not installed here: build inside its container, "
                         "`docker compose --profile build run --rm build build --model ... --engine`") from None
    out = engine_dir(checkpoint)
    if out.exists() and not force:
        print(f"already built: {out} (--force rebuilds)")
        return out
    with atomic_directory(out, replace=force) as tmp:
        llm = LLM(model=str(checkpoint), build_config=BuildConfig(max_batch_size=max_batch_size,
                                                                 max_seq_len=max_seq_len))
        llm.save(str(tmp))
        (tmp / "build_args.json").write_text(json.dumps({"checkpoint": str(checkpoint), "max_batch_size":
                                                         max_batch_size, "max_seq_len": max_seq_len}) + "\n")
    print(f"built engine {out}: serve it with `trtllm-serve serve {out} --backend tensorrt`")
    return out


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    add_recipe_args(parser)
    parser.add_argument("--engine", action="store_true", help="build a TensorRT engine (default: only say if one is needed)")
    parser.add_argument("--max-batch-size", type=int, default=64, help="engine limit (default: %(default)s)")
    parser.add_argument("--max-seq-len", type=int, default=32768, help="engine limit (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild an existing engine (default: off)")


def main(args: argparse.Namespace) -> int:
    try:
        recipe = resolve(args)
        if manifest.read(recipe.output) is None and (recipe.output / "config.json").exists() is False:
            raise BuildError(f"{recipe.output}: not built yet; run `python -m build_engines quantize` first")
        run(recipe.output, args.engine, args.max_batch_size, args.max_seq_len, args.force)
    except BuildError as err:
        return fail(err)
    return 0
