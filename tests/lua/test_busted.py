"""Runs the Lua unit specs (busted) so their result counts in pytest's closing line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted(p.name for p in Path(__file__).parent.glob("*_spec.lua"))


def test_lua_specs_exist():
    assert len(SPECS) >= 3


@pytest.mark.parametrize("spec", SPECS)
def test_lua_spec_passes(spec):
    busted = shutil.which("busted")
    if busted is None:
        pytest.fail("busted not found: run `make deps` (apt-get install lua-busted luajit2)")
    out = subprocess.run([busted, "--lua=luajit", f"tests/lua/{spec}"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failures / 0 errors" in out.stdout, out.stdout
