"""build_engines without a GPU or the network: recipes, calibration data, download, plan, compose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from build_engines.__main__ import main as cli
from build_engines.calib import builtin_names, load
from build_engines.recipe import BuildError
from configs.registry import load_registry
from tests.compose.test_compose import resolved

REPO = Path(__file__).resolve().parents[2]


def test_the_builtin_calibration_set_mixes_japanese_and_english():
    rows = [json.loads(line) for line in (REPO / "build_engines" / "calib" / "ja_en.jsonl").read_text().splitlines()]
    langs = [r["lang"] for r in rows]
    assert "ja_en" in builtin_names() and langs.count("ja") >= 140 and langs.count("en") >= 140
    assert len(rows) >= load_registry().find("qwen3-4b").build.calib_samples, "the default sample count exists"
    assert len({r["text"] for r in rows}) == len(rows), "no duplicates"
    assert any("\u3040" <= ch <= "\u30ff" for r in rows if r["lang"] == "ja" for ch in r["text"])
    assert len(load("ja_en", 10).texts) == 10


def test_a_calibration_file_may_be_text_or_jsonl_and_bad_lines_are_named(tmp_path):
    (tmp_path / "c.txt").write_text("one\n\ntwo\n")
    assert load(str(tmp_path / "c.txt"), 5).texts == ("one", "two")
    (tmp_path / "c.jsonl").write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(BuildError, match=r"c.jsonl:2: expected a JSON object with a 'text' field"):
        load(str(tmp_path / "c.jsonl"), 5)
    with pytest.raises(BuildError, match="neither built in"):
        load("no-such-set", 5)


def test_the_third_models_build_lands_where_its_service_serves_it(tmp_path):
    model = load_registry().find("qwen3-4b")
    assert model.build.source == "Qwen/Qwen3-4B-Instruct-2507" and model.build.quant == "nvfp4"
    from build_engines.recipe import resolve
    from build_engines.quantize import add_cli_args
    import argparse

    parser = argparse.ArgumentParser()
    add_cli_args(parser)
    recipe = resolve(parser.parse_args(["--model", "qwen3-4b", "--engines-dir", str(tmp_path)]))
    assert "/engines/" + recipe.output.relative_to(tmp_path).as_posix() == model.serve.checkpoint
    cfg = resolved("qwen3-4b")
    assert cfg["services"]["qwen3-4b"]["command"][5] == model.serve.checkpoint
    assert any(v["target"] == "/engines" for v in cfg["services"]["qwen3-4b"]["volumes"])


def test_the_build_profile_runs_the_pipeline_in_the_trtllm_image_on_the_gpu():
    cfg = resolved("build")
    b = cfg["services"]["build"]
    assert b["image"] == resolved("qwen")["services"]["qwen"]["image"]
    assert b["entrypoint"] == ["/opt/nvidia/nvidia_entrypoint.sh", "python3", "-m", "build_engines"] and b["working_dir"] == "/workspace"
    assert b["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    mounts = {v["target"]: v for v in b["volumes"]}
    assert mounts["/workspace"]["source"] == str(REPO) and not mounts["/engines"].get("read_only")
    assert b["environment"]["ENGINES_DIR"] == "/engines"
    assert [name for name in cfg["services"]] == ["build"], "building starts nothing else"


def _fake_hub_cache(root: Path, repo: str, files: dict[str, bytes]) -> Path:
    """The Hugging Face cache layout snapshot_download reads offline."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    base = root / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / sha
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(sha)
    return snap


def test_download_offline_reuses_the_cache_and_says_when_it_cannot(tmp_path, capsys):
    snap = _fake_hub_cache(tmp_path / "hub", "acme/tiny", {"config.json": b"{}", "model.safetensors": b"x" * 10})
    assert cli(["download", "--source", "acme/tiny", "--cache-dir", str(tmp_path / "hub"), "--offline"]) == 0
    assert str(snap) in capsys.readouterr().out
    assert cli(["download", "--source", "acme/other", "--cache-dir", str(tmp_path / "hub"), "--offline"]) == 2
    assert "is not in the Hugging Face cache and downloads are off" in capsys.readouterr().err


def test_plan_reports_sizes_and_steps_from_a_local_source(tiny_models, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(tiny_models["llama"], src)
    assert cli(["plan", "--source", str(src), "--quant", "fp8", "--engines-dir", str(tmp_path / "e"), "--offline"]) == 0
    out = capsys.readouterr().out
    assert "FP8 weights, KV cache fp8" in out and "local directory" in out
    assert str(tmp_path / "e" / "src-fp8") in out and "GB" in out and "unknown" not in out


def test_plan_for_a_registry_model_works_offline(capsys):
    assert cli(["plan", "--model", "qwen3-4b", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen3-4B-Instruct-2507" in out and "NVFP4" in out and "Blackwell" in out


@pytest.mark.parametrize("argv, message", [
    (["plan"], "give exactly one of --model"),
    (["plan", "--model", "nope"], "'nope' is not a model id or alias"),
    (["plan", "--model", "qwen", "--source", "x"], "give exactly one of --model"),
    (["quantize", "--model", "qwen3-4b", "--calib-samples", "0"], "must be positive"),
    (["verify", "--output", "/nonexistent/ckpt"], "does not exist"),
    (["quantize", "--model", "qwen3-4b", "--max-shard-size", "lots"], "--max-shard-size 'lots': expected e.g. 5GB"),
    (["build", "--output", "/nonexistent/ckpt"], "not built yet"),
    (["plan", "--all", "--model", "qwen"], "--all plans every registry model"),
])
def test_bad_input_is_one_clear_line_and_exit_2(argv, message, capsys):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_plan_all_prints_disk_and_gpu_estimates_for_every_registry_recipe_offline(tmp_path, capsys):
    assert cli(["plan", "--all", "--offline", "--cache-dir", str(tmp_path / "empty-hub"),
                "--engines-dir", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    with_recipes = [m for m in load_registry().models.values() if m.build is not None]
    assert out.count("model      ") == len(with_recipes) == 3
    assert "~unknown" not in out and out.count("disk needed: ~") == 3
    assert "from registry build.params_b, rough" in out
    # Qwen3-4B: 3.6 B linears at 4.5 bits + 0.4 B BF16 embeddings = 2.8 GB, the size the registry's memory plan uses.
    qwen3_4b = out[out.index("Qwen3-4B-Instruct-2507-NVFP4"):]
    assert "writes ~2.8 GB" in qwen3_4b and "8.0 GB into the Hugging Face cache" in qwen3_4b
    assert "this machine: no CUDA GPU here: run quantize where one is" in out   # this machine has none


def test_the_gpu_verdict_compares_free_memory_with_the_estimate():
    from build_engines.estimate import ParamCount, sizes
    from build_engines.plan import Plan

    s = sizes(ParamCount(3_600_000_000, 400_000_000, "registry", exact=False), "nvfp4")   # needs ~10.8 GB
    plan = lambda gpus: Plan(None, s, False, False, 10, gpus)  # noqa: E731 - recipe unused by the verdict
    assert plan((("NVIDIA RTX PRO 6000", 90_000_000_000),)).gpu_verdict().endswith("90.0 GB free: enough")
    assert plan((("NVIDIA GB10", 8_000_000_000),)).gpu_verdict().endswith("8.0 GB free: NOT enough")
    assert plan(None).gpu_verdict().startswith("torch is not installed")


def test_parameter_counts_from_safetensors_match_the_model_and_keep_embeddings_bf16(tiny_models):
    import torch
    from transformers import AutoModelForCausalLM

    from build_engines.estimate import from_config, from_safetensors, sizes

    for arch, path in tiny_models.items():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
        linears = sum(m.weight.numel() for n, m in model.named_modules()
                      if isinstance(m, torch.nn.Linear) and "lm_head" not in n)
        count = from_safetensors(path)
        assert count.exact and count.quantized == linears, arch
        assert count.total == sum(p.numel() for p in model.parameters()), arch
        guess = from_config(json.loads((path / "config.json").read_text()))
        assert guess.quantized == count.quantized and not guess.exact, arch
        s = sizes(count, "nvfp4")
        assert s.output_bytes == int(count.quantized * 4.5 / 8 + count.kept * 2)
        assert sizes(count, "fp8").output_bytes > s.output_bytes


def test_plan_uses_exact_counts_from_a_cached_snapshot(tiny_models, tmp_path, capsys):
    files = {p.name: p.read_bytes() for p in tiny_models["qwen3"].iterdir() if p.is_file()}
    _fake_hub_cache(tmp_path / "hub", "acme/tiny-qwen3", files)
    assert cli(["plan", "--source", "acme/tiny-qwen3", "--cache-dir", str(tmp_path / "hub"), "--offline",
                "--engines-dir", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "(cached)" in out and "from safetensors headers)" in out and "0.0 GB into the Hugging Face cache" in out


def _fake_hub_dataset(root: Path, repo: str, files: dict[str, str]) -> None:
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    base = root / ("datasets--" + repo.replace("/", "--"))
    for name, text in files.items():
        (base / "snapshots" / sha / name).parent.mkdir(parents=True, exist_ok=True)
        (base / "snapshots" / sha / name).write_text(text, encoding="utf-8")
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(sha)


def test_a_hugging_face_dataset_calibrates_from_the_cache_offline_including_chat_columns(tmp_path, capsys):
    chats = [{"messages": [{"role": "user", "content": f"質問 {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
             for i in range(5)]
    _fake_hub_dataset(tmp_path / "hub", "acme/chats", {
        "data/train-00000.jsonl": "\n".join(json.dumps(c, ensure_ascii=False) for c in chats),
        "README.md": "# acme/chats"})
    got = load("hf:acme/chats#messages", 3, cache_dir=tmp_path / "hub", offline=True)
    assert got.texts == ("質問 0\nanswer 0", "質問 1\nanswer 1", "質問 2\nanswer 2")
    with pytest.raises(BuildError, match=r"train-00000.jsonl:1: expected a JSON object with a 'text' field"):
        load("hf:acme/chats", 3, cache_dir=tmp_path / "hub", offline=True)
    with pytest.raises(BuildError, match="dataset acme/missing is not in the Hugging Face cache and downloads are off"):
        load("hf:acme/missing", 3, cache_dir=tmp_path / "hub", offline=True)
    with pytest.raises(BuildError, match=r"expected hf:<owner>/<dataset>"):
        load("hf:no-owner", 3)
    # plan never downloads a dataset: it says so instead of failing
    assert cli(["plan", "--model", "qwen3-4b", "--offline", "--calib", "hf:acme/uncached",
                "--cache-dir", str(tmp_path / "hub"), "--engines-dir", str(tmp_path / "e")]) == 0
    assert "not cached yet, quantize downloads it" in capsys.readouterr().out


def test_a_gated_source_says_whether_a_token_is_set(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    import httpx

    def gated(*args, **kwargs):  # what the Hub answers for a gated repo, without the network
        raise GatedRepoError("403 gated", response=httpx.Response(403, request=httpx.Request("GET", "http://hub.invalid/")))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert cli(["download", "--source", "acme/gated", "--offline"]) == 2
    err = capsys.readouterr().err
    assert "acme/gated is gated (accept its licence on huggingface.co), and no Hugging Face token is set" in err
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_x")
    assert cli(["download", "--source", "acme/gated", "--offline"]) == 2
    assert "the Hugging Face token in use has no access to it" in capsys.readouterr().err


BUILD_EXTRA = ("huggingface_hub", "torch", "transformers", "safetensors", "modelopt")


def run_base_install(tmp_path: Path, *args: str):
    """python -m build_engines as after `pip install -e .`: the [build] extra's modules cannot be imported."""
    import os
    import subprocess
    import sys

    hide = tmp_path / "hide"
    hide.mkdir(exist_ok=True)
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        f"    names = {BUILD_EXTRA!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in self.names:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Hide())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), str(REPO)]), "HF_HUB_CACHE": str(tmp_path / "hub")}
    return subprocess.run([sys.executable, "-m", "build_engines", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_plan_offline_works_on_the_base_install(tmp_path):
    out = run_base_install(tmp_path, "plan", "--all", "--offline")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16" in out.stdout and "to download" in out.stdout
    assert "torch is not installed here" in out.stdout


@pytest.mark.parametrize("args, missing", [
    (["download", "--model", "qwen3-4b"], "huggingface_hub"),
    (["quantize", "--model", "qwen3-4b", "--offline"], "torch"),
    (["verify", "--output", "."], "safetensors"),
])
def test_commands_that_need_the_build_extra_say_so_in_one_line(tmp_path, args, missing):
    out = run_base_install(tmp_path, *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip() == (f"build_engines: {missing} is not installed: install the [build] extra: "
                                  "pip install -e '.[build]' (torch first, see Makefile)")
