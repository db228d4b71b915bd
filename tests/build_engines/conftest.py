"""Tiny random models, built in the test, for the real ModelOpt pipeline on CPU."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from build_engines.calib import load


def _tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(load("ja_en", 1000).texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(path)


def _save(model_cls, config, path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    model_cls(config).save_pretrained(path)
    _tokenizer(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Random Qwen3 and Llama with 64-wide layers (multiples of NVFP4's 16-element blocks)."""
    warnings.filterwarnings("ignore", category=UserWarning)
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    common = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return {
        "qwen3": _save(Qwen3ForCausalLM, Qwen3Config(head_dim=16, **common), root / "tiny-qwen3"),
        "llama": _save(LlamaForCausalLM, LlamaConfig(**common), root / "tiny-llama"),
    }
