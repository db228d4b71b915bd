"""A merge's conflict markers must never land: they broke README.md's tables once (issue 16's
merge). Scans every text file the repository ships."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", "node_modules", "__pycache__"}
TEXT = {".py", ".lua", ".md", ".yml", ".yaml", ".conf", ".json", ".toml", ".html", ".js", ".css", ".sh", ".txt",
        ".example", ""}
MARKER = re.compile(r"^(<{7}|>{7})( |$)|^={7}$", re.M)


def shipped_text_files() -> list[Path]:
    out = []
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if any(part in SKIP or part.endswith(".egg-info") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in TEXT and path.stat().st_size < 2_000_000:
            out.append(path)
    return out


def test_no_file_holds_merge_conflict_markers():
    files = shipped_text_files()
    assert any(p.name == "README.md" for p in files)
    bad = [f"{p.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 1}"
           for p in files for text in [p.read_text(encoding="utf-8", errors="replace")]
           for m in MARKER.finditer(text)]
    assert not bad, "merge conflict markers: " + ", ".join(bad)
