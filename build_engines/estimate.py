"""Parameter counts and the disk / GPU memory a build needs, for `plan` and `quantize`'s disk check.

    from build_engines.estimate import count_params, sizes
    print(sizes(count_params(Path("./tiny")), "nvfp4"))

Where the count comes from, best first (the estimate says which one it used):
1. the safetensors headers of a local or cached source: every tensor's shape, split into what
   ModelOpt quantizes (linear weights) and what stays BF16 - embeddings, lm_head, norms, biases,
   MoE router gates, Mamba conv1d (the names NVFP4_DEFAULT_CFG / FP8_DEFAULT_CFG disable);
2. config.json alone (standard decoder formula: attention + dense or MoE MLP + embeddings; not
   for hybrid models such as Nemotron-H);
3. the Hub's safetensors metadata (total parameters; online only);
4. the registry's `build.params_b` / `build.embedding_params_b` (model card numbers).
Only 1 is exact; the others are labelled rough.

Bits per parameter: NVFP4 4.5 (4-bit values + one FP8 scale per 16; ModelOpt's own
`effective_bits: 4.5`), FP8 8, BF16 16. Calibration holds the BF16 model on the GPU plus
activations for one text: ~10% + 2 GB on top of the BF16 weights (rough).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

BITS = {"nvfp4": 4.5, "fp8": 8.0, "bf16": 16.0}
# Tensors that stay BF16 in ModelOpt's NVFP4/FP8 default configs (their disabled quantizer patterns,
# plus nn.Embedding, norms and biases, which have no weight quantizer at all).
KEPT = re.compile(r"(embed|lm_head|norm|\.bias$|\.gate\.|router|conv1d|shared_expert_gate|output_layer"
                  r"|A_log|\.D$|dt_bias|rotary|vision|visual|multi_modal_projector|^mtp\.|^output\.)")


@dataclass(frozen=True)
class ParamCount:
    quantized: int          # parameters ModelOpt quantizes (linear weights)
    kept: int               # parameters that stay BF16
    origin: str             # where the count came from
    exact: bool

    @property
    def total(self) -> int:
        return self.quantized + self.kept


@dataclass(frozen=True)
class Sizes:
    params: ParamCount
    quant: str
    source_bytes: int       # BF16 source on disk
    output_bytes: int       # the exported checkpoint
    gpu_bytes: int          # GPU memory to calibrate

    @property
    def note(self) -> str:
        return f"from {self.params.origin}" + ("" if self.params.exact else ", rough")


def is_quantized(name: str, ndim: int) -> bool:
    return name.endswith(".weight") and ndim >= 2 and not KEPT.search(name)


def from_safetensors(directory: Path) -> ParamCount | None:
    """Exact split from the shard headers (no tensor data is read)."""
    shards = sorted(directory.glob("*.safetensors"))
    if not shards:
        return None
    try:
        from safetensors import safe_open
    except ImportError:  # the base install: plan falls back to config.json
        return None

    quantized = kept = 0
    for shard in shards:
        with safe_open(str(shard), "pt") as f:
            for name in f.keys():
                shape = f.get_slice(name).get_shape()
                n = 1
                for d in shape:
                    n *= d
                if is_quantized(name, len(shape)):
                    quantized += n
                else:
                    kept += n
    return ParamCount(quantized, kept, "safetensors headers", exact=True)


def from_config(config: dict) -> ParamCount | None:
    """A standard decoder's parameters from config.json; None for shapes this formula does not know."""
    cfg = config.get("text_config") or config
    try:
        h, layers, heads = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
        vocab = cfg["vocab_size"]
    except KeyError:
        return None
    if cfg.get("model_type") in ("nemotron_h", "mamba", "mamba2", "jamba", "falcon_h1") or "layers_block_type" in cfg:
        return None  # hybrid layer stacks: the per-layer formula below does not apply
    kv = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or h // heads
    attn = h * heads * hd * 2 + h * kv * hd * 2
    experts = cfg.get("num_experts") or cfg.get("num_local_experts") or cfg.get("n_routed_experts") or 0
    if experts:
        inter = cfg.get("moe_intermediate_size") or cfg.get("intermediate_size")
        shared = cfg.get("shared_expert_intermediate_size") or 0
        mlp, router = 3 * h * inter * experts + 3 * h * shared, h * experts
    else:
        mlp, router = 3 * h * cfg["intermediate_size"], 0
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings", config.get("tie_word_embeddings")) else 2)
    norms = layers * 2 * h + h
    return ParamCount(layers * (attn + mlp), layers * router + embed + norms,
                      "config.json (decoder formula)", exact=False)


def from_directory(directory: Path) -> ParamCount | None:
    count = from_safetensors(directory)
    if count is None and (directory / "config.json").is_file():
        try:
            count = from_config(json.loads((directory / "config.json").read_text(encoding="utf-8")))
        except ValueError:
            return None
    return count


def from_total(total_b: float, embedding_b: float | None, origin: str) -> ParamCount:
    total = int(total_b * 1e9)
    kept = int((embedding_b or 0) * 1e9)
    return ParamCount(total - kept, kept, origin + ("" if embedding_b is not None else
                                                    "; embeddings unknown, counted as quantized"), exact=False)


def sizes(params: ParamCount, quant: str, source_bytes: int | None = None) -> Sizes:
    """Disk and GPU memory for one build. `source_bytes`: the real BF16 source size, when known."""
    if quant not in BITS or quant == "bf16":
        raise ValueError(f"unknown quant format {quant!r}")
    src = source_bytes if source_bytes else params.total * 2
    out = int(params.quantized * BITS[quant] / 8 + params.kept * 2)
    return Sizes(params, quant, src, out, int(src * 1.1 + 2e9))
