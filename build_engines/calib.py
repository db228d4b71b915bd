"""Calibration texts, offline: a built-in Japanese + English set, or a file the user names.

Built-in sets live in build_engines/calib/<name>.jsonl ({"lang", "text"} per line). `ja_en` has
297 short texts (149 English, 148 Japanese; ~30-60 tokens each), written for this repo: chat turns
and answers, code (Python, JS, SQL, shell, git), maths, business mail and keigo, customer
support, science, history, news, recipes, travel, law and health questions, poems, tool calls.
Enough to calibrate activation ranges across both scripts, small enough to ship.
For a production build of a large model pass a bigger file (one text per line in .txt, or
{"text": ...} per line in .jsonl), e.g. a few hundred documents from your own traffic, or a
Hugging Face dataset: `hf:<owner>/<name>[#<column>]` (default column `text`; a chat column of
[{"role", "content"}, ...] is joined). Its .jsonl/.txt files (.parquet when pyarrow is
installed) are fetched with huggingface_hub into the HF cache, so `--offline` reuses them:

    python -m build_engines quantize --model qwen3-4b --calib hf:acme/support-chats#messages
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from build_engines.recipe import BuildError

BUILTIN_DIR = Path(__file__).resolve().parent / "calib"


@dataclass(frozen=True)
class CalibSet:
    name: str
    texts: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n\x00".join(self.texts).encode("utf-8")).hexdigest()


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.jsonl"))


def load(spec: str, samples: int, cache_dir: Path | None = None, offline: bool = False) -> CalibSet:
    """The first `samples` texts of a built-in set, a .txt / .jsonl file or an `hf:` dataset."""
    if spec.startswith("hf:"):
        return _load_hub(spec, samples, cache_dir, offline)
    path = BUILTIN_DIR / f"{spec}.jsonl" if (BUILTIN_DIR / f"{spec}.jsonl").exists() else Path(spec)
    if not path.is_file():
        raise BuildError(f"calibration set '{spec}' is neither built in ({', '.join(builtin_names())}), "
                         "a file, nor hf:<owner>/<dataset>")
    texts = _read_file(path, "text", samples)
    if not texts:
        raise BuildError(f"calibration set {path} has no texts")
    return CalibSet(spec, tuple(texts))


def _as_text(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):   # chat messages
        return "\n".join(str(m.get("content", "")) for m in value if m.get("content"))
    return None


def _read_file(path: Path, column: str, samples: int) -> list[str]:
    texts: list[str] = []
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BuildError(f"{path.name}: reading .parquet needs pyarrow (pip install pyarrow)") from None
        table = pq.read_table(path)
        if column not in table.column_names:
            raise BuildError(f"{path.name}: no column '{column}' (columns: {', '.join(table.column_names)})")
        rows = ((n, {column: v}) for n, v in enumerate(table.column(column).to_pylist(), 1))
    else:
        rows = _lines(path, column)
    for n, row in rows:
        text = _as_text(row.get(column))
        if text is None and path.suffix == ".jsonl":
            raise BuildError(f"{path}:{n}: expected a JSON object with a '{column}' field (text or chat messages)")
        if text and text.strip():
            texts.append(text)
        if len(texts) == samples:
            break
    return texts


def _lines(path: Path, column: str):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix != ".jsonl":
            yield n, {column: line}
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        yield n, row if isinstance(row, dict) else {}


def _load_hub(spec: str, samples: int, cache_dir: Path | None, offline: bool) -> CalibSet:
    repo, _, column = spec.removeprefix("hf:").partition("#")
    column = column or "text"
    if repo.count("/") != 1:
        raise BuildError(f"calibration set '{spec}': expected hf:<owner>/<dataset>[#<column>]")
    from build_engines.download import snapshot

    root = snapshot(repo, repo_type="dataset", cache_dir=cache_dir, offline=offline,
                    allow=["*.jsonl", "*.txt", "*.parquet", "*.md"])
    files = sorted(p for p in root.rglob("*") if p.suffix in (".jsonl", ".txt", ".parquet") and p.is_file())
    if not files:
        raise BuildError(f"dataset {repo}: no .jsonl, .txt or .parquet files")
    texts: list[str] = []
    for f in files:
        texts += _read_file(f, column, samples - len(texts))
        if len(texts) == samples:
            break
    if not texts:
        raise BuildError(f"dataset {repo}: no texts in column '{column}'")
    return CalibSet(spec, tuple(texts))
