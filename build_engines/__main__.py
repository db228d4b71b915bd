"""python -m build_engines {plan,download,quantize,build,verify} ...  (see build_engines/__init__.py)"""

from __future__ import annotations

import argparse
import sys

from build_engines import build, download, plan, quantize, verify

COMMANDS = {"plan": plan, "download": download, "quantize": quantize, "build": build, "verify": verify}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m build_engines", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.__doc__.splitlines()[0],
                           description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_cli_args(p)
    args = parser.parse_args(argv)
    return COMMANDS[args.command].main(args)


if __name__ == "__main__":
    sys.exit(main())
