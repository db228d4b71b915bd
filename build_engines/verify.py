"""`verify`: a structural check of an exported checkpoint, without loading it on a GPU.

    python -m build_engines verify --model qwen3-4b
    python -m build_engines verify --output engines/some-checkpoint

Checks (each failure names the file or tensor): config.json carries a ModelOpt
quantization_config whose quant_algo matches hf_quant_config.json and the manifest; every
safetensors shard listed in the index exists and every indexed tensor is in its shard, with no
unlisted shard; NVFP4 linears have uint8 packed weights, float8_e4m3fn block scales of shape
[out, in/16] and float32 weight_scale_2 / input_scale; FP8 linears have float8_e4m3fn weights and
float32 scales; every per-tensor scale (input_scale, weight_scale_2, FP8 weight_scale,
k_scale, v_scale) is one finite positive value; excluded modules (lm_head, embeddings) stay
unquantized; an FP8 KV cache has
k_scale and v_scale on every k_proj / v_proj; a tokenizer is present; every file's sha256
matches build_manifest.json. Exit status 0 valid, 1 invalid, 2 nothing to verify.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from build_engines import manifest
from build_engines.recipe import BuildError, add_recipe_args, fail, require, resolve, sha256

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")
ALGOS = {"nvfp4": "NVFP4", "fp8": "FP8"}


@dataclass
class Report:
    directory: Path
    problems: list[str] = field(default_factory=list)
    quantized: int = 0
    tensors: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_json(path: Path, report: Report) -> dict | None:
    if not path.exists():
        report.problems.append(f"{path.name}: missing")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        report.problems.append(f"{path.name}: not valid JSON ({err})")
        return None


def _tensor_headers(directory: Path, report: Report) -> dict[str, tuple[str, str, list[int]]]:
    """name -> (shard, dtype, shape) from the safetensors headers; shards checked against the index."""
    from build_engines.recipe import require

    require("safetensors")
    from safetensors import safe_open

    shards = sorted(p.name for p in directory.glob("*.safetensors"))
    index = directory / "model.safetensors.index.json"
    if index.exists():
        weight_map = (json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {})
        listed = set(weight_map.values())
        for shard in sorted(listed - set(shards)):
            report.problems.append(f"{shard}: listed in model.safetensors.index.json but missing")
        for shard in sorted(set(shards) - listed):
            report.problems.append(f"{shard}: not listed in model.safetensors.index.json")
    else:
        weight_map = None
        if len(shards) != 1:
            report.problems.append(f"expected one model.safetensors or an index, found {shards or 'no shards'}")
    out = {}
    for shard in shards:
        try:
            with safe_open(str(directory / shard), "pt") as f:
                for name in f.keys():
                    s = f.get_slice(name)
                    out[name] = (shard, s.get_dtype(), list(s.get_shape()))
        except Exception as err:  # noqa: BLE001 - any unreadable shard is a finding, not a crash
            report.problems.append(f"{shard}: unreadable safetensors ({err})")
    if weight_map is not None:
        for name, shard in weight_map.items():
            if name not in out and (directory / shard).exists():
                report.problems.append(f"{name}: indexed in {shard} but not in it")
    return out


def _excluded(name: str, patterns: list[str]) -> bool:
    module = name.rsplit(".", 1)[0]
    return any(re.fullmatch(p.replace(".", r"\.").replace("*", ".*"), module) for p in patterns)


def check(directory: Path, expect_quant: str | None = None, expect_kv: str | None = None,
          check_hashes: bool = True) -> Report:
    report = Report(directory)
    if not directory.is_dir():
        report.problems.append(f"{directory}: not a directory")
        return report
    config = _read_json(directory / "config.json", report) or {}
    hfq = (_read_json(directory / "hf_quant_config.json", report) or {}).get("quantization", {})
    qcfg = config.get("quantization_config") or {}
    if config and qcfg.get("quant_method") != "modelopt":
        report.problems.append("config.json: quantization_config.quant_method is not 'modelopt'")
    algo = hfq.get("quant_algo")
    if hfq and algo not in ALGOS.values():
        report.problems.append(f"hf_quant_config.json: quant_algo {algo!r} is not NVFP4 or FP8")
    if qcfg and hfq and qcfg.get("quant_algo") != algo:
        report.problems.append(f"config.json: quant_algo {qcfg.get('quant_algo')!r} differs from "
                               f"hf_quant_config.json {algo!r}")
    if expect_quant and algo and algo != ALGOS[expect_quant]:
        report.problems.append(f"hf_quant_config.json: quant_algo {algo!r}, expected {ALGOS[expect_quant]!r}")
    kv = hfq.get("kv_cache_quant_algo")
    if expect_kv == "fp8" and kv != "FP8":
        report.problems.append(f"hf_quant_config.json: kv_cache_quant_algo {kv!r}, expected 'FP8'")
    if not any((directory / f).exists() for f in TOKENIZER_FILES):
        report.problems.append(f"tokenizer: none of {', '.join(TOKENIZER_FILES)} present")

    tensors = _tensor_headers(directory, report)
    report.tensors = len(tensors)
    excluded = hfq.get("exclude_modules") or []
    group = int(hfq.get("group_size") or 16)
    for name, (shard, dtype, shape) in tensors.items():
        if not name.endswith(".weight"):
            continue
        module = name[: -len(".weight")]
        packed = dtype == "U8" and algo == "NVFP4"
        fp8 = dtype == "F8_E4M3" and algo == "FP8"
        if _excluded(name, excluded):
            if packed or fp8:
                report.problems.append(f"{name}: quantized although {module} is in exclude_modules")
            continue
        if not (packed or fp8):
            continue
        report.quantized += 1
        need = {"weight_scale": "F8_E4M3" if packed else "F32", "input_scale": "F32"}
        if packed:
            need["weight_scale_2"] = "F32"
        for suffix, want in need.items():
            key = f"{module}.{suffix}"
            if key not in tensors:
                report.problems.append(f"{key}: missing (scale of quantized {name})")
            elif tensors[key][1] != want:
                report.problems.append(f"{key}: dtype {tensors[key][1]}, expected {want}")
        if packed and f"{module}.weight_scale" in tensors:
            out_f, in_half = shape
            want_shape = [out_f, in_half * 2 // group]
            if tensors[f"{module}.weight_scale"][2] != want_shape:
                report.problems.append(f"{module}.weight_scale: shape {tensors[f'{module}.weight_scale'][2]}, "
                                       f"expected {want_shape} for packed weight {shape} and group {group}")
    if algo and report.quantized == 0 and not any(p.endswith("not valid JSON") for p in report.problems):
        report.problems.append(f"no {algo} quantized linear weights found in the shards")
    if kv == "FP8":
        for name in tensors:
            for proj, scale in ((".k_proj.weight", "k_scale"), (".v_proj.weight", "v_scale")):
                if name.endswith(proj) and name[: -len(".weight")] + "." + scale not in tensors:
                    report.problems.append(f"{name[: -len('.weight')]}.{scale}: missing (FP8 KV cache)")
    _check_per_tensor_scales(directory, tensors, algo, report)

    data = manifest.read(directory)
    if data is None:
        report.problems.append(f"{manifest.MANIFEST}: missing or not JSON")
    else:
        recipe = data.get("recipe", {})
        if algo and recipe.get("quant") and ALGOS.get(recipe["quant"]) != algo:
            report.problems.append(f"{manifest.MANIFEST}: recipe quant {recipe['quant']!r} but checkpoint is {algo}")
        files = data.get("files", {})
        present = {p.relative_to(directory).as_posix() for p in directory.rglob("*")
                   if p.is_file() and p.name != manifest.MANIFEST}
        for rel in sorted(set(files) - present):
            report.problems.append(f"{rel}: in the manifest but missing")
        for rel in sorted(present - set(files)):
            report.problems.append(f"{rel}: not in the manifest")
        if check_hashes:
            from tqdm import tqdm

            for rel in tqdm(sorted(set(files) & present), desc="hashing", unit="file", leave=False):
                info = files[rel]
                path = directory / rel
                if path.stat().st_size != info.get("bytes"):
                    report.problems.append(f"{rel}: {path.stat().st_size} bytes, manifest says {info.get('bytes')}")
                elif sha256(path) != info.get("sha256"):
                    report.problems.append(f"{rel}: sha256 differs from the manifest (corrupted or changed)")
    return report


PER_TENSOR = (".input_scale", ".weight_scale_2", ".k_scale", ".v_scale")


def _check_per_tensor_scales(directory: Path, tensors: dict, algo: str | None, report: Report) -> None:
    """Per-tensor scales are one finite, positive float32 each: a NaN or 0 (a layer calibration never
    reached) would serve garbage without any loader complaining."""
    import math

    from safetensors import safe_open

    by_shard: dict[str, list[str]] = {}
    for name, (shard, _dtype, _shape) in tensors.items():
        fp8_weight_scale = algo == "FP8" and name.endswith(".weight_scale")
        if name.endswith(PER_TENSOR) or fp8_weight_scale:
            by_shard.setdefault(shard, []).append(name)
    for shard, names in sorted(by_shard.items()):
        try:
            with safe_open(str(directory / shard), "pt") as f:
                for name in sorted(names):
                    t = f.get_tensor(name)
                    if t.numel() != 1:
                        report.problems.append(f"{name}: shape {list(t.shape)}, expected one per-tensor value")
                        continue
                    value = float(t.float().item())
                    if not (math.isfinite(value) and value > 0):
                        report.problems.append(f"{name}: {value} in {shard}, expected a finite positive scale")
        except Exception:  # noqa: BLE001 - an unreadable shard is already reported by _tensor_headers
            continue


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    add_recipe_args(parser)
    parser.add_argument("--no-hashes", action="store_true", help="skip the sha256 check (default: check)")


def main(args: argparse.Namespace) -> int:
    try:
        if args.output and not (args.model or args.source):
            directory, quant, kv = args.output.resolve(), None, None
        else:
            recipe = resolve(args)
            directory, quant, kv = recipe.output, recipe.quant, recipe.kv_cache
    except BuildError as err:
        return fail(err)
    if not directory.exists():
        return fail(BuildError(f"{directory} does not exist: run `python -m build_engines quantize` first"))
    try:
        require("safetensors")
    except BuildError as err:
        return fail(err)
    report = check(directory, quant, kv, check_hashes=not args.no_hashes)
    for problem in report.problems:
        print(f"FAIL {problem}")
    if report.ok:
        print(f"OK {directory}: {report.quantized} quantized linears, {report.tensors} tensors, hashes match")
        return 0
    print(f"{len(report.problems)} problem(s) in {directory}")
    return 1
