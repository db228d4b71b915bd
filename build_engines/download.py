"""`download`: the source weights into the Hugging Face cache, resumable, reusable offline.

    python -m build_engines download --model qwen3-4b
    HF_HUB_OFFLINE=1 python -m build_engines download --model qwen3-4b    # check the cache only

Uses huggingface_hub.snapshot_download (progress bars, resume of partial files, HF_TOKEN from the
environment or `huggingface-cli login`). Only what a checkpoint needs is fetched: safetensors,
JSON, tokenizer and remote-code files, not duplicate .bin/.pth/.gguf weights.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from build_engines.recipe import BuildError, Recipe, add_recipe_args, check_free_disk, fail, resolve

ALLOW = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.py", "*.jinja", "tokenizer*"]


def offline_default() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def source_bytes(recipe: Recipe, cache_dir: Path | None, offline: bool) -> int | None:
    """Size of the source safetensors: from disk when local or cached, else from the Hub (None if unknown)."""
    if recipe.source_is_local:
        return sum(p.stat().st_size for p in Path(recipe.source).glob("*.safetensors"))
    try:
        path = fetch(recipe, cache_dir, offline=True, quiet=True)[0]
        return sum(p.stat().st_size for p in path.glob("*.safetensors"))
    except BuildError:
        pass
    if offline:
        return None
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(recipe.source, revision=recipe.revision, files_metadata=True)
        return sum(s.size or 0 for s in info.siblings or [] if s.rfilename.endswith(".safetensors"))
    except Exception:  # noqa: BLE001 - an estimate only; download reports real errors
        return None


def fetch(recipe: Recipe, cache_dir: Path | None = None, offline: bool = False,
          quiet: bool = False) -> tuple[Path, str]:
    """(directory holding the source checkpoint, resolved revision)."""
    if recipe.source_is_local:
        return Path(recipe.source).resolve(), "local"
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    if not offline:
        need = source_bytes(recipe, cache_dir, offline=False)
        if need:
            check_free_disk(Path(cache_dir) if cache_dir else _hf_cache(), need)
    try:
        path = snapshot_download(recipe.source, revision=recipe.revision, cache_dir=cache_dir,
                                 local_files_only=offline, allow_patterns=ALLOW)
    except GatedRepoError:
        raise BuildError(f"{recipe.source} is gated: accept its licence on huggingface.co and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise BuildError(f"{recipe.source} not found on Hugging Face, or private and HF_TOKEN has no access") from None
    except RevisionNotFoundError:
        raise BuildError(f"{recipe.source} has no revision '{recipe.revision}'") from None
    except LocalEntryNotFoundError:
        raise BuildError(f"{recipe.source}@{recipe.revision} is not in the Hugging Face cache and downloads are off "
                         "(HF_HUB_OFFLINE / --offline): run `python -m build_engines download` online first") from None
    except HfHubHTTPError as err:
        raise BuildError(f"downloading {recipe.source} failed: {err}") from None
    path = Path(path)
    if not quiet:
        print(f"{recipe.source}@{recipe.revision} -> {path}")
    return path, path.name


def _hf_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    add_recipe_args(parser)
    add_hub_args(parser)


def add_hub_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, help="Hugging Face cache (default: HF_HUB_CACHE or ~/.cache/huggingface/hub)")
    parser.add_argument("--offline", action="store_true", default=offline_default(),
                        help="use only the local cache (default: on when HF_HUB_OFFLINE=1)")


def main(args: argparse.Namespace) -> int:
    try:
        recipe = resolve(args)
        fetch(recipe, args.cache_dir, args.offline)
    except BuildError as err:
        return fail(err)
    return 0
