"""API keys for the router: add, list and revoke keys in the keys file (only hashes are stored).

Usage:
    python scripts/keys.py add alice --models qwen 'nvidia/*' --rpm 60 --tpm 200000 \\
        --max-concurrent 4 --file keys/keys.yaml      # prints the new key, once
    python scripts/keys.py add prometheus --models --metrics --file keys/keys.yaml
    python scripts/keys.py list --file keys/keys.yaml
    python scripts/keys.py revoke alice --file keys/keys.yaml

The router (`run_router.py --keys FILE`, or ROUTER_KEYS_FILE in compose) re-reads the file
within seconds of a change. The file keeps each key's sha256, never the key: a lost key cannot
be shown again, only revoked and replaced. `--file` defaults to $ROUTER_KEYS_FILE. The file is
rewritten whole (atomically, so the router never reads half of it); comments are not kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from configs.registry import RegistryError, load_registry

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
LIMITS = ("rpm", "tpm", "max_concurrent")
FIELDS = {"name", "sha256", "models", "metrics", *LIMITS}
HEADER = ("# API keys for the router, written by scripts/keys.py: only the sha256 of each key is kept.\n"
          "# Fields: name, sha256, models (ids, aliases or globs; absent = all), rpm, tpm, max_concurrent,\n"
          "# metrics (may read /metrics from another host). README: \"Sharing the box\".\n")


class KeysError(ValueError):
    """A keys file or a command that cannot be used; the message says which field."""


@dataclass
class Key:
    name: str
    sha256: str
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    metrics: bool = False
    extra: dict = field(default_factory=dict)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh secret: 256 random bits, URL-safe."""
    return "sk-" + secrets.token_urlsafe(32)


def glob_regex(pattern: str) -> re.Pattern:
    """The router's globs (nginx/lua/keys.lua): * and ? only, whole name, any case."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE)


def parse(data: object, source: str) -> list[Key]:
    """The same rules as the router's keys.compile, so a file this accepts, the router loads."""
    if data is None:
        return []
    if not isinstance(data, dict):
        raise KeysError(f"{source}: the file must be a mapping with a 'keys' list")
    unknown = set(data) - {"keys"}
    if unknown:
        raise KeysError(f"{source}: unknown top-level field '{sorted(unknown)[0]}' (only 'keys')")
    entries = data.get("keys") or []
    if not isinstance(entries, list):
        raise KeysError(f"{source}: 'keys' must be a list")
    out: list[Key] = []
    names, hashes = set(), set()
    for i, e in enumerate(entries):
        where = f"{source}: keys[{i}]"
        if not isinstance(e, dict):
            raise KeysError(f"{where}: must be a mapping")
        for k in e:
            if k not in FIELDS:
                raise KeysError(f"{where}: unknown field '{k}'")
        name = e.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise KeysError(f"{where}.name: must be 1-64 letters, digits, '.', '_', '@' or '-'")
        where = f"{source}: keys[{i}] ({name})"
        if name in names:
            raise KeysError(f"{where}.name: '{name}' is used twice")
        digest = e.get("sha256")
        if not isinstance(digest, str) or not HEX64.match(digest):
            raise KeysError(f"{where}.sha256: must be 64 hex digits (the sha256 of the key)")
        if digest.lower() in hashes:
            raise KeysError(f"{where}.sha256: the same key is listed twice")
        limits = {}
        for f in LIMITS:
            v = e.get(f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise KeysError(f"{where}.{f}: must be a whole number >= 1 (leave it out for no limit)")
            limits[f] = v
        models = e.get("models")
        if isinstance(models, str):
            models = [models]
        if models is not None and (not isinstance(models, list)
                                   or not all(isinstance(m, str) and m for m in models)):
            raise KeysError(f"{where}.models: must be a list of model ids, aliases or globs")
        metrics = e.get("metrics")
        if metrics is not None and not isinstance(metrics, bool):
            raise KeysError(f"{where}.metrics: must be true or false")
        names.add(name)
        hashes.add(digest.lower())
        out.append(Key(name, digest.lower(), models, metrics=bool(metrics), **limits))
    return out


def load(path: Path) -> list[Key]:
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise KeysError(f"{path}: {err}") from None
    return parse(data, str(path))


def dumps(keys: list[Key]) -> str:
    """The subset of YAML the router reads: block mappings, flow lists of double-quoted strings."""
    lines = [HEADER.rstrip("\n"), "keys:" + (" []" if not keys else "")]
    for k in keys:
        lines.append(f"  - name: {k.name}")
        lines.append(f'    sha256: "{k.sha256}"')   # quoted: an all-digit hash would read as a number
        if k.models is not None:
            lines.append("    models: [" + ", ".join(json.dumps(m, ensure_ascii=False) for m in k.models) + "]")
        for f in LIMITS:
            v = getattr(k, f)
            if v is not None:
                lines.append(f"    {f}: {v}")
        if k.metrics:
            lines.append("    metrics: true")
    return "\n".join(lines) + "\n"


def save(path: Path, keys: list[Key]) -> None:
    """Write a new file and rename it over the old one: readers see the old or the new, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(keys))
        os.chmod(tmp, 0o644)   # the router's workers may run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unmatched(patterns: list[str], registry_path: Path | None) -> list[str]:
    """Scope entries that name no model of the registry (likely typos)."""
    try:
        reg = load_registry(registry_path) if registry_path else load_registry()
    except RegistryError:
        return []
    names = [n for m in reg.models.values() for n in m.names]
    return [p for p in patterns if not any(glob_regex(p).match(n) for n in names)]


def positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("ROUTER_KEYS_FILE")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--file", type=Path, default=Path(default) if default else None,
                        help="the keys file (default: $ROUTER_KEYS_FILE)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", parents=[common], help="generate a key, print it once, store its hash")
    add.add_argument("name", help="shown in logs and metrics (letters, digits, . _ @ -)")
    add.add_argument("--models", nargs="*", default=None, metavar="MODEL",
                     help="ids, aliases or globs this key may use; --models alone: none (default: all models)")
    add.add_argument("--rpm", type=positive, default=None, help="requests per minute (default: unlimited)")
    add.add_argument("--tpm", type=positive, default=None,
                     help="prompt + completion tokens per minute (default: unlimited)")
    add.add_argument("--max-concurrent", type=positive, default=None,
                     help="requests in flight at once (default: unlimited)")
    add.add_argument("--metrics", action="store_true",
                     help="may read /metrics from another host, e.g. Prometheus (default: off)")
    add.add_argument("--registry", type=Path, default=None,
                     help="registry to check --models against (default: configs/models.yaml)")
    sub.add_parser("list", parents=[common], help="names, scopes and limits (never keys)")
    revoke = sub.add_parser("revoke", parents=[common], help="remove a key; the router refuses it within seconds")
    revoke.add_argument("name")


def main(args: argparse.Namespace) -> int:
    if args.file is None:
        print("error: no keys file: pass --file FILE or set ROUTER_KEYS_FILE", file=sys.stderr)
        return 2
    try:
        keys = load(args.file)
        if args.command == "add":
            if not NAME.match(args.name):
                raise KeysError(f"name '{args.name}': use 1-64 letters, digits, '.', '_', '@' or '-'")
            if any(k.name == args.name for k in keys):
                raise KeysError(f"{args.file}: a key named '{args.name}' exists; revoke it first")
            if args.models is not None and not all(args.models):
                raise KeysError("--models: empty model name")
            secret = new_key()
            keys.append(Key(args.name, hash_key(secret), args.models, args.rpm, args.tpm, args.max_concurrent,
                            args.metrics))
            save(args.file, keys)
            for p in unmatched(args.models or [], args.registry):
                print(f"warning: '{p}' matches no model in the registry", file=sys.stderr)
            print(f"added '{args.name}' to {args.file}; the key (shown only now):", file=sys.stderr)
            print(secret)
        elif args.command == "revoke":
            left = [k for k in keys if k.name != args.name]
            if len(left) == len(keys):
                raise KeysError(f"{args.file}: no key named '{args.name}'")
            save(args.file, left)
            print(f"revoked '{args.name}'", file=sys.stderr)
        else:
            print(f"{'name':20} {'models':28} {'rpm':>6} {'tpm':>9} {'conc':>5} metrics  sha256")
            for k in keys:
                models = "all" if k.models is None else (",".join(k.models) or "none")
                print(f"{k.name:20} {models:28} {k.rpm or '-':>6} {k.tpm or '-':>9} {k.max_concurrent or '-':>5} "
                      f"{'yes' if k.metrics else 'no':7}  {k.sha256[:12]}...")
    except KeysError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(parser)
    sys.exit(main(parser.parse_args()))
