"""Is this host ready for the first start? One line per check, with the fix for each failure.

Usage:
    python scripts/doctor.py                      # the `multi` profile, the GPU nvidia-smi reports
    python scripts/doctor.py --profile qwen --gpu rtx5090

Checks Docker and Compose, the NVIDIA container runtime, the GPU (model, memory, driver, NVFP4),
free disk for the weights and the image, the Hugging Face cache and token, that the router's port
is free, and the .env knobs against scripts/plan_memory.py. Standard library only (plus this
repository). Exit status 0 only when nothing failed; then run the in-image check:

    docker compose --profile check run --rm check
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:   # `python scripts/doctor.py` from a checkout
    sys.path.insert(0, str(REPO))

MIN_COMPOSE = (2, 24)       # include:, depends_on.required, healthcheck.start_interval
MIN_DRIVER = 580            # the 1.3 rc images are built on CUDA 13 (docs/trtllm.md, "Image and entrypoint")
IMAGE_GB = 35               # the release image, unpacked (estimate)
NVFP4_MAJORS = (10, 12)     # Blackwell: SM100/103, SM120/121
GPU_KEYS = (("GB10", "gb10"), ("5090", "rtx5090"), ("PRO 6000", "rtx-pro-6000"), ("B200", "b200"), ("H100", "h100"))


@dataclass
class Line:
    status: str     # ok | FAIL | warn | skip
    check: str
    detail: str
    fix: str = ""

    def render(self) -> str:
        return f"{self.status:4} {self.check}: {self.detail}" + (f" -> {self.fix}" if self.fix else "")


def run(cmd: list[str], timeout: float = 15) -> tuple[int, str, str]:
    """(exit status, stdout, stderr); 127 when the program is missing."""
    if shutil.which(cmd[0]) is None:
        return 127, "", f"{cmd[0]} not found"
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", f"{' '.join(cmd)} did not answer within {timeout:.0f} s"
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def version_tuple(text: str) -> tuple[int, ...]:
    import re

    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def check_docker() -> Line:
    rc, out, err = run(["docker", "version", "--format", "{{.Server.Version}}"])
    if rc == 127:
        return Line("FAIL", "docker", "not installed", "install Docker Engine: https://docs.docker.com/engine/install/")
    if rc != 0:
        return Line("FAIL", "docker", f"daemon not reachable ({first_line(err)})",
                    "start it (sudo systemctl start docker) or add yourself to the docker group")
    return Line("ok", "docker", f"engine {out}")


def check_compose() -> Line:
    rc, out, err = run(["docker", "compose", "version", "--short"])
    if rc != 0:
        return Line("FAIL", "compose", f"docker compose is missing ({first_line(err)})",
                    "install the Compose plugin: https://docs.docker.com/compose/install/linux/")
    if version_tuple(out) < MIN_COMPOSE:
        return Line("FAIL", "compose", f"{out} is older than {'.'.join(map(str, MIN_COMPOSE))}",
                    "upgrade the docker-compose-plugin package")
    return Line("ok", "compose", out)


def check_runtime() -> Line:
    rc, out, err = run(["docker", "info", "--format", "{{json .Runtimes}}"])
    if rc != 0:
        return Line("FAIL", "nvidia runtime", f"docker info failed ({first_line(err)})", "see the docker line")
    if "nvidia" not in out:
        return Line("FAIL", "nvidia runtime", "Docker has no nvidia runtime",
                    "install the NVIDIA Container Toolkit, then: sudo nvidia-ctk runtime configure --runtime=docker "
                    "&& sudo systemctl restart docker")
    return Line("ok", "nvidia runtime", "registered with Docker")


@dataclass
class Gpu:
    name: str
    memory_mib: int | None   # None: unified memory (GB10 reports [N/A])
    driver: str
    capability: tuple[int, int]


def read_gpus() -> tuple[list[Gpu], Line | None]:
    rc, out, err = run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap",
                        "--format=csv,noheader,nounits"])
    if rc == 127:
        return [], Line("FAIL", "GPU", "nvidia-smi not found: no NVIDIA driver on this host",
                        "install the NVIDIA driver (580 or newer) for your Blackwell GPU")
    if rc != 0:
        return [], Line("FAIL", "GPU", f"nvidia-smi failed ({first_line(err or out)})", "reinstall or reload the driver")
    gpus = []
    for row in out.splitlines():
        name, mem, driver, cap = (x.strip() for x in row.split(","))
        major, _, minor = cap.partition(".")
        gpus.append(Gpu(name, int(mem) if mem.isdigit() else None, driver, (int(major), int(minor or 0))))
    return gpus, None


def check_gpus(gpus: list[Gpu]) -> list[Line]:
    lines = []
    for i, g in enumerate(gpus):
        mem = "unified memory" if g.memory_mib is None else f"{g.memory_mib / 1024:.0f} GiB"
        what = f"{g.name}, {mem}, driver {g.driver}, compute capability {g.capability[0]}.{g.capability[1]}"
        if g.capability[0] not in NVFP4_MAJORS:
            lines.append(Line("FAIL", f"GPU {i}", what + ": no NVFP4 (needs Blackwell)",
                              "serve FP8 checkpoints here: python scripts/plan_memory.py --profile multi --gpu h100"))
        elif version_tuple(g.driver)[:1] < (MIN_DRIVER,):
            lines.append(Line("FAIL", f"GPU {i}", what, f"the image needs driver {MIN_DRIVER} or newer: upgrade it"))
        else:
            lines.append(Line("ok", f"GPU {i}", what))
    return lines


DEPLOYMENT_VARS = ("HF_CACHE", "HF_TOKEN", "ROUTER_PORT")


def deployment_env() -> dict[str, str]:
    """What compose would interpolate: the registry's knob defaults, then .env, then this shell's variables."""
    from scripts.plan_memory import deployment_env as env_of

    env_file = REPO / ".env"
    env = env_of(env_file if env_file.exists() else None)
    # The model knobs, and the deployment-wide settings the checks below read (compose.yml's).
    env.update({k: v for k, v in os.environ.items() if (k in env or k in DEPLOYMENT_VARS) and v})
    return env


def existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(env: dict[str, str], profile: str) -> list[Line]:
    from configs.registry import load_registry

    cache = Path(os.path.expanduser(env.get("HF_CACHE", "~/.cache/huggingface")))
    need_gb = sum(m.memory.weights_gb for m in load_registry().profile(profile) if m.memory) * 1.1
    lines = []
    free = shutil.disk_usage(existing(cache)).free / 1e9
    hub = cache / "hub"
    if free < need_gb:
        lines.append(Line("FAIL", "disk (weights)", f"{free:.0f} GB free at {existing(cache)}, the {profile} profile's "
                          f"weights need ~{need_gb:.0f} GB", "free space or point HF_CACHE in .env at a larger disk"))
    else:
        lines.append(Line("ok", "disk (weights)", f"{free:.0f} GB free at {existing(cache)} (~{need_gb:.0f} GB needed)"))
    rc, root, _ = run(["docker", "info", "--format", "{{.DockerRootDir}}"])
    if rc == 0 and root:
        free = shutil.disk_usage(existing(Path(root))).free / 1e9
        ok = free >= IMAGE_GB
        lines.append(Line("ok" if ok else "FAIL", "disk (image)", f"{free:.0f} GB free at {root} (~{IMAGE_GB} GB needed)",
                          "" if ok else "free space in Docker's data root (docker system prune) or move it"))
    lines.append(Line("ok" if hub.exists() else "warn", "HF cache",
                      f"{hub}" + ("" if hub.exists() else " does not exist yet (created by the first download)")))
    return lines


def check_token(env: dict[str, str]) -> Line:
    cache = Path(os.path.expanduser(env.get("HF_CACHE", "~/.cache/huggingface")))
    if os.environ.get("HF_TOKEN") or env.get("HF_TOKEN") or (cache / "token").exists():
        return Line("ok", "HF token", "set")
    return Line("warn", "HF token", "none (the shipped checkpoints are public; gated ones need one)",
                "put HF_TOKEN=hf_... in .env")


def check_port(env: dict[str, str]) -> Line:
    port = int(env.get("ROUTER_PORT") or 8000)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as err:
            return Line("FAIL", "port", f"{port} is in use ({err.strerror})",
                        "stop what listens there, or set ROUTER_PORT in .env")
    return Line("ok", "port", f"{port} is free")


def gpu_key(gpus: list[Gpu]) -> str | None:
    for g in gpus:
        for needle, key in GPU_KEYS:
            if needle.lower() in g.name.lower():
                return key
    return None


def check_plan(env: dict[str, str], profile: str, key: str | None) -> Line:
    from configs.registry import load_registry
    from scripts.plan_memory import GPUS, plan

    if key is None:
        return Line("skip", "memory plan", "no known GPU here to plan for",
                    f"plan for one: python scripts/plan_memory.py --profile {profile} --gpu gb10")
    p = plan(load_registry(), profile, GPUS[key], env)
    if p.fits:
        return Line("ok", "memory plan", f"{profile} on {key}: {p.used_gib:.1f} of {p.gpu.usable_gib:.1f} GiB")
    problems = "; ".join(dict.fromkeys(x for m in p.models for x in m.problems)) or f"{p.used_gib:.1f} GiB > {p.gpu.usable_gib:.1f}"
    fix = ("put in .env: " + " ".join(f"{k}={v}" for k, v in p.settings.items())) if p.settings else \
        f"see python scripts/plan_memory.py --profile {profile} --gpu {key}"
    return Line("FAIL", "memory plan", f"{profile} on {key} does not fit: {problems}", fix)


def diagnose(profile: str, gpu: str | None) -> list[Line]:
    lines = [check_docker()]
    if lines[0].status == "ok":
        lines += [check_compose(), check_runtime()]
    gpus, problem = read_gpus()
    lines += [problem] if problem else check_gpus(gpus)
    env = deployment_env()
    for check in (lambda: check_disk(env, profile), lambda: [check_token(env)], lambda: [check_port(env)],
                  lambda: [check_plan(env, profile, gpu or gpu_key(gpus))]):
        try:
            lines += check()
        except Exception as err:  # noqa: BLE001 - one line, never a traceback
            lines.append(Line("FAIL", "doctor", f"could not run a check: {err}", "report this as a bug"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="multi", help="compose profile to plan for (default: %(default)s)")
    parser.add_argument("--gpu", help="plan for this GPU (scripts/plan_memory.py --gpu) instead of the detected one")
    args = parser.parse_args(argv)
    try:
        lines = diagnose(args.profile, args.gpu)
    except Exception as err:  # noqa: BLE001 - e.g. a broken configs/models.yaml
        print(f"FAIL doctor: {err}")
        return 2
    print("\n".join(line.render() for line in lines))
    failed = [line for line in lines if line.status == "FAIL"]
    if failed:
        print(f"{len(failed)} problem(s): fix them, then run python scripts/doctor.py again.")
        return 1
    print("Host ready. Next, prove the image on this GPU (about a minute, no weights):\n"
          "    docker compose --profile check run --rm check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
