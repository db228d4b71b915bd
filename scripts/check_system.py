"""Check (and with --install, install) the system packages the router and its tests need.

Usage:
    python scripts/check_system.py            # report what is missing, exit 1 if anything is
    python scripts/check_system.py --install  # apt-get install what is missing (Debian/Ubuntu, as root)

An `openresty` on PATH is used instead of Debian's nginx + Lua module when present.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Debian package -> what proves it is installed.
PACKAGES = {
    "nginx": lambda: shutil.which("nginx") or Path("/usr/sbin/nginx").exists(),
    "libnginx-mod-http-lua": lambda: Path("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists(),
    "lua-cjson": lambda: Path("/usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so").exists()
    or any(Path("/usr/lib").glob("*/lua/5.1/cjson.so")),
    "lua-busted": lambda: shutil.which("busted"),
    "luajit2": lambda: shutil.which("luajit"),
    "wrk": lambda: shutil.which("wrk"),
    # promtool checks monitoring/prometheus/prometheus.yml in tests (the package ships it).
    "prometheus": lambda: shutil.which("promtool"),
    # The status page's browser tests (tests/ui) drive Debian's chromium with Playwright.
    "chromium": lambda: shutil.which("chromium"),
}
ROUTER_ONLY = {"nginx", "libnginx-mod-http-lua", "lua-cjson"}


def missing_packages() -> list[str]:
    has_openresty = shutil.which("openresty") is not None
    return [pkg for pkg, present in PACKAGES.items()
            if not (has_openresty and pkg in ROUTER_ONLY) and not present()]


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--install", action="store_true",
                        help="apt-get install what is missing (default: only report)")


def main(args: argparse.Namespace) -> int:
    missing = missing_packages()
    if not missing:
        return 0
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if not args.install:
        print("missing system packages: " + " ".join(missing), file=sys.stderr)
        print("install with: sudo " + " ".join(command), file=sys.stderr)
        return 1
    if not shutil.which("apt-get"):
        print(f"error: no apt-get here; install these yourself: {' '.join(missing)} "
              "(or OpenResty plus busted, luajit and wrk)", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        command = ["sudo", *command]
    print("installing: " + " ".join(missing), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = ["apt-get", "update", "-qq"] if os.geteuid() == 0 else ["sudo", "apt-get", "update", "-qq"]
    if subprocess.run(update, env=env).returncode != 0 or subprocess.run(command, env=env).returncode != 0:
        print("error: apt-get failed; install by hand: " + " ".join(missing), file=sys.stderr)
        return 1
    still = missing_packages()
    if still:
        print("error: still missing after install: " + " ".join(still), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(p)
    sys.exit(main(p.parse_args()))
