"""build_manifest.json: what was built from what, with which tools, and every file's hash."""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path

from build_engines.recipe import Recipe, sha256

MANIFEST = "build_manifest.json"
FORMAT = 1


def versions() -> dict[str, str]:
    out = {}
    for dist in ("nvidia-modelopt", "torch", "transformers", "tensorrt_llm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def write(directory: Path, recipe: Recipe, resolved_revision: str, calib: dict, extra: dict | None = None) -> dict:
    from tqdm import tqdm

    paths = [p for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST]
    files = {p.relative_to(directory).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size}
             for p in tqdm(paths, desc="hashing", unit="file", leave=False)}
    data = {
        "format": FORMAT,
        "model": recipe.model_id,
        "recipe": recipe.identity(),
        "resolved_revision": resolved_revision,
        "calibration": calib,
        "tools": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
        "files": files,
    }
    (directory / MANIFEST).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return data


def read(directory: Path) -> dict | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
