"""Hugging Face weights -> NVFP4 / FP8 checkpoints that trtllm-serve loads, with NVIDIA ModelOpt.

    python -m build_engines plan     --model qwen3-4b
    python -m build_engines download --model qwen3-4b
    python -m build_engines quantize --model qwen3-4b
    python -m build_engines verify   --model qwen3-4b
    python -m build_engines build    --model qwen3-4b     # engine path, where TensorRT-LLM has one

Each command reads the model's build recipe from configs/models.yaml (`--source` for a model that
is not in the registry). One module per command; recipe.py resolves what they share.
"""
