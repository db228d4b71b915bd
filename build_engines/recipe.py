"""What every command shares: the resolved build recipe, user errors, and safe file writing.

A recipe comes from a registry entry (`--model`, id or alias) or from `--source` plus flags; the
output goes to `<engines dir>/<name>-<quant>` unless the entry's serve.checkpoint names a
directory under /engines (the path the compose services mount).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from configs.registry import BuildRecipe, RegistryError, load_registry

QUANTS = ("nvfp4", "fp8")
KV_CACHES = ("auto", "fp8")
PARTIAL = ".partial-"   # prefix of the temporary directory an export is written into


class BuildError(RuntimeError):
    """A user-facing failure: printed as one line, exit status 2."""


@dataclass(frozen=True)
class Recipe:
    name: str                 # short name for folders and messages
    model_id: str | None      # registry id, when the recipe came from the registry
    source: str               # HF repo id or local directory
    revision: str
    quant: str
    kv_cache: str
    calibration: str
    calib_samples: int
    calib_seq_len: int
    output: Path
    params_b: float | None = None            # registry estimate inputs (plan), not part of identity()
    embedding_params_b: float | None = None

    @property
    def source_is_local(self) -> bool:
        return Path(self.source).is_dir()

    def identity(self) -> dict:
        """What makes two builds the same build (the manifest records it; re-runs compare it)."""
        return {"source": self.source, "revision": self.revision, "quant": self.quant, "kv_cache": self.kv_cache,
                "calibration": self.calibration, "calib_samples": self.calib_samples,
                "calib_seq_len": self.calib_seq_len}


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="registry id or alias (configs/models.yaml) with a build recipe")
    parser.add_argument("--source", help="Hugging Face repo or local directory, for a model not in the registry")
    parser.add_argument("--revision", help="branch, tag or commit (default: the recipe's, else main)")
    parser.add_argument("--quant", choices=QUANTS, help="weight format (default: the recipe's, else nvfp4)")
    parser.add_argument("--kv-cache", choices=KV_CACHES, help="KV-cache format (default: the recipe's, else fp8)")
    parser.add_argument("--calib", help="calibration set: a built-in name (ja_en) or a .txt/.jsonl file "
                                        "(default: the recipe's, else ja_en)")
    parser.add_argument("--calib-samples", type=int, help="calibration texts (default: the recipe's, else 256)")
    parser.add_argument("--calib-seq-len", type=int, help="tokens per text (default: the recipe's, else 512)")
    parser.add_argument("--engines-dir", type=Path, default=Path(os.environ.get("ENGINES_DIR", "engines")),
                        help="where checkpoints go (default: $ENGINES_DIR or ./engines)")
    parser.add_argument("--output", type=Path, help="exact output directory (default: <engines-dir>/<name>-<quant>)")


def resolve(args: argparse.Namespace, registry_path: Path | None = None) -> Recipe:
    if bool(args.model) == bool(args.source):
        raise BuildError("give exactly one of --model (a registry id or alias) or --source (an HF repo or directory)")
    model_id = None
    if args.model:
        try:
            reg = load_registry(registry_path) if registry_path else load_registry()
        except RegistryError as err:
            raise BuildError(str(err)) from None
        model = reg.find(args.model)
        if model is None:
            raise BuildError(f"'{args.model}' is not a model id or alias in configs/models.yaml")
        if model.build is None:
            raise BuildError(f"models.{model.id}.build: no build recipe (it is served from a published checkpoint)")
        base, model_id = model.build, model.id
        name = model.serve.service
        ckpt = model.serve.checkpoint
    else:
        base, name, ckpt = BuildRecipe(source=args.source), Path(args.source.rstrip("/")).name.lower(), None
    quant = args.quant or base.quant
    samples = args.calib_samples if args.calib_samples is not None else base.calib_samples
    seq_len = args.calib_seq_len if args.calib_seq_len is not None else base.calib_seq_len
    if samples <= 0 or seq_len <= 0:
        raise BuildError("--calib-samples and --calib-seq-len must be positive")
    if args.output:
        output = args.output
    elif ckpt and ckpt.startswith("/engines/") and not args.quant:
        # The registry serves this path inside the container; the same folder on the host.
        output = args.engines_dir / ckpt.removeprefix("/engines/")
    else:
        output = args.engines_dir / f"{name}-{quant}"
    return Recipe(name=name, model_id=model_id, source=base.source if not args.source else args.source,
                  revision=args.revision or base.revision, quant=quant, kv_cache=args.kv_cache or base.kv_cache,
                  calibration=args.calib or base.calibration, calib_samples=samples, calib_seq_len=seq_len,
                  output=output.resolve(), params_b=base.params_b, embedding_params_b=base.embedding_params_b)


def require(module: str, extra: str = "build") -> None:
    """Refuse by name when an optional dependency is missing (the base install has none of them)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise BuildError(f"{module} is not installed: install the [{extra}] extra: pip install -e '.[{extra}]'"
                         + (" (torch first, see Makefile)" if extra == "build" else "")) from None


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_free_disk(where: Path, need_bytes: int) -> None:
    """Refuse before a large write that cannot finish."""
    probe = where
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise BuildError(f"not enough disk at {probe}: needs ~{need_bytes / 1e9:.1f} GB, {free / 1e9:.1f} GB free")


def remove_stale_partials(output: Path) -> list[Path]:
    """Temporary directories of runs that died (killed, power loss) next to `output`."""
    gone = []
    if output.parent.exists():
        for p in output.parent.glob(output.name + PARTIAL + "*"):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


@contextmanager
def atomic_directory(output: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `output`; move it into place only if the block
    finishes. On any error (or Ctrl-C) the temporary directory is removed and `output` is untouched."""
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(output)
    tmp = output.parent / f"{output.name}{PARTIAL}{os.getpid()}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if output.exists():
        if not replace:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(f"{output} appeared while building; not overwriting it")
        old = output.parent / f"{output.name}{PARTIAL}old-{os.getpid()}"
        os.replace(output, old)
    os.replace(tmp, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fail(err: BaseException) -> int:
    print(f"build_engines: {err}", file=sys.stderr)
    return 2
