"""AutoDeploy's LlmArgs, after NVIDIA/TensorRT-LLM tensorrt_llm/_torch/auto_deploy/llm_args.py (commit in
docs/trtllm.md): a TorchLlmArgs subclass with extra="forbid", parallelism only through world_size,
and the validators sync_cuda_graph_batch_sizes_to_compile_config (max_batch_size >=
cuda_graph_config.max_batch_size, checked because default.yaml configures compile_model) and
cap_max_batch_size_to_max_num_tokens (an error when both were set explicitly, as trtllm-serve does)."""
from __future__ import annotations

from typing import Any, Dict, Literal

from pydantic import Field, field_validator, model_validator

from tensorrt_llm.llmapi.llm_args import TorchLlmArgs


def _default_transforms() -> Dict[str, Dict[str, Any]]:
    # tensorrt_llm/_torch/auto_deploy/config/default.yaml sets these (and many more)
    return {"compile_model": {"backend": "torch-cudagraph", "cuda_graph_batch_sizes": None},
            "insert_cached_attention": {"backend": "trtllm"}}


class LlmArgs(TorchLlmArgs):
    backend: Literal["_autodeploy"] = "_autodeploy"
    model_factory: str = "AutoModelForCausalLM"
    world_size: int = Field(default=1, ge=0)
    runtime: Literal["demollm", "trtllm"] = "trtllm"
    compile_backend: str = "torch-cudagraph"
    transforms: Dict[str, Dict[str, Any]] = Field(default_factory=_default_transforms)

    @field_validator("tensor_parallel_size", "pipeline_parallel_size", "context_parallel_size",
                     "moe_cluster_parallel_size", "moe_tensor_parallel_size", "moe_expert_parallel_size",
                     "enable_attention_dp", mode="before")
    @classmethod
    def ensure_no_custom_parallel_config(cls, value, info):
        if value != cls.model_fields[info.field_name].get_default(call_default_factory=True):
            raise ValueError("AutoDeploy only supports parallelization via the `world_size` argument.")
        return value

    @model_validator(mode="after")
    def sync_cuda_graph_batch_sizes_to_compile_config(self):
        cg = self.cuda_graph_config
        if cg is None or "compile_model" not in self.transforms:
            return self
        if cg.max_batch_size > self.max_batch_size:
            raise ValueError(f"The top-level `max_batch_size` ({self.max_batch_size}) must be greater than "
                             f"or equal to `cuda_graph_config.max_batch_size` ({cg.max_batch_size}).")
        if cg.batch_sizes:
            self.transforms["compile_model"]["cuda_graph_batch_sizes"] = cg.batch_sizes
        return self

    @model_validator(mode="after")
    def cap_max_batch_size_to_max_num_tokens(self):
        if self.max_num_tokens is not None and self.max_batch_size > self.max_num_tokens:
            if "max_batch_size" in self.model_fields_set and "max_num_tokens" in self.model_fields_set:
                raise ValueError(f"max_batch_size ({self.max_batch_size}) cannot exceed "
                                 f"max_num_tokens ({self.max_num_tokens}).")
            self.max_batch_size = self.max_num_tokens
        return self
