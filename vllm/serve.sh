#!/bin/sh
# `vllm serve MODEL FLAGS...` for a compose service (configs/render.py writes its command):
#  - GPU_MEMORY_UTILIZATION and MAX_MODEL_LEN, when set, become their flags (empty: the value in
#    the --config file), as trtllm/launch.py does for trtllm-serve;
#  - REASONING_PARSER_PLUGIN names a file of MODEL's Hugging Face repo (or directory) that
#    registers the reasoning parser (NVIDIA's nano_v3_reasoning_parser.py for Nemotron 3 Nano):
#    it is taken from the HF cache (downloaded once, HF_HUB_OFFLINE honoured) and passed as
#    --reasoning-parser-plugin, which needs a local path.
set -eu
model="$1"
shift
if [ -n "${GPU_MEMORY_UTILIZATION:-}" ]; then
    set -- "$@" --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION"
fi
if [ -n "${MAX_MODEL_LEN:-}" ]; then
    set -- "$@" --max-model-len "$MAX_MODEL_LEN"
fi
if [ -n "${REASONING_PARSER_PLUGIN:-}" ]; then
    if [ -d "$model" ]; then
        plugin="$model/$REASONING_PARSER_PLUGIN"
    else
        plugin=$(python3 -c 'import sys; from huggingface_hub import hf_hub_download; print(hf_hub_download(sys.argv[1], sys.argv[2]))' \
            "$model" "$REASONING_PARSER_PLUGIN")
    fi
    set -- "$@" --reasoning-parser-plugin "$plugin"
fi
echo "serve.sh: vllm serve $model $*" >&2
exec vllm serve "$model" "$@"
