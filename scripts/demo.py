"""No-GPU demo: the real router on :8000 in front of two fake trtllm-serve backends.

Usage:
    make demo                      # or: python scripts/demo.py --port 8000

Then open http://localhost:8000/ (status page and playground), or from another terminal:
    python -c "import openai; c = openai.OpenAI(base_url='http://localhost:8000/v1', api_key='x'); \\
print(c.chat.completions.create(model='qwen', messages=[{'role': 'user', 'content': 'hi'}]).choices[0].message)"

The fakes "load" for a few seconds first, so the router answers 503 (starting) at the start,
as it does while the real models load. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from configs.registry import REPO_ROOT, load_registry

# How each trtllm reasoning parser's model writes its thoughts, for the fake backends.
FAKE_STYLE = {"qwen3": "qwen3", "nano-v3": "nemotron", "deepseek-r1": "nemotron"}


def _answers(text: str) -> list[str]:
    vals = [x.strip() for x in text.split(",") if x.strip()]
    if not vals or any(v not in ("good", "bad", "none") for v in vals):
        raise argparse.ArgumentTypeError(f"expected good, bad or none per model, got {text!r}")
    return vals


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="router port (default: 8000)")
    parser.add_argument("--backend-port", type=int, default=8101,
                        help="first fake backend port; the next ones follow (default: 8101)")
    parser.add_argument("--load-seconds", type=float, default=3.0,
                        help="how long the fakes pretend to load weights (default: 3)")
    parser.add_argument("--token-interval", type=float, default=0.03,
                        help="seconds between streamed tokens (default: 0.03)")
    parser.add_argument("--eval-answers", type=_answers, default=["good", "bad"],
                        help="how each fake, in profile order, answers scripts/eval_cases.yaml: good, bad or none, "
                             "so scripts/report.py shows both grades (default: good,bad)")


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    models = load_registry().profile("multi")
    procs: list[subprocess.Popen] = []
    upstreams = []
    try:
        for i, model in enumerate(models):
            port = args.backend_port + i
            parser = model.serve.reasoning_parser or "none"
            answers = args.eval_answers[i % len(args.eval_answers)]
            eval_flags = [] if answers == "none" else ["--eval-answers", answers]
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.trtllm_serve", "--port", str(port), "--model", model.id,
                 "--load-seconds", str(args.load_seconds), "--token-interval", str(args.token_interval),
                 "--output-tokens", "40", "--reasoning-parser", parser,
                 "--tool-parser", model.serve.tool_parser or "none",
                 "--think-style", FAKE_STYLE.get(parser, "none"), *eval_flags], cwd=REPO_ROOT,
                start_new_session=True))
            upstreams += ["--upstream", f"{model.id}=127.0.0.1:{port}"]
        router = subprocess.Popen([sys.executable, str(REPO_ROOT / "scripts" / "run_router.py"),
                                   "--port", str(args.port), *upstreams], cwd=REPO_ROOT, start_new_session=True)
        procs.append(router)
        print(f"demo: fake models {', '.join(m.id for m in models)} load for {args.load_seconds:.0f}s; "
              f"status page and playground: http://localhost:{args.port}/ ; API: http://localhost:{args.port}/v1 ; "
              f"Ctrl-C to stop", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        print("demo: a process exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(p)
    sys.exit(main(p.parse_args()))
