"""`quantize`: ModelOpt post-training quantization to NVFP4 or FP8, exported as a unified HF checkpoint.

    python -m build_engines quantize --model qwen3-4b                  # GPU, the registry recipe
    python -m build_engines quantize --source ./tiny --quant fp8 --device cpu --output /tmp/tiny-fp8

Steps, as NVIDIA's examples/llm_ptq/hf_ptq.py (NVIDIA/Model-Optimizer) does them: load the BF16
model with transformers; mtq.quantize() with NVFP4_DEFAULT_CFG or FP8_DEFAULT_CFG (lm_head,
embeddings and MoE router gates stay unquantized in those configs), plus FP8_KV_CFG through
mtq.update_quant_cfg_with_kv_cache_quant for an FP8 KV cache; a forward pass over the calibration
texts sets the scales; modelopt.torch.export.export_hf_checkpoint writes config.json with its
quantization_config, hf_quant_config.json and safetensors. ModelOpt writes no tokenizer, so it
is saved here, with the remote-code files of trust_remote_code models, and build_manifest.json.

Checked against the sources (nvidia-modelopt 0.47 in site-packages, NVIDIA/Model-Optimizer
examples/llm_ptq/hf_ptq.py): hf_ptq's QUANT_CFG_CHOICES maps nvfp4/fp8 to mtq.NVFP4_DEFAULT_CFG /
mtq.FP8_DEFAULT_CFG and KV_QUANT_CFG_CHOICES maps fp8 to FP8_KV_CFG, merged with
mtq.utils.update_quant_cfg_with_kv_cache_quant(cfg, FP8_KV_CFG["quant_cfg"]) (quantization/utils/
core_utils.py: deep copy, KV entries appended - in 0.47 "quant_cfg" is a list of
{"quantizer_name", "enable" | "cfg"} entries, no longer a dict). Both default configs start from
{"*": disabled} and disable *lm_head*, *router*, *mlp.gate.*, *block_sparse_moe.gate*,
*mixer.conv1d*, nn.Embedding, ... (config.py _default_disabled_quantizer_cfg), so nothing is
excluded by hand here. export/unified_export_hf.py export_hf_checkpoint(model, dtype=None,
export_dir, save_modelopt_state=False, components=None, extra_state_dict=None,
max_shard_size="10GB") writes no tokenizer.

The ModelOpt inside the TensorRT-LLM image is older (~0.37): the config merge, the Nemotron-H
preset and the export options are feature-detected (docs/trtllm.md, "ModelOpt in the image").

Safe by construction: everything is written to <output>.partial-<pid> and renamed into place
only after `verify` passes on it; a failure or Ctrl-C removes it; a finished build with the same
recipe is a no-op unless --force. Needs a CUDA GPU for real models (`--device cpu` is for tiny
test models: NVFP4 calibration and export work on CPU, NVFP4 inference does not).
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

from build_engines import calib as calib_mod
from build_engines import download, estimate, manifest, verify
from build_engines.recipe import (BuildError, Recipe, add_recipe_args, atomic_directory, check_free_disk, fail,
                                  require, resolve)

# model_type values whose unified HF export ModelOpt documents (examples/llm_ptq support matrix)
# and trtllm-serve loads. Others may work: --allow-untested-arch tries anyway.
SUPPORTED_ARCHS = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "nemotron_h",
                   "gemma2", "gemma3", "gemma3_text", "phi3", "deepseek_v3", "gpt_oss"}


# Architectures whose NVFP4/FP8 recipe is not the default one: Nemotron-H keeps attention, the
# Mamba layers feeding it and conv1d in BF16, which NVFP4_DEFAULT_CFG / FP8_DEFAULT_CFG would
# quantize. ModelOpt's Mamba-MoE presets do that (docs/trtllm.md, "ModelOpt in the image").
ARCH_PRESETS = {
    ("nemotron_h", "nvfp4"): "MAMBA_MOE_NVFP4_CONSERVATIVE_CFG",
    ("nemotron_h", "fp8"): "MAMBA_MOE_FP8_CONSERVATIVE_CFG",
}
DEFAULT_PRESETS = {"nvfp4": "NVFP4_DEFAULT_CFG", "fp8": "FP8_DEFAULT_CFG"}


def modelopt_version() -> str:
    try:
        import modelopt

        return str(modelopt.__version__)
    except Exception:  # noqa: BLE001 - only for messages
        return "unknown"


def quant_config(quant: str, kv_cache: str, model_type: str | None = None):
    """The ModelOpt config for this format and architecture, with an FP8 KV cache when asked.

    Works with the ModelOpt of the TensorRT-LLM image (~0.37: quant_cfg is a dict of patterns, no
    update_quant_cfg_with_kv_cache_quant) and with newer ones (a list of entries, the helper)."""
    import modelopt.torch.quantization as mtq

    name = ARCH_PRESETS.get((model_type, quant), DEFAULT_PRESETS[quant])
    cfg = getattr(mtq, name, None)
    if cfg is None:
        raise BuildError(f"nvidia-modelopt {modelopt_version()} has no {name}, the {quant.upper()} recipe NVIDIA "
                         f"uses for {model_type} ({DEFAULT_PRESETS[quant]} would quantize the attention and Mamba "
                         "layers it keeps in BF16): install a newer one (pip install -U 'nvidia-modelopt[torch]')")
    if kv_cache == "fp8":
        update = getattr(getattr(mtq, "utils", None), "update_quant_cfg_with_kv_cache_quant", None)
        if update is not None:  # as hf_ptq.py does it
            cfg = update(cfg, mtq.FP8_KV_CFG["quant_cfg"])
        elif isinstance(cfg["quant_cfg"], dict):  # older ModelOpt: quant_cfg is a dict of patterns
            import copy

            cfg = copy.deepcopy(cfg)
            cfg["quant_cfg"].update(mtq.FP8_KV_CFG["quant_cfg"])
        else:
            raise BuildError(f"nvidia-modelopt {modelopt_version()} has no update_quant_cfg_with_kv_cache_quant: "
                             "upgrade it (pip install -U 'nvidia-modelopt[torch]')")
    return cfg


def export_options(export_fn, max_shard_size: str) -> dict:
    """Keyword arguments this ModelOpt's export_hf_checkpoint takes (max_shard_size only from 0.44;
    0.43 swallows it in **kwargs, 0.37 raises TypeError after the whole calibration)."""
    import inspect

    try:
        params = inspect.signature(export_fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "max_shard_size" in params:
        return {"max_shard_size": max_shard_size}
    print(f"warning: nvidia-modelopt {modelopt_version()} cannot set the shard size (export_hf_checkpoint has no "
          f"max_shard_size before 0.44): --max-shard-size {max_shard_size} is ignored, shards use its default")
    return {}


def already_built(recipe: Recipe) -> bool:
    data = manifest.read(recipe.output)
    return data is not None and data.get("recipe") == recipe.identity()


def run(recipe: Recipe, *, device: str = "cuda", force: bool = False, offline: bool = False,
        cache_dir: Path | None = None, trust_remote_code: bool = False, allow_untested_arch: bool = False,
        max_shard_size: str = "5GB") -> Path:
    """Build (or confirm) the checkpoint for `recipe`; returns its directory."""
    if recipe.output.exists() and not force:
        if already_built(recipe):
            print(f"already built: {recipe.output} (same recipe; --force rebuilds)")
            return recipe.output
        raise BuildError(f"{recipe.output} exists but was built from another recipe or not by build_engines; "
                         "use --force to replace it, or --output elsewhere")
    for module in ("torch", "modelopt", "transformers"):
        require(module)
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BuildError("no CUDA GPU visible: calibrating a real model needs one (run in the TensorRT-LLM "
                         "container: docker compose --profile build run --rm build quantize ...); "
                         "--device cpu is only for tiny test models")
    try:
        import modelopt.torch.quantization as mtq
        from modelopt.torch.export import export_hf_checkpoint
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise BuildError(f"{err.name} is not installed: install the [build] extra: pip install -e '.[build]' "
                         "(torch first, see Makefile)") from None

    src, revision = download.fetch(recipe, cache_dir, offline)
    config = AutoConfig.from_pretrained(src, trust_remote_code=trust_remote_code)
    arch = getattr(config, "model_type", None)
    if arch not in SUPPORTED_ARCHS and not allow_untested_arch:
        raise BuildError(f"model_type '{arch}' is not one ModelOpt's unified export documents "
                         f"({', '.join(sorted(SUPPORTED_ARCHS))}); --allow-untested-arch tries anyway")
    cfg = quant_config(recipe.quant, recipe.kv_cache, arch)   # before loading: refuse early
    export_kwargs = export_options(export_hf_checkpoint, max_shard_size)
    src_bytes = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    if src_bytes == 0:
        raise BuildError(f"{src}: no safetensors weights (only .safetensors sources are supported)")
    out_bytes = estimate.sizes(estimate.from_safetensors(src), recipe.quant, src_bytes).output_bytes
    check_free_disk(recipe.output.parent, int(out_bytes * 1.2) + (64 << 20))
    calib = calib_mod.load(recipe.calibration, recipe.calib_samples, cache_dir, offline)

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    if device == "cuda":  # as hf_ptq.py's get_model: straight onto the GPU(s), not via a host-RAM copy
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16, device_map="auto",
                                                     trust_remote_code=trust_remote_code)
    else:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16, trust_remote_code=trust_remote_code)
        model.to(device)
    model.eval()
    first_device = next(model.parameters()).device
    batches = [tokenizer(text, return_tensors="pt", truncation=True, max_length=recipe.calib_seq_len)["input_ids"]
               for text in calib.texts]

    from tqdm import tqdm

    def forward_loop(m) -> None:
        with torch.no_grad():
            for ids in tqdm(batches, desc="calibrating", unit="text"):
                m(ids.to(first_device))

    model = mtq.quantize(model, cfg, forward_loop)
    enabled = sum(1 for name, mod in model.named_modules()
                  if name.endswith("weight_quantizer") and getattr(mod, "is_enabled", False))
    if enabled == 0:
        raise BuildError(f"ModelOpt found no layer it can quantize in this {arch} model")

    with atomic_directory(recipe.output, replace=force) as tmp:
        with torch.inference_mode():
            export_hf_checkpoint(model, export_dir=tmp, **export_kwargs)
        tokenizer.save_pretrained(tmp)
        if trust_remote_code:
            for py in src.glob("*.py"):
                shutil.copy2(py, tmp / py.name)
        manifest.write(tmp, recipe, revision,
                       {"set": calib.name, "texts": len(calib.texts), "seq_len": recipe.calib_seq_len,
                        "sha256": calib.sha256},
                       {"model_type": arch, "quantized_linears": enabled,
                        "seconds": round(time.monotonic() - started, 1)})
        report = verify.check(tmp, recipe.quant, recipe.kv_cache)
        if not report.ok:
            raise BuildError("the export failed verification: " + "; ".join(report.problems[:5]))
    print(f"built {recipe.output}: {recipe.quant.upper()} weights, KV cache {recipe.kv_cache}, "
          f"{enabled} quantized linears, {time.monotonic() - started:.0f} s")
    return recipe.output


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    add_recipe_args(parser)
    download.add_hub_args(parser)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (tiny test models only)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the output is complete (default: off)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the model's own Python code (e.g. Nemotron-H) (default: off)")
    parser.add_argument("--max-shard-size", default="5GB",
                        help="largest safetensors shard, e.g. 5GB or 500MB (default: %(default)s)")
    parser.add_argument("--allow-untested-arch", action="store_true",
                        help="try architectures outside ModelOpt's documented list (default: off)")


def main(args: argparse.Namespace) -> int:
    try:
        if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)?", args.max_shard_size):
            raise BuildError(f"--max-shard-size {args.max_shard_size!r}: expected e.g. 5GB, 500MB or a byte count")
        recipe = resolve(args)
        run(recipe, device=args.device, force=args.force, offline=args.offline, cache_dir=args.cache_dir,
            trust_remote_code=args.trust_remote_code or _registry_trusts(recipe),
            allow_untested_arch=args.allow_untested_arch, max_shard_size=args.max_shard_size)
    except BuildError as err:
        return fail(err)
    return 0


def _registry_trusts(recipe: Recipe) -> bool:
    if not recipe.model_id:
        return False
    from configs.registry import load_registry

    return load_registry().find(recipe.model_id).serve.trust_remote_code
