"""`trtllm-serve serve`: the click command and get_llm_args, after NVIDIA/TensorRT-LLM
tensorrt_llm/commands/serve.py (commit in docs/trtllm.md), with the options our services use plus a
few neighbours. `--reasoning_parser` / `--tool_parser` are click.Choice over the parser registries;
`--config` and `--extra_llm_api_options` are one option. FAKE_IMAGE=no-tool-parser-flag imitates a
1.1-era image without --tool_parser."""
from typing import Any, Optional

import click

from _fail import FAIL
from tensorrt_llm.llmapi.llm_args import BuildConfig, KvCacheConfig, update_llm_args_with_extra_dict  # noqa: F401
from tensorrt_llm.llmapi.reasoning_parser import ReasoningParserFactory
from tensorrt_llm.serve.tool_parser import ToolParserFactory
from torch.cuda import device_count


def get_llm_args(model: str, tokenizer: Optional[str] = None, backend: str = "pytorch", max_beam_width: int = 1,
                 max_batch_size: int = 2048, max_num_tokens: int = 8192, max_seq_len: Optional[int] = None,
                 tensor_parallel_size: int = 1, pipeline_parallel_size: int = 1,
                 moe_expert_parallel_size: Optional[int] = None, gpus_per_node: Optional[int] = None,
                 free_gpu_memory_fraction: float = 0.9, num_postprocess_workers: int = 0,
                 trust_remote_code: bool = False, reasoning_parser: Optional[str] = None,
                 enable_chunked_prefill: bool = False, **llm_args_extra_dict: Any):
    if gpus_per_node is None:
        gpus_per_node = device_count()
        if gpus_per_node == 0:
            raise ValueError("No GPU devices found on the node")
    llm_args = {
        "model": model, "tokenizer": tokenizer, "tensor_parallel_size": tensor_parallel_size,
        "pipeline_parallel_size": pipeline_parallel_size, "moe_expert_parallel_size": moe_expert_parallel_size,
        "gpus_per_node": gpus_per_node, "trust_remote_code": trust_remote_code,
        "build_config": BuildConfig(max_batch_size=max_batch_size, max_num_tokens=max_num_tokens,
                                    max_beam_width=max_beam_width, max_seq_len=max_seq_len),
        "max_batch_size": max_batch_size, "max_num_tokens": max_num_tokens, "max_beam_width": max_beam_width,
        "max_seq_len": max_seq_len, "kv_cache_config": KvCacheConfig(free_gpu_memory_fraction=free_gpu_memory_fraction),
        "backend": backend, "num_postprocess_workers": num_postprocess_workers,
        "postprocess_tokenizer_dir": tokenizer or model, "reasoning_parser": reasoning_parser,
        "enable_chunked_prefill": enable_chunked_prefill,
    }
    return llm_args, llm_args_extra_dict


def _options(f):
    opts = [
        click.option("--tokenizer", type=str, default=None),
        click.option("--host", type=str, default="localhost"),
        click.option("--port", type=int, default=8000),
        click.option("--backend", type=click.Choice(["pytorch", "tensorrt", "_autodeploy"]), default="pytorch"),
        click.option("--log_level", type=click.Choice(["info", "debug", "warning", "error"]), default="info"),
        click.option("--max_beam_width", type=int, default=1),
        click.option("--max_batch_size", type=int, default=2048),
        click.option("--max_num_tokens", type=int, default=8192),
        click.option("--max_seq_len", type=int, default=None),
        click.option("--tensor_parallel_size", "--tp_size", type=int, default=1),
        click.option("--pipeline_parallel_size", "--pp_size", type=int, default=1),
        click.option("--moe_expert_parallel_size", "--ep_size", type=int, default=None),
        click.option("--gpus_per_node", type=int, default=None),
        click.option("--free_gpu_memory_fraction", "--kv_cache_free_gpu_memory_fraction", type=float, default=0.9),
        click.option("--num_postprocess_workers", type=int, default=0),
        click.option("--trust_remote_code", is_flag=True, default=False),
        click.option("--config", "--extra_llm_api_options", "extra_llm_api_options", type=str, default=None),
        click.option("--reasoning_parser", type=click.Choice(list(ReasoningParserFactory.parsers)), default=None),
        click.option("--enable_chunked_prefill", is_flag=True, default=False),
        click.option("--chat_template", type=str, default=None),
    ]
    if "no-tool-parser-flag" not in FAIL:
        opts.append(click.option("--tool_parser", type=click.Choice(list(ToolParserFactory.parsers)), default=None))
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command("serve")
@click.argument("model", type=str)
@_options
def serve(model, **kwargs):
    """Running an OpenAI API compatible server"""
    raise SystemExit("the fake image does not serve")
