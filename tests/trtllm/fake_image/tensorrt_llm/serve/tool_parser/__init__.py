"""ToolParserFactory.parsers (NVIDIA/TensorRT-LLM tensorrt_llm/serve/tool_parser/tool_parser_factory.py)."""


class ToolParserFactory:
    parsers = {"qwen3": object, "qwen3_coder": object, "kimi_k2": object}
