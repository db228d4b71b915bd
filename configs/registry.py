"""The model registry schema: every default and every rule about `configs/models.yaml` lives here.

Usage:
    from configs.registry import load_registry
    reg = load_registry()                      # configs/models.yaml
    model = reg.resolve("qwen")                # exact id, then alias, then match rule
    print(model.id, model.upstreams)

Errors name the offending field, e.g. ``models.qwen3.aliases[0]: alias 'qwen' is already ...``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGISTRY = REPO_ROOT / "configs" / "models.yaml"


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the field."""


class _Strict(BaseModel):
    # A typo in the YAML must fail loudly, not fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Per-model proxy timeouts, in seconds."""

    connect_s: float = Field(2.0, gt=0, description="TCP connect; short so failover is quick")
    send_s: float = Field(60.0, gt=0, description="between two writes of the request")
    read_s: float = Field(600.0, gt=0, description="between two reads; covers a slow first token")


EngineName = Literal["trtllm", "vllm", "llamacpp"]


class Engine(_Strict):
    """What the router and Prometheus must know about one serving engine (docs/engines.md has
    each fact's source): where it reports health and metrics, and what its requests reject."""

    generate_probe: str | None = Field(
        description="GET path that runs a real generation (trtllm's /health can stay 200 after its "
        "executor died); None: the engine's /health already turns 503 when its engine is dead")
    metrics_path: str = Field(description="Prometheus text endpoint")
    drop: tuple[str, ...] = Field(description="OpenAI request fields the engine rejects (removed by the router)")
    allowed_options: str = Field(description="allow-list of its flags and options, relative to the repo root")


# Fields OpenAI clients send that trtllm-serve's request models reject (extra="forbid").
DEFAULT_DROP_FIELDS = (
    "parallel_tool_calls", "store", "metadata", "service_tier", "prediction", "modalities", "audio",
    "web_search_options", "safety_identifier", "prompt_cache_key", "verbosity",
)

ENGINES: dict[str, Engine] = {
    "trtllm": Engine(generate_probe="/health_generate", metrics_path="/prometheus/metrics",
                     drop=DEFAULT_DROP_FIELDS, allowed_options="trtllm/allowed_options.yaml"),
    # vLLM and llama.cpp ignore fields they do not know (vLLM's OpenAIBaseModel: extra="allow").
    "vllm": Engine(generate_probe=None, metrics_path="/metrics", drop=(),
                   allowed_options="vllm/allowed_options.yaml"),
    "llamacpp": Engine(generate_probe=None, metrics_path="/metrics", drop=(),
                       allowed_options="llamacpp/allowed_options.yaml"),
}


# What `.env` can tune per deployment, by engine: knob -> (what it sets, default). The compose
# service reads each as ${<SERVICE>_<KNOB>:-default} (configs/render.py writes compose.models.yml
# and the knob block of .env.example from this); a registry entry's serve.knobs overrides a
# default. Empty: the serve config's own value (trtllm/launch.py, vllm/serve.sh lay knobs over it).
ENGINE_KNOBS: dict[str, dict[str, tuple[str, str]]] = {
    "trtllm": {
        "KV_CACHE_MAX_TOKENS": ("KV cache cap in tokens (kv_cache_config.max_tokens)", ""),
        "KV_CACHE_FRACTION": ("fraction of memory free after loading the KV cache may take; the smaller "
                              "limit wins", ""),
        "MAX_SEQ_LEN": ("longest request, prompt + output (max_seq_len)", ""),
        "MAX_BATCH_SIZE": ("concurrent sequences (max_batch_size)", ""),
    },
    "vllm": {
        "GPU_MEMORY_UTILIZATION": ("fraction of the GPU's TOTAL memory vLLM takes (--gpu-memory-utilization)", ""),
        "MAX_MODEL_LEN": ("longest request, prompt + output (--max-model-len)", ""),
    },
    "llamacpp": {
        "CTX_SIZE": ("context shared by all slots (--ctx-size; 0 = the model's training context)", "0"),
        "PARALLEL": ("server slots (--parallel; -1 = auto, 4 slots on one unified KV cache)", "-1"),
    },
}


class ServeRecipe(_Strict):
    """How one server container serves the model (compose and the engine's folder derive from it)."""

    engine: EngineName = Field("trtllm", description="trtllm (trtllm-serve), vllm (vllm serve), llamacpp (llama-server)")
    service: str = Field(description="compose service name; also the upstream host name")
    port: int = Field(8000, ge=1, le=65535, description="port the server listens on")
    backend: Literal["pytorch", "_autodeploy", "tensorrt"] | None = Field("pytorch", description="trtllm only")
    config: str | None = Field(
        None, description="serve-config file, relative to the repo root: trtllm --extra_llm_api_options, "
        "vllm serve --config; llama-server has none (its flags are in compose.yml)")
    checkpoint: str | None = Field(
        None,
        description="MODEL argument of trtllm-serve: a Hugging Face id or a checkpoint directory "
        "(e.g. one made by build_engines); default: the model's id",
    )
    reasoning_parser: str | None = Field(
        None, description="the engine's reasoning split: trtllm --reasoning_parser, vllm --reasoning-parser, "
        "llamacpp --reasoning-format (None: the raw text, with its think tags, comes back as content)")
    tool_parser: str | None = None
    trust_remote_code: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    reasoning_parser_plugin: str | None = Field(
        None, description="vllm: a file of the checkpoint's repo that registers reasoning_parser "
        "(--reasoning-parser-plugin; vllm/serve.sh finds it in the HF cache)")
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = Field(
        None, description="llamacpp embeddings: --pooling, as the model card says")
    knobs: dict[str, str] = Field(
        default_factory=dict, description="defaults of this deployment's .env knobs (ENGINE_KNOBS), e.g. "
        "KV_CACHE_MAX_TOKENS; unset ones keep the engine's default; another engine's are ignored")

    @model_validator(mode="after")
    def _fits_the_engine(self) -> "ServeRecipe":
        if self.reasoning_parser_plugin and self.engine != "vllm":
            raise ValueError(f"reasoning_parser_plugin: only for engine vllm, not {self.engine}")
        if self.pooling and self.engine != "llamacpp":
            raise ValueError(f"pooling: only for engine llamacpp, not {self.engine}")
        if self.engine != "trtllm" and "backend" in self.model_fields_set and self.backend is not None:
            raise ValueError(f"backend: only for engine trtllm, not {self.engine}")
        if self.engine != "llamacpp" and not self.config:
            raise ValueError(f"config: engine {self.engine} needs a serve-config file")
        if self.engine == "llamacpp" and self.config:
            raise ValueError("config: llama-server reads no config file; its flags derive from the registry "
                             "(configs/render.py)")
        # Another engine's knobs are kept but unused, so switching `engine` stays one setting.
        known = {k for knobs in ENGINE_KNOBS.values() for k in knobs}
        unknown = sorted(set(self.knobs) - known)
        if unknown:
            raise ValueError(f"knobs: {unknown} are no engine's knobs; {self.engine} has {sorted(ENGINE_KNOBS[self.engine])}")
        return self


class BuildRecipe(_Strict):
    """How `build_engines` makes the served checkpoint from Hugging Face weights."""

    source: str = Field(description="Hugging Face repo (or local directory) of the unquantized weights")
    revision: str = Field("main", description="branch, tag or commit of the source repo")
    quant: Literal["nvfp4", "fp8"] = "nvfp4"
    kv_cache: Literal["auto", "fp8"] = Field("fp8", description="fp8: calibrated FP8 KV-cache scales; auto: none")
    calibration: str = Field(
        "ja_en", description="built-in set name (build_engines/calib/<name>.jsonl), or a .txt/.jsonl file")
    calib_samples: int = Field(256, gt=0, description="calibration texts used")
    calib_seq_len: int = Field(512, gt=0, description="tokens per calibration text (truncated)")
    params_b: float | None = Field(
        None, gt=0, description="total parameters of the source, in billions (model card); what `plan` "
        "estimates from when neither the weights nor config.json are at hand")
    embedding_params_b: float | None = Field(
        None, ge=0, description="of which embeddings and an untied lm_head (stay BF16), in billions; "
        "unknown makes the estimate rougher")


class Ssm(_Strict):
    """Mamba-2 state of a hybrid model: a fixed amount per running sequence, not per token."""

    layers: int = Field(gt=0, description="Mamba layers")
    heads: int = Field(gt=0, description="mamba_num_heads")
    head_dim: int = Field(gt=0, description="mamba_head_dim")
    state_size: int = Field(gt=0, description="ssm_state_size")
    groups: int = Field(gt=0, description="n_groups")
    conv_kernel: int = Field(gt=0, description="conv_kernel")

    def bytes_per_sequence(self, state_dtype_bytes: int) -> int:
        ssm = self.heads * self.head_dim * self.state_size * state_dtype_bytes
        conv = (self.heads * self.head_dim + 2 * self.groups * self.state_size) * (self.conv_kernel - 1) * 2
        return self.layers * (ssm + conv)


class Memory(_Strict):
    """What scripts/plan_memory.py needs: checkpoint size and the shape of the KV cache.

    Numbers come from the checkpoint's config.json and file sizes on Hugging Face.
    """

    weights_format: Literal["nvfp4", "fp8", "bf16", "gguf"] = Field(
        description="nvfp4 runs only on Blackwell (SM100/SM120/GB10); fp8 needs Hopper or newer; "
        "gguf: a llama.cpp file (any quant type), weights_gb is its size")
    weights_gb: float = Field(gt=0, description="checkpoint size in GB (10^9 bytes), as Hugging Face lists it")
    attention_layers: int = Field(gt=0, description="layers that keep a KV cache")
    kv_heads: int = Field(gt=0, description="num_key_value_heads")
    head_dim: int = Field(gt=0)
    native_context: int = Field(gt=0, description="longest context the model was trained for")
    checkpoint_kv_format: Literal["fp8", "bf16"] = Field(
        "bf16", description="KV cache format the checkpoint declares (hf_quant_config kv_cache_quant_algo); "
        "what kv_cache_config.dtype: auto gives")
    ssm: Ssm | None = None

    def kv_bytes_per_token(self, kv_dtype_bytes: int) -> int:
        return 2 * self.attention_layers * self.kv_heads * self.head_dim * kv_dtype_bytes


class Sampling(_Strict):
    """Sampling values applied only where the client set none (trtllm-serve's own default is 1.0)."""

    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)


class Reasoning(_Strict):
    """How the model thinks and how the router presents it."""

    mode: Literal["backend", "tags", "tags_at_start", "none"] = Field(
        "none",
        description="backend: trtllm-serve's --reasoning_parser splits, the router passes through; "
        "tags: the router splits <think>...</think> out of content; tags_at_start: output begins "
        "inside reasoning unless thinking is off; none: no reasoning",
    )
    output: Literal["reasoning_content", "reasoning", "none"] = Field(
        "reasoning_content",
        description="default presentation: reasoning_content; reasoning (also mirrored as `reasoning`, "
        "for clients built on vLLM/Ollama conventions); none (reasoning left out)",
    )
    thinking_default: bool = Field(True, description="whether the model thinks when the request says nothing")
    soft_switch: bool = Field(
        False, description="the chat template understands /think and /no_think; else the router removes them"
    )
    sampling_thinking: Sampling = Sampling()
    sampling_non_thinking: Sampling = Sampling()


class RequestHygiene(_Strict):
    """Rewrites of chat requests on their way to the server."""

    drop: tuple[str, ...] | None = Field(
        None, description="top-level request fields removed; default: what the engine rejects (ENGINES)")
    tool_choice_auto: bool = Field(True, description='add tool_choice "auto" when tools come without one')
    messages: Literal["translate", "native"] = Field(
        "translate", description="POST /v1/messages (Anthropic): the router translates it to chat completions, "
        "or passes it through to a backend that speaks it (trtllm-serve after 1.3.0rc13)")


class Variant(_Strict):
    """A model id that means a registry model plus fixed request settings (e.g. `qwen-nothink`).

    Listed in /v1/models as its own entry, so any client's model picker can choose it; routed
    like an alias; counted under the base model's id in metrics."""

    display_name: str | None = Field(None, description="name shown by model pickers; default: the variant id")
    thinking: bool | None = Field(
        None, description="thinking on/off, whatever the request says (its sampling defaults follow)")


# What a model serves: the endpoints a request for it may use (/v1/messages* are translated to
# chat completions unless the model's request.messages is native).
KIND_ENDPOINTS = {
    "chat": ("chat/completions", "completions", "responses", "messages", "messages/count_tokens"),
    "embeddings": ("embeddings",),
    "rerank": ("rerank",),
}


# trtllm-serve's own default when its options file sets none (BaseLlmArgs.max_batch_size in
# tensorrt_llm/llmapi/llm_args.py).
TRTLLM_DEFAULT_MAX_BATCH_SIZE = 2048
# vLLM's max_num_seqs when unset: 256 (EngineArgs; 1024 on GPUs over 70 GiB, the smaller is kept).
VLLM_DEFAULT_MAX_NUM_SEQS = 256
# llama-server's --parallel when unset: -1 = auto, 4 slots sharing one unified KV cache
# (ggml-org/llama.cpp PR #16736, 2025-10).
LLAMACPP_DEFAULT_PARALLEL = 4


class Admission(_Strict):
    """How many requests the router lets through to the model at once, and how many wait.

    Unset fields derive from the serve config's max_batch_size (what trtllm-serve runs at
    once; beyond it trtllm-serve queues without bound): see Model.admission_limits()."""

    max_in_flight: int | None = Field(
        None, ge=0, description="requests sent to the model's servers at once; 0 = no limit; "
        "default: the serve config's max_batch_size")
    queue_size: int | None = Field(
        None, ge=0, description="requests waiting (FIFO) beyond max_in_flight; default: 2 x max_in_flight")
    queue_timeout_s: float = Field(
        60.0, gt=0, description="longest wait in the queue before 429 model_busy")


class Model(_Strict):
    """One served model, keyed in the YAML by the public id clients send."""

    id: str
    display_name: str | None = Field(
        None, description="human name in /v1/models (`name`) and on the status page; default: the id")
    kind: Literal["chat", "embeddings", "rerank"] = Field(
        "chat", description="chat: generation endpoints; embeddings: /v1/embeddings; rerank: /v1/rerank")
    aliases: tuple[str, ...] = ()
    variants: dict[str, Variant] = Field(
        default_factory=dict, description="extra model ids: this model with fixed request settings")
    wait_for_ready_s: float = Field(
        0.0, ge=0, le=600, description="how long a request waits for this model while it is starting, "
        "instead of an immediate 503 (0: no wait); the wait ends when the client leaves")
    match: tuple[str, ...] = Field(
        (),
        description="case-insensitive substrings; a `model` containing one routes here "
        "when it is neither an id nor an alias",
    )
    upstreams: tuple[str, ...] = Field(default=(), description="HOST:PORT of trtllm-serve; default service:port")
    timeouts: Timeouts = Timeouts()
    serve: ServeRecipe
    engine_variants: dict[str, ServeRecipe] = Field(
        default_factory=dict, description="other engines that can serve the model, by name; a profile "
        "picks one as '<id or alias>@<name>' (e.g. nemotron@vllm)")
    build: BuildRecipe | None = None
    memory: Memory | None = None
    reasoning: Reasoning = Reasoning()
    request: RequestHygiene = RequestHygiene()
    backend_key_env: str | None = Field(
        None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="environment variable holding the key the router sends to this model's backend "
        "(Authorization: Bearer KEY); without it no Authorization is sent. The client's own is never forwarded",
    )
    admission: Admission = Admission()

    @field_validator("aliases", "match")
    @classmethod
    def _names_are_clean(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for i, v in enumerate(values):
            if not v or v != v.strip():
                raise ValueError(f"[{i}] must be a non-empty string without surrounding spaces")
        return values

    @field_validator("variants")
    @classmethod
    def _variant_names_are_clean(cls, values: dict[str, Variant]) -> dict[str, Variant]:
        for name in values:
            if not name or name != name.strip():
                raise ValueError(f"'{name}' must be a non-empty string without surrounding spaces")
        return values

    @field_validator("upstreams")
    @classmethod
    def _upstreams_are_host_port(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for i, v in enumerate(values):
            parse_host_port(v, where=f"[{i}]")
        return values

    @model_validator(mode="after")
    def _reasoning_matches_parser(self) -> "Model":
        parser = self.serve.reasoning_parser
        if self.reasoning.mode == "backend" and not parser:
            raise ValueError("reasoning.mode: 'backend' needs serve.reasoning_parser")
        if self.kind != "chat" and self.reasoning.mode != "none":
            raise ValueError(f"reasoning.mode: a {self.kind} model does not generate text; use 'none'")
        if self.reasoning.mode in ("tags", "tags_at_start") and parser:
            raise ValueError(f"reasoning.mode: '{self.reasoning.mode}' splits raw <think> tags, but "
                             f"serve.reasoning_parser '{parser}' already removes them; use 'backend'")
        return self

    @model_validator(mode="after")
    def _default_upstream(self) -> "Model":
        if not self.upstreams:
            object.__setattr__(self, "upstreams", (f"{self.serve.service}:{self.serve.port}",))
        if self.request.drop is None:
            object.__setattr__(self, "request", self.request.model_copy(update={"drop": self.engine.drop}))
        return self

    def on_engine(self, name: str) -> "Model":
        """The model as its engine variant `name` serves it: that serve recipe, its upstream, its engine's drops."""
        if name not in self.engine_variants:
            raise RegistryError(f"model '{self.id}' has no engine variant '{name}'; "
                                f"known: {sorted(self.engine_variants)}")
        data = self.model_dump(exclude={"engine_variants"})
        data["serve"] = self.engine_variants[name].model_dump(exclude_unset=True)
        if self.upstreams == (f"{self.serve.service}:{self.serve.port}",):
            data["upstreams"] = ()
        if self.request.drop == self.engine.drop:
            data["request"]["drop"] = None
        return Model.model_validate(data)

    @property
    def engine(self) -> Engine:
        return ENGINES[self.serve.engine]

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Paths under /v1/ this model answers."""
        return KIND_ENDPOINTS[self.kind]

    @property
    def env_prefix(self) -> str:
        """Prefix of this model's knobs in .env / compose, e.g. QWEN_ for service qwen."""
        return self.serve.service.upper().replace("-", "_") + "_"

    @property
    def checkpoint(self) -> str:
        """What the server loads: serve.checkpoint, else the model's id."""
        return self.serve.checkpoint or self.id

    def knobs(self) -> dict[str, str]:
        """This deployment's .env knobs (prefixed, e.g. QWEN_KV_CACHE_MAX_TOKENS) and their defaults."""
        engine = ENGINE_KNOBS[self.serve.engine]
        values = {"CHECKPOINT": self.checkpoint, **{k: d for k, (_, d) in engine.items()},
                  **{k: v for k, v in self.serve.knobs.items() if k in engine}}
        return {self.env_prefix + k: v for k, v in values.items()}

    def max_batch_size(self) -> int:
        """How many requests the server runs at once: the serve config's max_batch_size (trtllm)
        or max-num-seqs (vLLM), else the engine's default; llama-server has no config file and
        defaults to 4 slots (docs/engines.md)."""
        if self.serve.engine == "llamacpp":
            return LLAMACPP_DEFAULT_PARALLEL
        key, default = (("max-num-seqs", VLLM_DEFAULT_MAX_NUM_SEQS) if self.serve.engine == "vllm"
                        else ("max_batch_size", TRTLLM_DEFAULT_MAX_BATCH_SIZE))
        path = REPO_ROOT / self.serve.config
        try:
            options = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise RegistryError(f"models.{self.id}.serve.config: cannot read {path}: {err}") from None
        value = options.get(key, default) if isinstance(options, dict) else None
        if not isinstance(value, int) or value < 1:
            raise RegistryError(f"models.{self.id}.serve.config: {key} in {path} must be an integer >= 1")
        return value

    def admission_limits(self) -> dict:
        """max_in_flight, queue_size, queue_timeout_s with the defaults filled in."""
        a = self.admission
        max_in_flight = self.max_batch_size() if a.max_in_flight is None else a.max_in_flight
        queue_size = 2 * max_in_flight if a.queue_size is None else a.queue_size
        return {"max_in_flight": max_in_flight, "queue_size": queue_size, "queue_timeout_s": a.queue_timeout_s}

    @property
    def names(self) -> tuple[str, ...]:
        """The id and every alias: the exact names this model answers to."""
        return (self.id, *self.aliases)

    @property
    def name(self) -> str:
        """What a person reads: display_name, else the id."""
        return self.display_name or self.id


class HealthSettings(_Strict):
    interval_s: float = Field(2.0, gt=0, description="how often one worker probes every upstream's /health")
    timeout_s: float = Field(1.0, gt=0, description="per probe")
    # trtllm-serve's /health can stay 200 after its executor died (docs/trtllm.md), so a rarer
    # probe runs a real 1-token generation; a failure marks the upstream down until one passes.
    generate_interval_s: float = Field(30.0, gt=0, description="how often /health_generate is probed")
    generate_timeout_s: float = Field(20.0, gt=0, description="per /health_generate probe")


class RouterSettings(_Strict):
    port: int = Field(8000, ge=1, le=65535)
    health: HealthSettings = HealthSettings()
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 503 for a model not ready")
    responses_ttl_s: int = Field(
        86400, ge=1, description="how long the router remembers which server stored a /v1/responses response "
        "(previous_response_id, GET and DELETE go there)")


class Registry(_Strict):
    router: RouterSettings = RouterSettings()
    models: dict[str, Model]
    profiles: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_unique_and_unambiguous(self) -> "Registry":
        owner: dict[str, str] = {}
        for mid, m in self.models.items():
            for i, name in enumerate(m.names):
                where = f"models.{mid}." + ("id" if i == 0 else f"aliases[{i - 1}]")
                key = name.lower()
                if key in owner and owner[key] != mid:
                    raise ValueError(f"{where}: name '{name}' is already used by model '{owner[key]}'")
                if key in owner:
                    raise ValueError(f"{where}: name '{name}' is listed twice")
                owner[key] = mid
        for mid, m in self.models.items():
            for name in m.variants:
                key = name.lower()
                if key in owner:
                    raise ValueError(f"models.{mid}.variants.{name}: name '{name}' is already used by "
                                     f"model '{owner[key]}'")
                owner[key] = mid
        rules = [(r.lower(), mid, i) for mid, m in self.models.items() for i, r in enumerate(m.match)]
        for r, mid, i in rules:
            for other, omid, _ in rules:
                # Rule A inside rule B means a `model` containing B matches both models.
                if omid != mid and r in other:
                    raise ValueError(
                        f"models.{mid}.match[{i}]: rule '{r}' also matches every name containing "
                        f"rule '{other}' of model '{omid}', so routing would be ambiguous"
                    )
        for pname, ids in self.profiles.items():
            seen: set[str] = set()
            for i, ref in enumerate(ids):
                name, _, variant = ref.partition("@")
                model = self.find(name)
                if model is None:
                    raise ValueError(f"profiles.{pname}[{i}]: '{name}' is not a model id or alias")
                if model.id in seen:
                    raise ValueError(f"profiles.{pname}[{i}]: model '{model.id}' is already in the profile "
                                     "(one engine per model and profile)")
                seen.add(model.id)
                if variant and variant not in model.engine_variants:
                    raise ValueError(f"profiles.{pname}[{i}]: model '{model.id}' has no engine variant "
                                     f"'{variant}' (known: {sorted(model.engine_variants)})")
        return self

    @model_validator(mode="after")
    def _every_deployment_has_its_own_service(self) -> "Registry":
        services: dict[str, str] = {}
        for d in self.deployments():
            where = f"models.{d.id}: service '{d.serve.service}'"
            if d.serve.service in services:
                raise ValueError(f"{where} is also the service of '{services[d.serve.service]}'")
            if d.serve.service in ("router", "build", "check"):
                raise ValueError(f"{where} is a name compose.yml uses itself")
            services[d.serve.service] = d.id
        return self

    def deployments(self) -> list[Model]:
        """Every model as each engine serves it: one compose service each."""
        return [d for m in self.models.values() for d in (m, *(m.on_engine(n) for n in m.engine_variants))]

    def find(self, name: str) -> Model | None:
        """Exact id or alias, case-insensitive; no substring rules."""
        key = name.lower()
        for m in self.models.values():
            if key in (n.lower() for n in m.names):
                return m
        return None

    def resolve(self, name: str) -> Model:
        """The model a request's `model` field routes to: exact names (ids, aliases, variants)
        first, then match rules."""
        found = self.find(name)
        if found is not None:
            return found
        for m in self.models.values():
            if name.lower() in (v.lower() for v in m.variants):
                return m
        hits = [m for m in self.models.values() if any(r.lower() in name.lower() for r in m.match)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise RegistryError(f"model '{name}' matches rules of several models: {[m.id for m in hits]}")
        raise RegistryError(f"model '{name}' is not in the registry; known: {sorted(self.models)}")

    def deployment(self, ref: str) -> Model:
        """'<id or alias>[@<engine variant>]' -> the model as that deployment serves it."""
        name, _, variant = ref.partition("@")
        model = self.find(name)
        if model is None:
            raise RegistryError(f"'{name}' is not a model id or alias")
        return model.on_engine(variant) if variant else model

    def profile(self, name: str) -> list[Model]:
        if name not in self.profiles:
            raise RegistryError(f"unknown profile '{name}'; known: {sorted(self.profiles)}")
        return [self.deployment(ref) for ref in self.profiles[name]]


def parse_host_port(value: str, where: str = "upstream") -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port), with an error naming `where`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{where}: '{value}' is not HOST:PORT")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(part and (part.replace("-", "").replace("_", "").isalnum()) for part in host.split(".")):
            raise ValueError(f"{where}: '{host}' is neither an IP address nor a host name") from None
    return host, int(port)


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in ("function-after",))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def parse_registry(data: object, source: str = "registry") -> Registry:
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise RegistryError(f"{source}: top level must be a mapping with a 'models' mapping")
    models = {}
    for mid, entry in data["models"].items():
        if not isinstance(entry, dict):
            raise RegistryError(f"{source}: models.{mid}: must be a mapping")
        if "id" in entry:
            raise RegistryError(f"{source}: models.{mid}.id: the key is the id; remove the field")
        models[mid] = {"id": mid, **entry}
    try:
        return Registry.model_validate({**data, "models": models})
    except ValidationError as err:
        raise RegistryError(f"{source}: {_format_error(err)}") from None


def load_registry(path: str | Path = DEFAULT_REGISTRY) -> Registry:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise RegistryError(f"{path}: {err}") from None
    return parse_registry(data, source=str(path))
