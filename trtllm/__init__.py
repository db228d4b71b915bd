"""Per-model trtllm-serve options and the launcher that applies .env memory knobs to them."""
