"""A tiny byte-level BPE tokenizer, trained in milliseconds, for tests of token-exact prompts.

    from tests.fakes.tiny_tokenizer import write_tiny_tokenizer
    path = write_tiny_tokenizer(tmp_path / "tok")   # tokenizer.json + tokenizer_config.json

transformers' AutoTokenizer loads the directory offline (PreTrainedTokenizerFast), and the fake
trtllm-serve counts prompts with it (--tokenizer), as a real server counts with the model's own.
Words cost one to several tokens, as with a real BPE, so calibration has something to do.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_tiny_tokenizer(path: Path, vocab_size: int = 300) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from scripts.bench import EN_WORDS, JA_WORDS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = [" ".join(EN_WORDS[i:] + EN_WORDS[:i]) for i in range(len(EN_WORDS))] + ["、".join(JA_WORDS)]
    tok.train_from_iterator(corpus, trainer)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    return path
