"""Wait until every deployed model answers through the router, with progress and a clear timeout.

Usage:
    python scripts/wait_healthy.py                          # http://localhost:8000, 60 minutes
    python scripts/wait_healthy.py --url http://spark:8000 --timeout 900 --model qwen

Polls the router's /health (per model and per trtllm-serve: starting, ready, down, with the
reason) and prints a line whenever something changes. Exit status: 0 all ready, 1 timed out
(the message says which models were not ready and why), 2 router unreachable for the whole wait
or bad arguments. A first start downloads and compiles: 20-40 minutes is normal.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class Snapshot:
    reachable: bool
    models: dict[str, tuple[str, str]]     # id -> (state, reason of the first upstream not ready)
    error: str = ""

    def ready(self, wanted: set[str] | None) -> bool:
        if not self.reachable or not self.models:
            return False
        ids = self.models if not wanted else {m for m in self.models if m in wanted}
        return bool(ids) and all(self.models[m][0] == "ready" for m in ids)


def snapshot(url: str, timeout: float = 5.0) -> Snapshot:
    try:
        r = requests.get(url.rstrip("/") + "/health", timeout=timeout)
        body = r.json()
    except (requests.RequestException, ValueError) as err:
        return Snapshot(False, {}, "connection refused" if isinstance(err, requests.ConnectionError) else type(err).__name__)
    models = {}
    for mid, info in (body.get("models") or {}).items():
        reason = next((u.get("reason") or "" for u in info.get("upstreams", []) if u.get("state") != "ready"), "")
        models[mid] = (info.get("state", "unknown"), reason)
    return Snapshot(True, models)


def resolve_wanted(url: str, names: list[str]) -> set[str] | None:
    """Model ids (as the router lists them) for the names given; ids, aliases or None."""
    if not names:
        return None
    r = requests.get(url.rstrip("/") + "/v1/models", timeout=5)
    r.raise_for_status()
    out = set()
    for name in names:
        # A variant (e.g. qwen-nothink) is as healthy as the model it is a variant of.
        hit = [m.get("variant_of") or m["id"] for m in r.json()["data"] if name.lower() in
               [m["id"].lower(), *(a.lower() for a in m.get("aliases", []))]]
        if not hit:
            raise ValueError(f"'{name}' is not deployed behind {url}")
        out.update(hit)
    return out


def describe(s: Snapshot) -> str:
    if not s.reachable:
        return f"router not reachable ({s.error})"
    return ", ".join(f"{m}: {st}" + (f" ({why})" if why and st != "ready" else "") for m, (st, why) in sorted(s.models.items()))


def wait(url: str, timeout: float, interval: float, wanted: set[str] | None, out=sys.stdout,
         clock=time.monotonic, sleep=time.sleep) -> int:
    start = clock()
    last = None
    ever_reachable = False
    while True:
        s = snapshot(url)
        ever_reachable |= s.reachable
        line = describe(s)
        elapsed = clock() - start
        if line != last:
            print(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {line}", file=out, flush=True)
            last = line
        if s.ready(wanted):
            print(f"all ready after {elapsed:.0f} s", file=out, flush=True)
            return 0
        if elapsed >= timeout:
            if not ever_reachable:
                print(f"timed out after {timeout:.0f} s: the router at {url} never answered. "
                      "Is the stack up (docker compose --profile multi up -d)?", file=out, flush=True)
                return 2
            waiting = [m for m, (st, _) in s.models.items() if st != "ready" and (not wanted or m in wanted)]
            print(f"timed out after {timeout:.0f} s; not ready: {', '.join(waiting) or 'router'}. "
                  "See `docker compose logs -f <service>`; a first start downloads 17-20 GB per model.",
                  file=out, flush=True)
            return 1
        sleep(interval)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://localhost:8000", help="router base URL (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=5, help="seconds between polls (default: %(default)s)")
    parser.add_argument("--model", action="append", default=[], help="wait only for this id or alias (repeatable)")


def main(args: argparse.Namespace) -> int:
    if args.timeout <= 0 or args.interval <= 0:
        print("wait_healthy: --timeout and --interval must be positive", file=sys.stderr)
        return 2
    wanted = None
    if args.model:
        deadline = time.monotonic() + args.timeout
        while wanted is None:
            try:
                wanted = resolve_wanted(args.url, args.model)
            except ValueError as err:
                print(f"wait_healthy: {err}", file=sys.stderr)
                return 2
            except requests.RequestException:
                if time.monotonic() > deadline:
                    print(f"wait_healthy: the router at {args.url} never answered", file=sys.stderr)
                    return 2
                time.sleep(args.interval)
    return wait(args.url, args.timeout, args.interval, wanted)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cli_args(ap)
    sys.exit(main(ap.parse_args()))
