"""`plan`: what a build will do, where, and how much disk and GPU memory it needs.

    python -m build_engines plan --model qwen3-4b
    python -m build_engines plan --all --offline        # every registry model with a build recipe, no Hub lookups

Parameter counts come from the source's safetensors headers when it is local or cached (exact),
else its config.json, else the Hub's metadata (online), else the registry's `build.params_b`;
the output names its source and says "rough" when it is not exact (see estimate.py for the bits
per parameter and the calibration-memory rule).
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from pathlib import Path

from build_engines import calib, download, estimate, manifest
from build_engines.recipe import BuildError, Recipe, add_recipe_args, fail, resolve


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    sizes: estimate.Sizes | None
    cached: bool
    built: bool
    calib_texts: int | None   # None: a Hub dataset not cached yet
    gpus: tuple[tuple[str, int], ...] | None = None   # (name, free bytes) per visible CUDA GPU; None: no torch

    def gpu_verdict(self) -> str:
        if self.gpus is None:
            return "torch is not installed here: cannot see GPUs"
        if not self.gpus:
            return "no CUDA GPU here: run quantize where one is (the compose build service)"
        free = sum(f for _, f in self.gpus)
        names = ", ".join(sorted({n for n, _ in self.gpus}))
        fits = self.sizes is None or free >= self.sizes.gpu_bytes
        return f"{len(self.gpus)} x {names}, {free / 1e9:.1f} GB free: " + ("enough" if fits else "NOT enough")

    @property
    def download_bytes(self) -> int | None:
        if self.cached or self.recipe.source_is_local:
            return 0
        return None if self.sizes is None else self.sizes.source_bytes

    @property
    def disk_bytes(self) -> int | None:
        """Download plus export, with 10% headroom (shards are written once, then renamed)."""
        if self.sizes is None:
            return None
        return int(((self.download_bytes or 0) + self.sizes.output_bytes) * 1.1)


def _cached_source(recipe: Recipe, cache_dir: Path | None) -> Path | None:
    """The source directory when its weights are on this machine (local, or complete in the HF cache)."""
    try:
        path = download.fetch(recipe, cache_dir, offline=True, quiet=True)[0]
    except BuildError:
        return None
    return path if download.complete(path) else None


def _hub_count(recipe: Recipe) -> tuple[estimate.ParamCount | None, int | None]:
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(recipe.source, revision=recipe.revision, files_metadata=True)
    except Exception:  # noqa: BLE001 - an estimate only; download reports real errors
        return None, None
    size = sum(s.size or 0 for s in info.siblings or [] if s.rfilename.endswith(".safetensors")) or None
    total = getattr(getattr(info, "safetensors", None), "total", None)
    if not total:
        return None, size
    return estimate.from_total(total / 1e9, recipe.embedding_params_b, "the Hub's safetensors metadata"), size


def make(recipe: Recipe, cache_dir: Path | None, offline: bool) -> Plan:
    src = _cached_source(recipe, cache_dir)
    count = estimate.from_directory(src) if src else None
    src_bytes = sum(p.stat().st_size for p in src.glob("*.safetensors")) if src else None
    if count is None and not offline and not recipe.source_is_local:
        count, src_bytes = _hub_count(recipe)
    if count is None and recipe.params_b:
        count = estimate.from_total(recipe.params_b, recipe.embedding_params_b, "registry build.params_b")
    sizes = estimate.sizes(count, recipe.quant, src_bytes) if count else None
    done = manifest.read(recipe.output)
    try:  # a Hub dataset is only counted when cached: plan downloads nothing
        texts: int | None = len(calib.load(recipe.calibration, recipe.calib_samples, cache_dir, offline=True).texts)
    except BuildError:
        if not recipe.calibration.startswith("hf:"):
            raise
        texts = None
    return Plan(recipe, sizes, src is not None, done is not None and done.get("recipe") == recipe.identity(), texts,
                visible_gpus())


def visible_gpus() -> tuple[tuple[str, int], ...] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return ()
    return tuple((torch.cuda.get_device_name(i), torch.cuda.mem_get_info(i)[0])
                 for i in range(torch.cuda.device_count()))


def gb(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 1e9:.1f} GB"


def render(p: Plan) -> str:
    r, s = p.recipe, p.sizes
    where = "local directory" if r.source_is_local else "cached" if p.cached else "to download"
    if s is None:
        params = "unknown (offline, not cached, and no build.params_b in the registry)"
    else:
        params = (f"{s.params.total / 1e9:.2f} B parameters, {s.params.quantized / 1e9:.2f} B quantized to "
                  f"{r.quant.upper()}, the rest BF16 ({s.note})")
    if p.calib_texts is None:
        texts = f"up to {r.calib_samples} texts; not cached yet, quantize downloads it"
    else:
        short = p.calib_texts < r.calib_samples
        texts = f"{p.calib_texts} texts" + (f" of {r.calib_samples} asked for" if short else "")
    steps = [
        f"model      {r.model_id or r.source}",
        f"source     {r.source} @ {r.revision} ({where})",
        f"params     {params}",
        f"quantize   {r.quant.upper()} weights, KV cache {r.kv_cache}, ModelOpt PTQ calibrated on "
        f"'{r.calibration}' ({texts}, up to {r.calib_seq_len} tokens each)",
        f"output     {r.output}" + (" (already built: quantize is a no-op)" if p.built else ""),
        "",
        f"1. download   {gb(p.download_bytes)} into the Hugging Face cache",
        f"2. quantize   GPU memory ~{gb(s and s.gpu_bytes)} (BF16 model + calibration activations); "
        f"writes ~{gb(s and s.output_bytes)}",
        f"             this machine: {p.gpu_verdict()}",
        "3. verify     structure, scales and sha256 of every file",
        "4. serve      trtllm-serve's PyTorch backend loads the output directly (no engine build); "
        "NVFP4 needs a Blackwell GPU",
        f"disk needed: ~{gb(p.disk_bytes)}",
    ]
    return "\n".join(steps)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    add_recipe_args(parser)
    download.add_hub_args(parser)
    parser.add_argument("--all", action="store_true",
                        help="plan every registry model that has a build recipe (default: off)")


def main(args: argparse.Namespace) -> int:
    try:
        if args.all:
            if args.model or args.source:
                raise BuildError("--all plans every registry model: drop --model / --source")
            from configs.registry import load_registry

            ids = [m.id for m in load_registry().models.values() if m.build is not None]
            for n, model_id in enumerate(ids):
                one = copy.copy(args)
                one.model = model_id
                print(("\n" if n else "") + render(make(resolve(one), args.cache_dir, args.offline)))
            return 0
        print(render(make(resolve(args), args.cache_dir, args.offline)))
    except BuildError as err:
        return fail(err)
    return 0
