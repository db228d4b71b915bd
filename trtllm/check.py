"""Prove on the GPU box, in about a minute and before any weights, that the pinned image starts our services.

    docker compose --profile check run --rm check      # inside the TensorRT-LLM image, on the GPU
    python3 -m trtllm.check --compose compose.yml      # anywhere this image's tensorrt_llm imports

Runs through NVIDIA's entrypoint like the model services (compose.yml), imports the image's own
tensorrt_llm and modelopt, and for every model service in compose.yml checks what would otherwise
fail only after a long start: its trtllm-serve flags parse with this image's `serve` click command,
its reasoning and tool parsers are registered, and its options file - after trtllm/launch.py has
laid the .env knobs over it - validates with this image's LlmArgs class for its backend
(TorchLlmArgs, or AutoDeploy's LlmArgs), the way trtllm-serve builds it (get_llm_args, then
update_llm_args_with_extra_dict). No weights are loaded. Prints a pass/fail table with a fix under
every failure; exit status 0 only when nothing failed. Facts used: docs/trtllm.md.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trtllm.launch import LaunchError, build_command, checkpoint_kv_cache, effective_options

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
LAUNCHER = "/app/trtllm/launch.py"
# Compute capability majors with NVFP4 tensor cores: SM100/103 (B200, GB300), SM120/121 (RTX 50xx,
# RTX PRO 6000, GB10). Hopper (9.0) has none (docs/trtllm.md, "GPUs").
NVFP4_MAJORS = (10, 12)
IMPORT_FIX = ("start it through NVIDIA's entrypoint (compose.yml: entrypoint /opt/nvidia/nvidia_entrypoint.sh ...): "
              "only the shell init it triggers (/etc/shinit_v2) puts /usr/local/tensorrt/lib on LD_LIBRARY_PATH")


@dataclass
class Row:
    check: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Service:
    name: str
    options_file: Path
    command: list[str]          # trtllm-serve serve MODEL ...
    knobs: dict[str, str] = field(default_factory=dict)

    @property
    def serve_args(self) -> list[str]:
        return self.command[2:]

    def flag(self, name: str) -> str | None:
        args = self.command
        return args[args.index(name) + 1] if name in args[:-1] else None


# --- compose.yml, read the way compose interpolates it ------------------------------------------

def deployment_env(compose: Path, env_file: Path | None, environ: dict[str, str]) -> dict[str, str]:
    """The registry's knob defaults, then the .env file, then the process environment (non-empty wins)."""
    from scripts.plan_memory import knob_defaults, read_env_file

    env = knob_defaults()
    if env_file is not None and env_file.exists():
        env.update({k: v for k, v in read_env_file(env_file).items() if v})
    env.update({k: v for k, v in environ.items() if k in env and v})
    return env


def interpolate(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: env.get(m.group(1)) or m.group(2) or "", value)


def compose_services(compose: Path) -> dict[str, dict]:
    """The services of compose.yml and of the files its `include:` names (compose.models.yml)."""
    doc = yaml.safe_load(compose.read_text(encoding="utf-8")) or {}
    services = dict(doc.get("services") or {})
    for entry in doc.get("include") or []:
        paths = entry.get("path", []) if isinstance(entry, dict) else entry
        for path in [paths] if isinstance(paths, str) else paths:
            services.update(compose_services(compose.parent / path))
    return services


def model_services(compose: Path, env: dict[str, str]) -> list[Service]:
    services = compose_services(compose)
    out = []
    for name, s in services.items():
        if LAUNCHER not in (s.get("entrypoint") or []):
            continue
        command = [interpolate(str(a), env) for a in s.get("command", [])]
        config = command[command.index("--config") + 1]
        out.append(Service(
            name=name,
            options_file=compose.parent / "trtllm" / Path(config).name,
            command=command[command.index("--") + 1:],
            knobs={k: interpolate(str(v), env) for k, v in (s.get("environment") or {}).items()}))
    return out


# --- the checks ---------------------------------------------------------------------------------

def check_import() -> tuple[Row, object | None]:
    try:
        import tensorrt_llm
    except ImportError as err:
        lib = "libnvinfer" in str(err) or "libtensorrt" in str(err)
        ld = os.environ.get("LD_LIBRARY_PATH", "")
        detail = f"{err}" + ("" if "/usr/local/tensorrt/lib" in ld else "; LD_LIBRARY_PATH lacks /usr/local/tensorrt/lib")
        return Row("import tensorrt_llm", FAIL, detail,
                   IMPORT_FIX if lib else "use the pinned image (TRTLLM_IMAGE in .env, allowed_options.yaml)"), None
    return Row("import tensorrt_llm", PASS, f"version {getattr(tensorrt_llm, '__version__', '?')}"), tensorrt_llm


def check_gpu() -> Row:
    try:
        import torch

        if not torch.cuda.is_available():
            return Row("GPU", FAIL, "no CUDA device visible in the container",
                       "install the NVIDIA Container Toolkit; `docker run --rm --gpus all ubuntu nvidia-smi` must work")
        major, minor = torch.cuda.get_device_capability(0)
        name = torch.cuda.get_device_name(0)
    except Exception as err:  # noqa: BLE001 - any CUDA init failure is this row's answer
        return Row("GPU", FAIL, f"CUDA does not initialise: {err}", "check the driver with nvidia-smi on the host")
    if major in NVFP4_MAJORS:
        return Row("GPU", PASS, f"{name}, compute capability {major}.{minor}: NVFP4 runs here")
    return Row("GPU", FAIL, f"{name}, compute capability {major}.{minor}: no NVFP4 (needs Blackwell, SM 10.x/12.x)",
               "serve FP8 checkpoints on this GPU (python scripts/plan_memory.py shows how)")


def registered(flag: str) -> list[str] | None:
    """What this image's `serve` accepts for a parser flag: the click.Choice over its parser registry
    (ReasoningParserFactory.parsers, or ._parsers in later releases - the choices hide the difference).
    None: the image has no such flag."""
    from tensorrt_llm.commands.serve import serve

    for param in serve.params:
        if flag in getattr(param, "opts", ()):
            return sorted(getattr(param.type, "choices", None) or [])
    return None


def check_parsers(svc: Service) -> Row:
    missing, named = [], []
    for flag in ("--reasoning_parser", "--tool_parser"):
        value = svc.flag(flag)
        if value is None:
            continue
        choices = registered(flag)
        if choices is None:
            missing.append(f"this image's trtllm-serve has no {flag}")
        elif choices and value not in choices:
            missing.append(f"{flag} {value} (this image has: {', '.join(choices)})")
        else:
            named.append(value)
    if missing:
        return Row(f"{svc.name}: parsers", FAIL, "; ".join(missing),
                   "pick a registered parser in configs/models.yaml (python -m configs.render), or change TRTLLM_IMAGE")
    return Row(f"{svc.name}: parsers", PASS, ", ".join(named) + " registered" if named else "none used")


def parse_flags(svc: Service, options_path: str):
    """This image's click command `serve` parses our arguments (without running it)."""
    from tensorrt_llm.commands.serve import serve

    return serve.make_context("trtllm-serve serve", build_command(svc.command, options_path)[2:])


def llm_args_class(backend: str):
    if backend == "_autodeploy":
        from tensorrt_llm._torch.auto_deploy.llm_args import LlmArgs

        return LlmArgs
    from tensorrt_llm.llmapi.llm_args import TorchLlmArgs

    return TorchLlmArgs


def build_llm_args(params: dict, options: dict):
    """The LlmArgs object trtllm-serve would build (commands/serve.py: get_llm_args, then the file's keys
    merged over them, then the backend's LLM class validates them), without loading anything."""
    from tensorrt_llm.commands import serve as serve_mod

    merge = getattr(serve_mod, "update_llm_args_with_extra_dict", None)
    if merge is None:
        from tensorrt_llm.llmapi.llm_args import update_llm_args_with_extra_dict as merge
    wanted = {n for n, p in inspect.signature(serve_mod.get_llm_args).parameters.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    llm_args, _ = serve_mod.get_llm_args(**{k: v for k, v in params.items() if k in wanted})
    llm_args = merge(llm_args, copy.deepcopy(options))
    llm_args.pop("build_config", None)   # launch_server drops it for pytorch and _autodeploy
    cls = llm_args_class(llm_args.get("backend", "pytorch"))
    return cls(**llm_args)


def validation_detail(err: Exception) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())) or '(model)'}: {e.get('msg')}"
                             for e in errors()[:4])
        except Exception:  # noqa: BLE001 - fall back to the text
            pass
    return " ".join(str(err).split())[:400]


def check_service(svc: Service, out_dir: Path) -> list[Row]:
    rows = [check_parsers(svc)]
    try:
        options = effective_options(yaml.safe_load(svc.options_file.read_text(encoding="utf-8")) or {}, svc.knobs)
    except (OSError, yaml.YAMLError, LaunchError) as err:
        rows.append(Row(f"{svc.name}: options", FAIL, str(err), "fix the .env knob or the options file it names"))
        return rows
    path = out_dir / f"llm_api_options.{svc.options_file.name}"
    path.write_text(yaml.safe_dump(options, sort_keys=False), encoding="utf-8")
    import click

    try:
        ctx = parse_flags(svc, str(path))
    except (click.ClickException, LaunchError) as err:
        message = err.format_message() if isinstance(err, click.ClickException) else str(err)
        rows.append(Row(f"{svc.name}: flags", FAIL, message,
                        "remove or rename that flag in configs/render.py (compose.yml, allowed_options.yaml), or change TRTLLM_IMAGE"))
        return rows
    rows.append(Row(f"{svc.name}: flags", PASS, f"{len(svc.serve_args)} arguments accepted by trtllm-serve serve"))
    backend = ctx.params.get("backend", "pytorch")
    name = llm_args_class(backend).__name__
    try:
        build_llm_args(ctx.params, options)
    except ValueError as err:  # pydantic's ValidationError is one, and wraps the validators' ValueErrors
        rows.append(Row(f"{svc.name}: options", FAIL, f"{name} ({backend}): {validation_detail(err)}",
                        f"edit {svc.options_file.relative_to(svc.options_file.parent.parent)} or its .env knobs "
                        "until this image's LlmArgs accepts them"))
    except Exception as err:  # noqa: BLE001 - e.g. a validator reaching for a file: not our options' fault
        rows.append(Row(f"{svc.name}: options", WARN, f"{name} ({backend}) could not be built here: "
                        f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"))
    else:
        rows.append(Row(f"{svc.name}: options", PASS, f"{svc.options_file.name} + knobs valid for {name} ({backend})"))
    rows.append(check_kv_cache(svc, options))
    return rows


def check_kv_cache(svc: Service, options: dict) -> Row:
    """The KV dtype `auto` resolves to, from the checkpoint's own hf_quant_config.json when it is here."""
    asked = (options.get("kv_cache_config") or {}).get("dtype", "auto")
    declared = checkpoint_kv_cache(svc.command[2])
    planned = planned_kv_format(svc.name)
    if declared is None:
        return Row(f"{svc.name}: KV cache", SKIP, f"dtype {asked}; checkpoint not downloaded yet, so its "
                   f"hf_quant_config.json cannot be read (the memory plan assumes {planned or '?'})")
    used = declared if asked == "auto" else asked
    if planned and asked == "auto" and used != planned:
        return Row(f"{svc.name}: KV cache", FAIL, f"the checkpoint declares {declared}, the memory plan assumes {planned}",
                   f"set memory.checkpoint_kv_format: {declared} for this model in configs/models.yaml")
    note = "" if asked == "auto" or declared != "bf16" else " (FP8 KV without calibrated scales costs accuracy)"
    return Row(f"{svc.name}: KV cache", WARN if note else PASS, f"dtype {asked} -> {used}; checkpoint declares {declared}{note}")


def planned_kv_format(service: str) -> str | None:
    try:
        from configs.registry import load_registry

        for model in load_registry().models.values():
            if model.serve.service == service and model.memory is not None:
                return model.memory.checkpoint_kv_format
    except Exception:  # noqa: BLE001 - the plan is context for this row, not a requirement
        return None
    return None


def check_modelopt() -> Row:
    try:
        from build_engines.quantize import ARCH_PRESETS, DEFAULT_PRESETS, export_options, modelopt_version
        from build_engines.quantize import quant_config
        from build_engines.recipe import BuildError
        from modelopt.torch.export import export_hf_checkpoint
    except ImportError as err:
        return Row("ModelOpt (build profile)", FAIL, f"{err}", "use the pinned image; it ships nvidia-modelopt")
    problems, notes = [], []
    for quant in DEFAULT_PRESETS:
        for kv in ("auto", "fp8"):
            try:
                quant_config(quant, kv)
            except BuildError as err:
                problems.append(str(err))
    for (arch, quant), preset in ARCH_PRESETS.items():
        try:
            quant_config(quant, "auto", arch)
        except BuildError:
            notes.append(f"no {preset}: `quantize` refuses {arch} {quant}")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        if not export_options(export_hf_checkpoint, "5GB"):
            notes.append("export_hf_checkpoint has no max_shard_size (--max-shard-size is ignored)")
    version = modelopt_version()
    if problems:
        return Row("ModelOpt (build profile)", FAIL, f"{version}: " + "; ".join(problems),
                   "build_engines cannot quantize with this image; use a newer TRTLLM_IMAGE for the build profile")
    return Row("ModelOpt (build profile)", WARN if notes else PASS,
               f"{version}: NVFP4/FP8 recipes and FP8 KV available" + ("; " + "; ".join(notes) if notes else ""))


def run(compose: Path, env_file: Path | None, environ: dict[str, str]) -> list[Row]:
    row, trtllm = check_import()
    rows = [row]
    env = deployment_env(compose, env_file, environ)
    services = model_services(compose, env)
    if trtllm is None:
        rows += [Row(f"{s.name}: flags, parsers, options", SKIP, "needs tensorrt_llm") for s in services]
        return rows
    rows.append(check_gpu())
    with tempfile.TemporaryDirectory() as tmp:
        for svc in services:
            try:
                rows += check_service(svc, Path(tmp))
            except ImportError as err:
                rows.append(Row(f"{svc.name}", FAIL, f"this image lacks what trtllm-serve uses: {err}",
                                "use the pinned TRTLLM_IMAGE (trtllm/allowed_options.yaml)"))
    rows.append(check_modelopt())
    return rows


def render(rows: list[Row]) -> str:
    width = max(len(r.check) for r in rows)
    lines = [f"{'check':{width}}  result  detail", "-" * (width + 16)]
    for r in rows:
        lines.append(f"{r.check:{width}}  {r.status:6}  {r.detail}")
        if r.status == FAIL and r.fix:
            lines.append(f"{'':{width}}  {'':6}  fix: {r.fix}")
    failed = sum(r.status == FAIL for r in rows)
    lines.append(f"{failed} failed, {sum(r.status == PASS for r in rows)} passed, "
                 f"{sum(r.status == WARN for r in rows)} warnings, {sum(r.status == SKIP for r in rows)} skipped")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compose", type=Path, default=Path("compose.yml"), help="compose file (default: %(default)s)")
    parser.add_argument("--env-file", type=Path, default=None,
                        help="the deployment's .env (default: .env beside the compose file, if present)")
    args = parser.parse_args(argv)
    env_file = args.env_file or args.compose.parent / ".env"
    if not args.compose.exists():
        print(f"check: {args.compose} not found (run from the repository, or pass --compose)", file=sys.stderr)
        return 2
    rows = run(args.compose, env_file, dict(os.environ))
    print(render(rows), flush=True)
    return 1 if any(r.status == FAIL for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
