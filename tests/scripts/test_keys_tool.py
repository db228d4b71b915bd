"""scripts/keys.py: a key is printed once and only its hash is stored; list, revoke, bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

from scripts import keys as keytool

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "keys.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)


def test_add_prints_the_key_once_and_stores_only_its_sha256(tmp_path):
    path = tmp_path / "keys.yaml"
    out = run("add", "alice", "--models", "qwen", "nvidia/*", "--rpm", "60", "--tpm", "200000",
              "--max-concurrent", "4", "--file", str(path))
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("sk-") and len(key) > 40
    text = path.read_text()
    assert key not in text
    entry = yaml.safe_load(text)["keys"][0]
    assert entry == {"name": "alice", "sha256": hashlib.sha256(key.encode()).hexdigest(),
                     "models": ["qwen", "nvidia/*"], "rpm": 60, "tpm": 200000, "max_concurrent": 4}
    second = run("add", "bob", "--file", str(path))
    assert second.stdout.strip() != key
    listing = run("list", "--file", str(path))
    assert "alice" in listing.stdout and "bob" in listing.stdout and key not in listing.stdout
    assert [k.name for k in keytool.load(path)] == ["alice", "bob"]


def test_revoke_removes_the_key_and_unknown_names_are_errors(tmp_path):
    path = tmp_path / "keys.yaml"
    run("add", "alice", "--file", str(path))
    assert run("revoke", "alice", "--file", str(path)).returncode == 0
    assert keytool.load(path) == []
    out = run("revoke", "alice", "--file", str(path))
    assert out.returncode == 2 and "no key named 'alice'" in out.stderr


def test_bad_input_is_a_clear_error(tmp_path):
    path = tmp_path / "keys.yaml"
    run("add", "alice", "--file", str(path))
    out = run("add", "alice", "--file", str(path))
    assert out.returncode == 2 and "a key named 'alice' exists" in out.stderr
    assert run("add", "bad name", "--file", str(path)).returncode == 2
    assert "must be >= 1" in run("add", "x", "--rpm", "0", "--file", str(path)).stderr
    path.write_text("keys:\n  - name: a\n    sha256: nothex\n")
    out = run("list", "--file", str(path))
    assert out.returncode == 2 and "keys[0] (a).sha256: must be 64 hex digits" in out.stderr
    assert "no keys file" in run("list", env={"PATH": "/usr/bin:/bin"}).stderr


def test_a_scope_matching_no_model_is_warned_about(tmp_path):
    out = run("add", "alice", "--models", "gpt-4", "--file", str(tmp_path / "k.yaml"))
    assert out.returncode == 0 and "'gpt-4' matches no model" in out.stderr


def test_the_written_file_is_the_yaml_the_router_reads():
    # The router's parser is tested against lyaml in tests/lua/keys_spec.lua; here: the
    # writer's output is plain YAML with the same content.
    keys = [keytool.Key("a", "0" * 64, ["q\"x", "nvidia/*"], 1, None, 2, True), keytool.Key("b", "f" * 64)]
    data = yaml.safe_load(keytool.dumps(keys))
    assert data["keys"][0]["models"] == ['q"x', "nvidia/*"] and data["keys"][0]["metrics"] is True
    assert keytool.parse(data, "t") == keys
