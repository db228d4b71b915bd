from tensorrt_llm.llmapi.llm_args import BuildConfig, KvCacheConfig  # noqa: F401
