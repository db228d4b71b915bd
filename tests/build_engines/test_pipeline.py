"""build_engines on CPU, for real: tiny random models through ModelOpt to verified checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest

from build_engines import verify
from build_engines.__main__ import main as cli
from build_engines.recipe import PARTIAL


def quantize(src: Path, out: Path, *extra: str) -> int:
    return cli(["quantize", "--source", str(src), "--device", "cpu", "--output", str(out), "--calib-samples", "16",
                "--calib-seq-len", "64", *extra])


@pytest.fixture(scope="module")
def built(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """The two exports every check below starts from (copied before being damaged)."""
    root = tmp_path_factory.mktemp("built")
    out = {"qwen3-nvfp4": root / "qwen3-nvfp4", "llama-fp8": root / "llama-fp8"}
    assert quantize(tiny_models["qwen3"], out["qwen3-nvfp4"], "--quant", "nvfp4", "--kv-cache", "fp8") == 0
    # small shards, so the index and shard checks have several files to look at
    assert quantize(tiny_models["llama"], out["llama-fp8"], "--quant", "fp8", "--kv-cache", "fp8",
                    "--max-shard-size", "100KB") == 0
    return out


def tensors(path: Path) -> dict:
    from safetensors import safe_open

    out = {}
    for shard in sorted(path.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            out.update({k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()})
    return out


def test_a_tiny_qwen3_becomes_a_verified_nvfp4_checkpoint_with_an_fp8_kv_cache(built):
    d = built["qwen3-nvfp4"]
    hfq = json.loads((d / "hf_quant_config.json").read_text())["quantization"]
    assert hfq["quant_algo"] == "NVFP4" and hfq["kv_cache_quant_algo"] == "FP8" and hfq["group_size"] == 16
    assert json.loads((d / "config.json").read_text())["quantization_config"]["quant_method"] == "modelopt"
    t = tensors(d)
    assert t["model.layers.0.mlp.gate_proj.weight"] == ("U8", [128, 32])            # 64 inputs, two per byte
    assert t["model.layers.0.mlp.gate_proj.weight_scale"] == ("F8_E4M3", [128, 4])  # one scale per 16
    assert t["model.layers.0.self_attn.k_proj.k_scale"][0] == "F32"
    assert t["lm_head.weight"][0] == "BF16", "lm_head stays unquantized"
    assert (d / "tokenizer.json").exists()
    report = verify.check(d, "nvfp4", "fp8")
    assert report.ok, report.problems
    assert report.quantized == 14   # 7 linears x 2 layers


def test_the_manifest_records_source_formats_tools_and_hashes(built, tiny_models):
    m = json.loads((built["qwen3-nvfp4"] / "build_manifest.json").read_text())
    assert m["recipe"]["source"] == str(tiny_models["qwen3"]) and m["recipe"]["quant"] == "nvfp4"
    assert m["resolved_revision"] == "local" and m["model_type"] == "qwen3"
    assert m["tools"]["nvidia-modelopt"] and m["tools"]["torch"]
    assert m["calibration"]["set"] == "ja_en" and m["calibration"]["texts"] == 16
    assert set(m["files"]) >= {"config.json", "hf_quant_config.json", "model.safetensors", "tokenizer.json"}
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())


def test_a_tiny_llama_becomes_a_verified_fp8_checkpoint_in_indexed_shards(built):
    d = built["llama-fp8"]
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == len(list(d.glob("*.safetensors"))) > 1
    assert json.loads((d / "hf_quant_config.json").read_text())["quantization"]["quant_algo"] == "FP8"
    t = tensors(d)
    assert t["model.layers.1.mlp.down_proj.weight"] == ("F8_E4M3", [64, 128])
    assert t["model.layers.1.mlp.down_proj.weight_scale"][0] == "F32"
    assert verify.check(d, "fp8", "fp8").ok


def test_rerunning_a_finished_build_is_a_no_op(built, tiny_models, capsys):
    d = built["qwen3-nvfp4"]
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    assert quantize(tiny_models["qwen3"], d, "--quant", "nvfp4", "--kv-cache", "fp8") == 0
    assert "already built" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == before


def test_an_output_from_another_recipe_is_not_overwritten_without_force(built, tiny_models, tmp_path, capsys):
    d = tmp_path / "out"
    shutil.copytree(built["qwen3-nvfp4"], d)
    assert quantize(tiny_models["qwen3"], d, "--quant", "fp8") == 2
    assert "built from another recipe" in capsys.readouterr().err
    assert json.loads((d / "hf_quant_config.json").read_text())["quantization"]["quant_algo"] == "NVFP4"
    assert quantize(tiny_models["qwen3"], d, "--quant", "fp8", "--force") == 0
    assert json.loads((d / "hf_quant_config.json").read_text())["quantization"]["quant_algo"] == "FP8"
    assert not list(tmp_path.glob("*" + PARTIAL + "*"))


def _rewrite_without(path: Path, drop: str) -> None:
    from safetensors.torch import load_file, save_file

    data = load_file(str(path))
    del data[drop]
    save_file(data, str(path), metadata={"format": "pt"})


def _refresh_manifest_hash(d: Path, rel: str) -> None:
    """Make the manifest agree with a changed file, so only the structural check can catch it."""
    from build_engines.recipe import sha256

    m = json.loads((d / "build_manifest.json").read_text())
    m["files"][rel] = {"sha256": sha256(d / rel), "bytes": (d / rel).stat().st_size}
    (d / "build_manifest.json").write_text(json.dumps(m))


def _flip_bytes(d: Path) -> None:
    p = d / "model.safetensors"
    data = bytearray(p.read_bytes())
    data[-100:-90] = bytes(b ^ 0xFF for b in data[-100:-90])
    p.write_bytes(bytes(data))


def _truncate(d: Path) -> None:
    p = d / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _drop_scale(d: Path) -> None:
    _rewrite_without(d / "model.safetensors", "model.layers.1.self_attn.o_proj.weight_scale_2")
    _refresh_manifest_hash(d, "model.safetensors")


def _drop_kv_scale(d: Path) -> None:
    _rewrite_without(d / "model.safetensors", "model.layers.0.self_attn.v_proj.v_scale")
    _refresh_manifest_hash(d, "model.safetensors")


def _nan_scale(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    data = load_file(str(d / "model.safetensors"))
    data["model.layers.0.mlp.up_proj.input_scale"] = data["model.layers.0.mlp.up_proj.input_scale"] * float("nan")
    save_file(data, str(d / "model.safetensors"), metadata={"format": "pt"})
    _refresh_manifest_hash(d, "model.safetensors")


def _wrong_algo(d: Path) -> None:
    p = d / "hf_quant_config.json"
    data = json.loads(p.read_text())
    data["quantization"]["quant_algo"] = "FP8"
    p.write_text(json.dumps(data))
    _refresh_manifest_hash(d, "hf_quant_config.json")


def _no_tokenizer(d: Path) -> None:
    (d / "tokenizer.json").unlink()


def _extra_shard(d: Path) -> None:
    shutil.copy(d / "model.safetensors", d / "model-00002-of-00002.safetensors")


def _sharded_llama(built, tmp_path) -> Path:
    d = tmp_path / "llama"
    shutil.copytree(built["llama-fp8"], d)
    return d


def test_a_deleted_shard_fails_verify_naming_it(built, tmp_path, capsys):
    d = _sharded_llama(built, tmp_path)
    victim = sorted(d.glob("model-*.safetensors"))[1]
    victim.unlink()
    assert cli(["verify", "--output", str(d)]) == 1
    out = capsys.readouterr().out
    assert f"{victim.name}: listed in model.safetensors.index.json but missing" in out
    assert f"{victim.name}: in the manifest but missing" in out


def test_a_tensor_moved_out_of_its_indexed_shard_fails_verify(built, tmp_path, capsys):
    d = _sharded_llama(built, tmp_path)
    index = json.loads((d / "model.safetensors.index.json").read_text())
    name, shard = next((k, v) for k, v in index["weight_map"].items() if k.endswith("down_proj.weight_scale"))
    _rewrite_without(d / shard, name)
    _refresh_manifest_hash(d, shard)
    assert cli(["verify", "--output", str(d)]) == 1
    out = capsys.readouterr().out
    assert f"{name}: indexed in {shard} but not in it" in out and f"{name}: missing (scale of quantized" in out


@pytest.mark.parametrize("damage, message", [
    (_flip_bytes, "model.safetensors: sha256 differs from the manifest"),
    (_truncate, "model.safetensors: unreadable safetensors"),
    (_drop_scale, "model.layers.1.self_attn.o_proj.weight_scale_2: missing (scale of quantized"),
    (_drop_kv_scale, "model.layers.0.self_attn.v_proj.v_scale: missing (FP8 KV cache)"),
    (_nan_scale, "model.layers.0.mlp.up_proj.input_scale: nan in model.safetensors, expected a finite positive"),
    (_wrong_algo, "config.json: quant_algo 'NVFP4' differs from hf_quant_config.json 'FP8'"),
    (_no_tokenizer, "tokenizer: none of"),
    (_extra_shard, "model-00002-of-00002.safetensors: not in the manifest"),
], ids=["flipped-bytes", "truncated", "dropped-scale", "dropped-kv-scale", "nan-scale", "wrong-algo", "no-tokenizer",
        "extra-shard"])
def test_a_damaged_export_fails_verify_with_a_precise_message(built, tmp_path, damage, message, capsys):
    d = tmp_path / "ckpt"
    shutil.copytree(built["qwen3-nvfp4"], d)
    damage(d)
    assert cli(["verify", "--output", str(d)]) == 1
    out = capsys.readouterr().out
    assert message in out, out


def test_an_interrupted_export_leaves_nothing_behind(tiny_models, tmp_path, monkeypatch, capsys):
    import modelopt.torch.export as export

    def dies_halfway(model, export_dir, **kw):
        (Path(export_dir) / "model.safetensors").write_bytes(b"half a shard")
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export_hf_checkpoint", dies_halfway)
    out = tmp_path / "engines" / "tiny"
    with pytest.raises(KeyboardInterrupt):
        quantize(tiny_models["qwen3"], out)
    assert not out.exists()
    assert list((tmp_path / "engines").iterdir()) == []


def test_a_stale_partial_directory_from_a_killed_run_is_cleaned_up(tiny_models, tmp_path):
    out = tmp_path / "tiny"
    stale = tmp_path / f"tiny{PARTIAL}99999"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"junk")
    assert quantize(tiny_models["llama"], out, "--quant", "fp8") == 0
    assert not stale.exists() and verify.check(out, "fp8").ok


def test_quantizing_on_a_machine_without_cuda_is_a_clear_error(tiny_models, tmp_path, capsys):
    rc = cli(["quantize", "--source", str(tiny_models["qwen3"]), "--output", str(tmp_path / "x")])
    assert rc == 2 and "no CUDA GPU visible" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_architecture_modelopt_does_not_document_is_refused(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=1, n_head=4, vocab_size=128)).save_pretrained(tmp_path / "gpt2")
    rc = quantize(tmp_path / "gpt2", tmp_path / "out")
    assert rc == 2 and "model_type 'gpt2' is not one ModelOpt" in capsys.readouterr().err


def test_an_unknown_format_is_refused_by_the_cli(tiny_models, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(["quantize", "--source", str(tiny_models["qwen3"]), "--quant", "int3"])
    assert exit_.value.code == 2 and "invalid choice: 'int3'" in capsys.readouterr().err


def test_build_says_no_engine_is_needed_and_refuses_one_without_trtllm_build(built, capsys):
    from build_engines import build
    from build_engines.recipe import BuildError

    d = built["qwen3-nvfp4"]
    assert build.run(d, engine=False, max_batch_size=8, max_seq_len=256, force=False).engine_dir is None
    assert "no engine needed: trtllm-serve's PyTorch backend loads" in capsys.readouterr().out
    with pytest.raises(BuildError, match="trtllm-build is not on PATH: it ships only in the TensorRT-LLM container"):
        build.run(d, engine=True, max_batch_size=8, max_seq_len=256, force=False, trtllm_build=None)
    assert cli(["build", "--output", str(d), "--engine"]) == 2
    assert "trtllm-build is not on PATH" in capsys.readouterr().err


@pytest.mark.parametrize("model_type, reason", [
    ("nemotron_h", "Nemotron-H .* PyTorch/AutoDeploy"),
    ("qwen3_moe", "Qwen3-MoE is supported on the PyTorch backend only"),
])
def test_build_refuses_pytorch_only_architectures_by_name(tmp_path, model_type, reason):
    from build_engines import build
    from build_engines.recipe import BuildError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(BuildError, match=reason):
        build.run(tmp_path, engine=True, max_batch_size=8, max_seq_len=256, force=False, trtllm_build="/bin/true")


FAKE_TRTLLM_BUILD = """#!{python}
import sys, pathlib
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out = pathlib.Path(args["--output_dir"])
assert (pathlib.Path(args["--checkpoint_dir"]) / "config.json").exists()
(out / "rank0.engine").write_bytes(b"engine")
sys.exit({rc})
"""


def _fake_tensorrt_llm(monkeypatch, calls):
    """tensorrt_llm's conversion API, which needs the TensorRT-LLM container, recorded instead of run."""
    class FakeModel:
        @classmethod
        def from_hugging_face(cls, path, dtype, quant_config, load_model_on_cpu):
            calls.append(("from_hugging_face", path, quant_config))
            return cls()

        def save_checkpoint(self, path, save_config):
            Path(path).mkdir()
            (Path(path) / "config.json").write_text("{}")

    class QuantConfig:
        def __init__(self, quant_algo=None):
            self.quant_algo = quant_algo

    class QuantAlgo(str):
        @property
        def value(self):
            return str(self)

    mods = {"tensorrt_llm": {}, "tensorrt_llm.models": {"MODEL_MAP": {"LlamaForCausalLM": FakeModel}},
            "tensorrt_llm.models.modeling_utils": {"QuantConfig": QuantConfig},
            "tensorrt_llm.quantization": {"QuantAlgo": QuantAlgo}}
    for name, attrs in mods.items():
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)


def test_an_engine_build_converts_runs_trtllm_build_and_is_atomic(built, tmp_path, monkeypatch, capsys):
    from build_engines import build
    from build_engines.recipe import BuildError

    d = tmp_path / "llama"
    shutil.copytree(built["llama-fp8"], d)
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)
    fake = tmp_path / "trtllm-build"
    fake.write_text(FAKE_TRTLLM_BUILD.format(python=sys.executable, rc=0))
    fake.chmod(0o755)
    with pytest.raises(BuildError, match="tensorrt_llm package is not importable"):
        build.run(d, engine=True, max_batch_size=8, max_seq_len=256, force=False, trtllm_build=str(fake))

    calls = []
    _fake_tensorrt_llm(monkeypatch, calls)
    broken = tmp_path / "trtllm-build-fails"
    broken.write_text(FAKE_TRTLLM_BUILD.format(python=sys.executable, rc=3))
    broken.chmod(0o755)
    with pytest.raises(BuildError, match=r"trtllm-build failed \(exit status 3\); nothing was written"):
        build.run(d, engine=True, max_batch_size=8, max_seq_len=256, force=False, trtllm_build=str(broken))
    assert not (tmp_path / "llama-engine").exists() and not list(tmp_path.glob("*" + PARTIAL + "*"))

    result = build.run(d, engine=True, max_batch_size=8, max_seq_len=256, force=False, trtllm_build=str(fake))
    out = tmp_path / "llama-engine"
    assert result.engine_dir == out and (out / "rank0.engine").exists() and (out / "tokenizer.json").exists()
    assert not (out / "trtllm-checkpoint").exists(), "the intermediate checkpoint is not kept"
    args = json.loads((out / "build_args.json").read_text())
    assert args["command"][-4:] == ["--max_batch_size", "8", "--max_seq_len", "256"]
    assert calls[-1][2].quant_algo == "FP8" and calls[-1][2].kv_cache_quant_algo == "FP8"
    assert not list(tmp_path.glob("*" + PARTIAL + "*"))
    capsys.readouterr()
    mtime = (out / "rank0.engine").stat().st_mtime_ns
    assert build.run(d, engine=True, max_batch_size=8, max_seq_len=256, force=False, trtllm_build=str(fake)).engine_dir == out
    assert "already built" in capsys.readouterr().out and (out / "rank0.engine").stat().st_mtime_ns == mtime


def test_quantize_works_with_the_export_signature_of_the_modelopt_in_the_trtllm_image(tiny_models, tmp_path,
                                                                                      monkeypatch, capsys):
    # nvidia-modelopt 0.37 (pinned by TensorRT-LLM 1.3 rc, docs/trtllm.md): no max_shard_size, no **kwargs.
    import tempfile

    import modelopt.torch.export as export

    real = export.export_hf_checkpoint

    def export_0_37(model, dtype=None, export_dir=tempfile.gettempdir(), save_modelopt_state=False):
        return real(model, dtype=dtype, export_dir=export_dir, save_modelopt_state=save_modelopt_state)

    monkeypatch.setattr(export, "export_hf_checkpoint", export_0_37)
    out = tmp_path / "llama-fp8"
    assert quantize(tiny_models["llama"], out, "--quant", "fp8", "--max-shard-size", "100KB") == 0
    printed = capsys.readouterr().out
    assert "--max-shard-size 100KB is ignored" in printed and "before 0.44" in printed
    assert verify.check(out, "fp8", "fp8").ok
    assert len(list(out.glob("*.safetensors"))) == 1, "ModelOpt's own default shard size applies"


def test_the_kv_cache_recipe_is_merged_the_old_way_when_modelopt_has_no_helper(monkeypatch):
    # Before ~0.40 there is no update_quant_cfg_with_kv_cache_quant and quant_cfg is a dict of patterns.
    import modelopt.torch.quantization as mtq

    from build_engines.quantize import quant_config

    monkeypatch.delattr(mtq.utils, "update_quant_cfg_with_kv_cache_quant")
    weights = {"*weight_quantizer": {"num_bits": (2, 1), "block_sizes": {-1: 16}}, "default": {"enable": False}}
    monkeypatch.setattr(mtq, "NVFP4_DEFAULT_CFG", {"quant_cfg": weights, "algorithm": "max"})
    monkeypatch.setattr(mtq, "FP8_KV_CFG", {"quant_cfg": {"*[kv]_bmm_quantizer": {"num_bits": (4, 3)}}})
    cfg = quant_config("nvfp4", "fp8", "qwen3")
    assert cfg["quant_cfg"] == {**weights, "*[kv]_bmm_quantizer": {"num_bits": (4, 3)}}
    assert "*[kv]_bmm_quantizer" not in mtq.NVFP4_DEFAULT_CFG["quant_cfg"], "the preset itself is not modified"
    assert quant_config("nvfp4", "auto", "qwen3") is mtq.NVFP4_DEFAULT_CFG
    monkeypatch.setattr(mtq, "NVFP4_DEFAULT_CFG", {"quant_cfg": [{"quantizer_name": "*", "enable": False}]})
    from build_engines.recipe import BuildError

    with pytest.raises(BuildError, match="no update_quant_cfg_with_kv_cache_quant"):
        quant_config("nvfp4", "fp8", "qwen3")


def test_nemotron_h_gets_modelopts_mamba_moe_preset_or_a_refusal(monkeypatch):
    import modelopt.torch.quantization as mtq

    from build_engines.quantize import quant_config
    from build_engines.recipe import BuildError

    assert quant_config("nvfp4", "auto", "nemotron_h") is mtq.MAMBA_MOE_NVFP4_CONSERVATIVE_CFG
    assert quant_config("fp8", "auto", "nemotron_h") is mtq.MAMBA_MOE_FP8_CONSERVATIVE_CFG
    monkeypatch.delattr(mtq, "MAMBA_MOE_NVFP4_CONSERVATIVE_CFG")
    with pytest.raises(BuildError, match="has no MAMBA_MOE_NVFP4_CONSERVATIVE_CFG.*install a newer one"):
        quant_config("nvfp4", "auto", "nemotron_h")
