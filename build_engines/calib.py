"""Calibration texts, offline: a built-in Japanese + English set, or a file the user names.

Built-in sets live in build_engines/calib/<name>.jsonl ({"lang", "text"} per line). `ja_en` has
297 short texts (149 English, 148 Japanese; ~30-60 tokens each), written for this repo: chat turns
and answers, code (Python, JS, SQL, shell, git), maths, business mail and keigo, customer
support, science, history, news, recipes, travel, law and health questions, poems, tool calls.
Enough to calibrate activation ranges across both scripts, small enough to ship.
For a production build of a large model pass a bigger file (one text per line in .txt, or
{"text": ...} per line in .jsonl), e.g. a few hundred documents from your own traffic.
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


def load(spec: str, samples: int) -> CalibSet:
    """The first `samples` texts of a built-in set or a .txt / .jsonl file."""
    path = BUILTIN_DIR / f"{spec}.jsonl" if (BUILTIN_DIR / f"{spec}.jsonl").exists() else Path(spec)
    if not path.is_file():
        raise BuildError(f"calibration set '{spec}' is neither built in ({', '.join(builtin_names())}) nor a file")
    texts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                text = json.loads(line)["text"]
            except (ValueError, KeyError, TypeError):
                raise BuildError(f"{path}:{n}: expected a JSON object with a 'text' field") from None
        else:
            text = line
        if isinstance(text, str) and text.strip():
            texts.append(text)
        if len(texts) == samples:
            break
    if not texts:
        raise BuildError(f"calibration set {path} has no texts")
    return CalibSet(spec, tuple(texts))
