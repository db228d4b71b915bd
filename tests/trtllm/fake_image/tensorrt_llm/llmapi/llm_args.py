"""The LLM-API argument classes, cut down to the fields our options and trtllm-serve's defaults touch.

Follows NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm_args.py (read at the commits named in
docs/trtllm.md): every config is a pydantic model with extra="forbid" (StrictBaseModel);
TorchLlmArgs.cuda_graph_config defaults to CudaGraphConfig(), and validate_cuda_graph_config turns
an unset max_batch_size into 128 with generated batch sizes; update_llm_args_with_extra_dict merges
the YAML's top-level keys over trtllm-serve's (a file's kv_cache_config replaces the CLI's)."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator


class StrictBaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class BuildConfig(StrictBaseModel):
    max_batch_size: int = 2048
    max_num_tokens: int = 8192
    max_beam_width: int = 1
    max_seq_len: Optional[int] = None


class CudaGraphConfig(StrictBaseModel):
    batch_sizes: Optional[List[int]] = None
    max_batch_size: NonNegativeInt = 0
    enable_padding: bool = False

    @staticmethod
    def _generate_cuda_graph_batch_sizes(max_batch_size: int, enable_padding: bool) -> List[int]:
        sizes = [1, 2, 4] + [i * 8 for i in range(1, 17)] if enable_padding else list(range(1, 32)) + [32, 64, 128]
        sizes += [2**i for i in range(8, math.ceil(math.log(max_batch_size, 2)))]
        sizes = sorted(s for s in sizes if s <= max_batch_size)
        if max_batch_size != sizes[-1]:
            sizes.append(max_batch_size)
        return sizes


class KvCacheConfig(StrictBaseModel):
    enable_block_reuse: bool = True
    max_tokens: Optional[int] = None
    max_gpu_total_bytes: int = 0
    free_gpu_memory_fraction: Optional[float] = None
    dtype: str = "auto"
    mamba_ssm_cache_dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    tokens_per_block: int = 32


class MoeConfig(StrictBaseModel):
    backend: Literal["CUTLASS", "CUTEDSL", "WIDEEP", "TRTLLM", "DEEPGEMM", "VANILLA", "TRITON"] = "CUTLASS"


class BaseLlmArgs(StrictBaseModel):
    model: str
    tokenizer: Optional[str] = None
    custom_tokenizer: Optional[str] = None
    trust_remote_code: bool = False
    revision: Optional[str] = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    context_parallel_size: int = 1
    moe_cluster_parallel_size: Optional[int] = None
    moe_tensor_parallel_size: Optional[int] = None
    moe_expert_parallel_size: Optional[int] = None
    enable_attention_dp: bool = False
    cp_config: Optional[dict] = Field(default_factory=dict)
    gpus_per_node: Optional[int] = None
    max_batch_size: Optional[int] = None
    max_num_tokens: Optional[int] = None
    max_seq_len: Optional[int] = None
    max_beam_width: Optional[int] = None
    enable_chunked_prefill: bool = False
    kv_cache_config: KvCacheConfig = Field(default_factory=KvCacheConfig)
    scheduler_config: Any = None
    num_postprocess_workers: int = 0
    postprocess_tokenizer_dir: Optional[str] = None
    reasoning_parser: Optional[str] = None
    fail_fast_on_attention_window_too_large: bool = False
    otlp_traces_endpoint: Optional[str] = None
    guided_decoding_backend: Optional[Literal["xgrammar", "llguidance"]] = None
    return_perf_metrics: bool = False
    backend: Optional[str] = None


class TorchLlmArgs(BaseLlmArgs):
    cuda_graph_config: Optional[CudaGraphConfig] = Field(default_factory=CudaGraphConfig)
    disable_overlap_scheduler: bool = False
    moe_config: MoeConfig = Field(default_factory=MoeConfig)
    attn_backend: str = "TRTLLM"
    print_iter_log: bool = False
    enable_iter_perf_stats: bool = False
    stream_interval: int = 1
    backend: Optional[str] = "pytorch"

    @model_validator(mode="after")
    def validate_cuda_graph_config(self):
        config = self.cuda_graph_config
        if config is None:
            return self
        if config.batch_sizes:
            config.batch_sizes = sorted(config.batch_sizes)
            if config.max_batch_size != 0:
                if config.batch_sizes != CudaGraphConfig._generate_cuda_graph_batch_sizes(
                        config.max_batch_size, config.enable_padding):
                    raise ValueError("Please don't set both cuda_graph_config.batch_sizes "
                                     "and cuda_graph_config.max_batch_size.")
            else:
                config.max_batch_size = max(config.batch_sizes)
        else:
            max_batch_size = config.max_batch_size or 128
            config.batch_sizes = CudaGraphConfig._generate_cuda_graph_batch_sizes(max_batch_size,
                                                                                  config.enable_padding)
            config.max_batch_size = max_batch_size
        return self


def update_llm_args_with_extra_dict(llm_args: Dict, llm_args_dict: Dict, extra_llm_api_options=None) -> Dict:
    field_mapping = {"moe_config": MoeConfig, "build_config": BuildConfig}
    for name, cls in field_mapping.items():
        if name in llm_args_dict:
            llm_args_dict[name] = cls(**llm_args_dict[name])
    return llm_args | llm_args_dict
