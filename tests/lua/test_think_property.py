"""Property tests of the Lua think splitter (nginx/lua/think.lua), run in luajit."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
# Characters that build and break tags, plus text that is not ASCII.
ALPHABET = st.sampled_from(list("<>/thinkTHINK \n") + ["é", "日", "</think>", "<think>", "<th", "</"])


@pytest.fixture(scope="module")
def splitter():
    luajit = shutil.which("luajit")
    if luajit is None:
        pytest.fail("luajit not found: run `make deps` (apt-get install luajit2)")
    proc = subprocess.Popen([luajit, "tests/lua/think_driver.lua"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def split(text: str, cuts: list[int], start_inside: bool) -> tuple[str, str]:
        raw = text.encode("utf-8")
        # Lua counts bytes: cut the UTF-8 bytes, as TCP reads do.
        byte_cuts = sorted({c % (len(raw) + 1) for c in cuts if 0 < c % (len(raw) + 1) < len(raw)})
        proc.stdin.write(json.dumps({"text": text, "cuts": byte_cuts or [], "start_inside": start_inside}) + "\n")
        proc.stdin.flush()
        out = json.loads(proc.stdout.readline())
        return out["reasoning"], out["content"]

    yield split
    proc.stdin.close()
    proc.wait(timeout=10)


def texts(min_size=0):
    return st.lists(ALPHABET, min_size=min_size, max_size=30).map("".join)


CUTS = st.lists(st.integers(min_value=1, max_value=200), max_size=6)


@settings(max_examples=300, deadline=None)
@given(reasoning=texts(), content=texts(), cuts=CUTS)
def test_reasoning_plus_content_is_the_text_without_the_tags(splitter, reasoning, content, cuts):
    assume("</think>" not in reasoning)
    r, c = splitter("<think>" + reasoning + "</think>" + content, cuts, False)
    assert (r, c) == (reasoning, content)


@settings(max_examples=300, deadline=None)
@given(reasoning=texts(), content=texts(), cuts=CUTS)
def test_output_that_starts_inside_reasoning_splits_at_the_first_closing_tag(splitter, reasoning, content, cuts):
    assume("</think>" not in reasoning)
    r, c = splitter(reasoning + "</think>" + content, cuts, True)
    assert (r, c) == (reasoning, content)


@settings(max_examples=300, deadline=None)
@given(text=texts(), cuts=CUTS, start_inside=st.booleans())
def test_where_the_stream_is_cut_never_changes_the_result_and_nothing_is_lost(splitter, text, cuts, start_inside):
    whole = splitter(text, [], start_inside)
    assert splitter(text, cuts, start_inside) == whole
    tags = (0 if start_inside else len("<think>") * ("<think>" in text))
    r, c = whole
    removed = len(text.encode()) - len(r.encode()) - len(c.encode())
    assert removed in (0, len("<think>"), len("</think>"), len("<think>") + len("</think>"))
    assert removed >= tags
