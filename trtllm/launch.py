"""Start trtllm-serve with this deployment's memory knobs laid over a model's options file.

Runs inside the TensorRT-LLM container as the entrypoint of every model service (compose.yml),
with only the standard library and PyYAML (both in NVIDIA's image):

    python3 /app/trtllm/launch.py --config /app/trtllm/qwen3-30b-a3b-fp4.yaml -- \\
        trtllm-serve serve nvidia/Qwen3-30B-A3B-FP4 --host 0.0.0.0 --port 8000 ...

Why a launcher: trtllm-serve merges the --extra_llm_api_options file over its CLI flags one
top-level key at a time (tensorrt_llm/llmapi/llm_args.py, update_llm_args_with_extra_dict), so a
file that sets kv_cache_config (both of ours must) silently discards
--kv_cache_free_gpu_memory_fraction. Memory settings therefore have to be in the file, and the
file is static; this script writes the effective file from it plus these environment variables
(empty or unset = keep the file's value), prints it, and execs the command:

    KV_CACHE_FRACTION    kv_cache_config.free_gpu_memory_fraction (of memory free after loading)
    KV_CACHE_MAX_TOKENS  kv_cache_config.max_tokens (a fixed cap; the smaller limit wins)
    MAX_SEQ_LEN          max_seq_len
    MAX_BATCH_SIZE       max_batch_size

Whenever max_batch_size is set, a cuda_graph_config in the file is kept within it: AutoDeploy
refuses cuda_graph_config.max_batch_size > max_batch_size, and TorchLlmArgs turns an unset one
into 128 (docs/trtllm.md, "AutoDeploy batch sizes"). A max_batch_size above max_num_tokens is
refused (AutoDeploy's cap_max_batch_size_to_max_num_tokens: each sequence needs a token slot).
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import sys
import tempfile

import yaml

CUDA_GRAPH_DEFAULT_MAX_BATCH_SIZE = 128   # TorchLlmArgs/CudaGraphConfig: `max_batch_size or 128`

# environment variable -> (path in the options file, parser)
KNOBS: dict[str, tuple[tuple[str, ...], type]] = {
    "KV_CACHE_FRACTION": (("kv_cache_config", "free_gpu_memory_fraction"), float),
    "KV_CACHE_MAX_TOKENS": (("kv_cache_config", "max_tokens"), int),
    "MAX_SEQ_LEN": (("max_seq_len",), int),
    "MAX_BATCH_SIZE": (("max_batch_size",), int),
}


class LaunchError(ValueError):
    pass


def _check(name: str, raw: str, kind: type) -> int | float:
    try:
        value = kind(raw)
    except ValueError:
        raise LaunchError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}") from None
    if kind is float and not 0 < value < 1:
        raise LaunchError(f"{name}={raw} must be between 0 and 1 (a fraction of free GPU memory)")
    if kind is int and value <= 0:
        raise LaunchError(f"{name}={raw} must be a positive integer")
    return value


def effective_options(options: dict, env: dict[str, str]) -> dict:
    """The options file with the knobs set in `env` laid over it (a new dict)."""
    out = copy.deepcopy(options)
    for name, (path, kind) in KNOBS.items():
        raw = env.get(name, "").strip()
        if not raw:
            continue
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = _check(name, raw, kind)
    _fit_batch_sizes(out)
    return out


def _fit_batch_sizes(options: dict) -> None:
    """Keep the CUDA-graph batch sizes and max_batch_size consistent (see the module docstring)."""
    top = options.get("max_batch_size")
    if top is None:
        return
    tokens = options.get("max_num_tokens")
    if tokens is not None and top > tokens:
        raise LaunchError(f"max_batch_size {top} exceeds max_num_tokens {tokens}: lower MAX_BATCH_SIZE")
    graphs = options.get("cuda_graph_config")
    if not isinstance(graphs, dict):
        return
    if graphs.get("batch_sizes"):
        # Both set must agree with each other in TensorRT-LLM: keep the list, drop the maximum.
        graphs["batch_sizes"] = sorted(b for b in graphs["batch_sizes"] if b <= top) or [top]
        graphs.pop("max_batch_size", None)
    else:
        graphs["max_batch_size"] = min(graphs.get("max_batch_size") or CUDA_GRAPH_DEFAULT_MAX_BATCH_SIZE, top)


def checkpoint_kv_cache(checkpoint: str, environ: dict[str, str] | None = None) -> str | None:
    """The KV-cache format a checkpoint declares ("fp8", "nvfp4", or "bf16" for none), which is what
    kv_cache_config.dtype: auto gives; None when the checkpoint is not on this machine yet.

    Reads hf_quant_config.json (quantization.kv_cache_quant_algo), else config.json's
    quantization_config, from a local directory or the Hugging Face cache (docs/trtllm.md, "KV cache")."""
    environ = os.environ if environ is None else environ
    if os.path.isdir(checkpoint):
        dirs = [checkpoint]
    else:
        hub = environ.get("HF_HUB_CACHE") or os.path.join(
            environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
        pattern = os.path.join(hub, "models--" + checkpoint.replace("/", "--"), "snapshots", "*")
        dirs = sorted(glob.glob(pattern), key=os.path.getmtime, reverse=True)
    for d in dirs:
        for name, section in (("hf_quant_config.json", "quantization"), ("config.json", "quantization_config")):
            try:
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue
            quant = data.get(section)
            if isinstance(quant, dict) and "quant_algo" in quant:
                return str(quant.get("kv_cache_quant_algo") or "bf16").lower()
            if name == "config.json":
                return "bf16"   # an unquantized checkpoint
    return None


def build_command(command: list[str], options_path: str) -> list[str]:
    if not command or os.path.basename(command[0]) != "trtllm-serve":
        raise LaunchError("expected a trtllm-serve command after --")
    for flag in ("--extra_llm_api_options", "--config"):
        if flag in command:
            raise LaunchError(f"{flag} is set by the launcher from --config; remove it from the command")
    if "--kv_cache_free_gpu_memory_fraction" in command:
        raise LaunchError("--kv_cache_free_gpu_memory_fraction is ignored when the options file sets "
                          "kv_cache_config; use KV_CACHE_FRACTION")
    return [*command, "--extra_llm_api_options", options_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the model's options file (trtllm/*.yaml)")
    parser.add_argument("--out-dir", default=tempfile.gettempdir(), help="where the effective file goes (default: %(default)s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- trtllm-serve serve MODEL ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        with open(args.config, encoding="utf-8") as f:
            options = effective_options(yaml.safe_load(f) or {}, dict(os.environ))
        out = os.path.join(args.out_dir, "llm_api_options." + os.path.basename(args.config))
        full = build_command(command, out)
    except (OSError, yaml.YAMLError, LaunchError) as err:
        print(f"launch.py: {err}", file=sys.stderr)
        return 2
    kv = (options.get("kv_cache_config") or {}).get("dtype", "auto")
    declared = checkpoint_kv_cache(command[2]) if len(command) > 2 else None
    if declared is not None:
        print(f"launch.py: KV cache dtype {kv} -> {declared if kv == 'auto' else kv} "
              f"(the checkpoint's hf_quant_config.json declares {declared})", flush=True)
    text = yaml.safe_dump(options, sort_keys=False)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"launch.py: effective {out}:\n{text}launch.py: exec {' '.join(full)}", flush=True)
    os.execvp(full[0], full)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
