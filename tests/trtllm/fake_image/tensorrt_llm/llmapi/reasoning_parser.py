"""ReasoningParserFactory.parsers, the registry `--reasoning_parser` takes its choices from
(NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/reasoning_parser.py; nano-v3 from PR #9944)."""
from _fail import FAIL


class ReasoningParserFactory:
    parsers = {"deepseek-r1": object, "qwen3": object, "nano-v3": object}
    if "no-nano-v3" in FAIL:
        parsers = {"deepseek-r1": object, "qwen3": object}
