"""`download`: the source weights into the Hugging Face cache, resumable, reusable offline.

    python -m build_engines download --model qwen3-4b
    HF_HUB_OFFLINE=1 python -m build_engines download --model qwen3-4b    # check the cache only

Uses huggingface_hub.snapshot_download (progress bars, resume of partial files, HF_TOKEN from the
environment or `huggingface-cli login`). Only what a checkpoint needs is fetched: safetensors,
JSON, tokenizer and remote-code files, not duplicate .bin/.pth/.gguf weights.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from build_engines.recipe import BuildError, Recipe, add_recipe_args, check_free_disk, fail, require, resolve

ALLOW = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.py", "*.jinja", "tokenizer*"]


def offline_default() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def complete(path: Path) -> bool:
    """Every weight shard of a checkpoint directory is present (per its index, else any .safetensors)."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = set((json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}).values())
        except ValueError:
            return False
        return bool(shards) and all((path / s).exists() for s in shards)
    return any(path.glob("*.safetensors"))


def hub_bytes(recipe: Recipe) -> int | None:
    """Size of the source's safetensors on the Hub (None when the Hub cannot say)."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(recipe.source, revision=recipe.revision, files_metadata=True)
        return sum(s.size or 0 for s in info.siblings or [] if s.rfilename.endswith(".safetensors")) or None
    except Exception:  # noqa: BLE001 - an estimate only; snapshot_download reports real errors
        return None


def _missing_bytes(recipe: Recipe, cache_dir: Path | None) -> int | None:
    total = hub_bytes(recipe)
    if total is None:
        return None
    try:
        have = sum(p.stat().st_size for p in fetch(recipe, cache_dir, offline=True, quiet=True)[0].glob("*.safetensors"))
    except BuildError:
        have = 0
    return max(total - have, 0)


def _no_access(name: str, what: str) -> BuildError:
    from huggingface_hub import get_token

    who = ("no Hugging Face token is set (HF_TOKEN or `hf auth login`)" if get_token() is None
           else "the Hugging Face token in use has no access to it")
    return BuildError(f"{name} {what}, and {who}")


def snapshot(repo: str, *, repo_type: str = "model", revision: str | None = None, cache_dir: Path | None = None,
             offline: bool = False, allow: list[str] = ALLOW) -> Path:
    """huggingface_hub.snapshot_download, with every Hub failure turned into one BuildError naming the repo."""
    require("huggingface_hub")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    name = f"dataset {repo}" if repo_type == "dataset" else repo
    try:
        return Path(snapshot_download(repo, repo_type=repo_type, revision=revision, cache_dir=cache_dir,
                                      local_files_only=offline, allow_patterns=allow))
    except GatedRepoError:
        raise _no_access(name, "is gated (accept its licence on huggingface.co)") from None
    except RepositoryNotFoundError:
        raise _no_access(name, "is not on Hugging Face or is private") from None
    except RevisionNotFoundError:
        raise BuildError(f"{name} has no revision '{revision}'") from None
    except LocalEntryNotFoundError:
        raise BuildError(f"{name}{'@' + revision if revision else ''} is not in the Hugging Face cache and downloads "
                         "are off (HF_HUB_OFFLINE / --offline): run `python -m build_engines download` online first") from None
    except HfHubHTTPError as err:
        raise BuildError(f"downloading {name} failed: {err}") from None


def fetch(recipe: Recipe, cache_dir: Path | None = None, offline: bool = False,
          quiet: bool = False) -> tuple[Path, str]:
    """(directory holding the source checkpoint, resolved revision)."""
    if recipe.source_is_local:
        return Path(recipe.source).resolve(), "local"
    if not offline:
        need = _missing_bytes(recipe, cache_dir)
        if need:
            check_free_disk(Path(cache_dir) if cache_dir else _hf_cache(), int(need * 1.05))
    path = snapshot(recipe.source, revision=recipe.revision, cache_dir=cache_dir, offline=offline)
    if not quiet:
        print(f"{recipe.source}@{recipe.revision} -> {path}")
    return path, path.name


def _hf_cache() -> Path:
    require("huggingface_hub")
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
