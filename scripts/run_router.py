"""Run the router natively (no Docker) in front of trtllm-serve processes on this host.

Usage:
    python scripts/run_router.py --port 8000 \\
        --upstream qwen=127.0.0.1:8001 --upstream nemotron=127.0.0.1:8002

NAME in --upstream is a model id or alias from configs/models.yaml (NAME@ENGINE_VARIANT for the model on another engine,
e.g. nemotron@vllm); repeat the flag (or list
HOST:PORT,HOST:PORT) for several servers of one model. Only the models named are deployed;
with no --upstream, the registry's own addresses are used. `--keys FILE` turns API keys on
(a file made by scripts/keys.py, re-read within seconds of a change). Prints the URL when ready and stops
cleanly on Ctrl-C / SIGTERM. Uses `openresty` when on PATH, else Debian's nginx + Lua module.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from configs.registry import DEFAULT_REGISTRY, REPO_ROOT, RegistryError, load_registry, parse_host_port
from configs.render import dumps, router_config

NGINX_DIR = REPO_ROOT / "nginx"
DEBIAN_MODULES = Path("/usr/lib/nginx/modules")
DEBIAN_LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")  # ndk first


class RouterError(RuntimeError):
    pass


def find_nginx() -> tuple[str, bool]:
    """(binary, needs_load_module): openresty on PATH, else nginx with Debian's Lua module."""
    openresty = shutil.which("openresty")
    if openresty:
        return openresty, False
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx and all((DEBIAN_MODULES / m).exists() for m in DEBIAN_LUA_MODULES):
        return nginx, True
    raise RouterError(
        "no nginx with Lua found: install OpenResty, or on Debian/Ubuntu run\n"
        "  sudo apt-get install -y nginx libnginx-mod-http-lua lua-cjson"
    )


def parse_upstreams(values: list[str], registry) -> dict[str, list[str]]:
    """['qwen=127.0.0.1:8001', ...] -> {canonical id: [HOST:PORT, ...]}, in the order given."""
    out: dict[str, list[str]] = {}
    for value in values:
        name, sep, addrs = value.partition("=")
        if not sep or not addrs:
            raise RouterError(f"--upstream '{value}': expected NAME=HOST:PORT")
        name, _, variant = name.partition("@")
        model = registry.find(name)
        if model is None:
            known = ", ".join(n for m in registry.models.values() for n in m.names)
            raise RouterError(f"--upstream '{value}': '{name}' is not a model id or alias ({known})")
        if variant and variant not in model.engine_variants:
            raise RouterError(f"--upstream '{value}': model '{model.id}' has no engine variant '{variant}'")
        for addr in addrs.split(","):
            try:
                parse_host_port(addr, where=f"--upstream '{value}'")
            except ValueError as err:
                raise RouterError(str(err)) from None
            out.setdefault(model.id + ("@" + variant if variant else ""), []).append(addr)
    return out


def make_prefix(prefix: Path, router_json: str, host: str, port: int, needs_modules: bool,
                workers: int | None = None) -> None:
    """Lay out an nginx prefix: our conf and Lua, plus what differs on this host."""
    conf = prefix / "conf"
    shutil.copytree(NGINX_DIR / "conf", conf, dirs_exist_ok=True)
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    (conf / "listen.conf").write_text(f"listen {listen} reuseport;\n")
    if workers:
        (conf / "workers.conf").write_text(f"worker_processes {workers};\n")
    main_d = conf / "main.d"
    main_d.mkdir(exist_ok=True)
    lines = [f"load_module {DEBIAN_MODULES / m};" for m in DEBIAN_LUA_MODULES] if needs_modules else []
    if os.geteuid() == 0:
        lines.append("user root;")  # workers would run as nobody and may not read the prefix
    (main_d / "host.conf").write_text("\n".join(lines) + "\n")
    for name in ("lua", "ui"):   # linked, so edits show without a restart of this script
        link = prefix / name
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(NGINX_DIR / name, target_is_directory=True)
    (prefix / "registry.json").write_text(router_json)
    for d in ("logs", "temp"):
        (prefix / d).mkdir(exist_ok=True)


def wait_ready(url: str, proc: subprocess.Popen, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RouterError(f"nginx exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/livez", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RouterError(f"router did not answer on {url}/livez within {deadline_s:.0f}s")


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 for other machines (default: 127.0.0.1)")
    parser.add_argument("--upstream", action="append", default=[], metavar="NAME=HOST:PORT[,HOST:PORT]",
                        help="where a model's trtllm-serve listens; repeatable (default: registry addresses)")
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY,
                        help=f"model registry (default: {DEFAULT_REGISTRY.relative_to(REPO_ROOT)})")
    parser.add_argument("--health-interval", type=float, default=None,
                        help="seconds between health probes (default: the registry's router.health.interval_s)")
    parser.add_argument("--keys", type=Path, default=None, metavar="FILE",
                        help="API keys file (scripts/keys.py); every /v1 request then needs a key "
                        "(default: none, the router is open)")
    parser.add_argument("--workers", type=int, default=None,
                        help="nginx worker processes (default: one per CPU)")
    parser.add_argument("--prefix", type=Path, default=None,
                        help="nginx prefix to create and keep, logs in PREFIX/logs (default: a temp dir, removed)")


def main(args: argparse.Namespace) -> int:
    try:
        registry = load_registry(args.registry)
        upstreams = parse_upstreams(args.upstream, registry) if args.upstream else None
        binary, needs_modules = find_nginx()
    except (RegistryError, RouterError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.health_interval is not None and args.health_interval <= 0:
        print("error: --health-interval must be > 0", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be >= 1", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.keys is not None:
        if not args.keys.is_file():
            print(f"error: --keys {args.keys}: no such file (create it with scripts/keys.py add)", file=sys.stderr)
            return 2
        env["ROUTER_KEYS_FILE"] = str(args.keys.resolve())
    try:
        router_json = dumps(router_config(registry, upstreams, args.health_interval))
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host, args.port)) == 0:
            print(f"error: something already listens on port {args.port}", file=sys.stderr)
            return 2

    keep = args.prefix is not None
    prefix = (args.prefix or Path(tempfile.mkdtemp(prefix="llm-router-"))).resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    make_prefix(prefix, router_json, args.host, args.port, needs_modules, args.workers)

    proc = subprocess.Popen([binary, "-p", f"{prefix}/", "-c", "conf/nginx.conf", "-g", "daemon off;"],
                            start_new_session=True, env=env)
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    try:
        wait_ready(url, proc, 15)
        deployed = ", ".join(upstreams) if upstreams else "all registry models"
        print(f"router ready at {url}/v1 ({deployed}); logs in {prefix / 'logs'}", flush=True)
        while stop["signal"] is None and proc.poll() is None:
            time.sleep(0.1)
    except RouterError as err:
        print(f"error: {err}", file=sys.stderr)
        log = prefix / "logs" / "error.log"
        if log.exists():
            sys.stderr.write(log.read_text()[-4000:])
        return 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if not keep:
            shutil.rmtree(prefix, ignore_errors=True)
    if stop["signal"] is None:
        print(f"error: nginx exited with status {proc.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(parser)
    sys.exit(main(parser.parse_args()))
