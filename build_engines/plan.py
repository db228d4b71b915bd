"""`plan`: what a build will do, where, and how much disk and GPU memory it needs.

    python -m build_engines plan --model qwen3-4b
    python -m build_engines plan --model qwen3-4b --offline      # no Hub lookups

Sizes come from the source's safetensors (local, cached, or the Hub's file listing). Estimates:
the export is ~35% (NVFP4) or ~55% (FP8) of the BF16 source; calibration holds the BF16 model on
the GPU plus activations for one calibration text (~10% + 2 GB).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from build_engines import calib, download, manifest
from build_engines.quantize import SIZE_RATIO
from build_engines.recipe import BuildError, Recipe, add_recipe_args, fail, resolve


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    source_bytes: int | None
    cached: bool
    built: bool
    calib_texts: int

    @property
    def output_bytes(self) -> int | None:
        return None if self.source_bytes is None else int(self.source_bytes * SIZE_RATIO[self.recipe.quant])

    @property
    def download_bytes(self) -> int | None:
        return 0 if self.cached else self.source_bytes

    @property
    def gpu_bytes(self) -> int | None:
        return None if self.source_bytes is None else int(self.source_bytes * 1.1 + 2e9)


def make(recipe: Recipe, cache_dir: Path | None, offline: bool) -> Plan:
    try:
        download.fetch(recipe, cache_dir, offline=True, quiet=True)
        cached = True
    except BuildError:
        cached = False
    done = manifest.read(recipe.output)
    texts = len(calib.load(recipe.calibration, recipe.calib_samples).texts)
    return Plan(recipe, download.source_bytes(recipe, cache_dir, offline), cached,
                done is not None and done.get("recipe") == recipe.identity(), texts)


def gb(n: int | None) -> str:
    return "unknown (offline and not cached)" if n is None else f"{n / 1e9:.1f} GB"


def render(p: Plan) -> str:
    r = p.recipe
    steps = [
        f"model      {r.model_id or r.source}",
        f"source     {r.source} @ {r.revision} ({'local directory' if r.source_is_local else 'cached' if p.cached else 'to download'})",
        f"quantize   {r.quant.upper()} weights, KV cache {r.kv_cache}, ModelOpt PTQ calibrated on "
        f"'{r.calibration}' ({p.calib_texts} texts" + (f" of {r.calib_samples} asked for" if p.calib_texts < r.calib_samples
                                                      else "") + f", up to {r.calib_seq_len} tokens each)",
        f"output     {r.output}" + (" (already built: quantize is a no-op)" if p.built else ""),
        "",
        f"1. download   {gb(p.download_bytes)} into the Hugging Face cache",
        f"2. quantize   GPU memory ~{gb(p.gpu_bytes)} (BF16 model + calibration); writes ~{gb(p.output_bytes)}",
        "3. verify     structure, scales and sha256 of every file",
        "4. serve      trtllm-serve's PyTorch backend loads the output directly (no engine build); "
        "NVFP4 needs a Blackwell GPU",
        f"disk needed: ~{gb(None if p.source_bytes is None else (p.download_bytes or 0) + p.output_bytes)}",
    ]
    return "\n".join(steps)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    add_recipe_args(parser)
    download.add_hub_args(parser)


def main(args: argparse.Namespace) -> int:
    try:
        recipe = resolve(args)
        print(render(make(recipe, args.cache_dir, args.offline)))
    except BuildError as err:
        return fail(err)
    return 0
