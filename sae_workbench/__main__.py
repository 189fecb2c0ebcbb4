"""Commands of the package: `python -m sae_workbench serve` starts the local app.

    python -m sae_workbench serve                          # http://127.0.0.1:8000/
    python -m sae_workbench serve --port 8080 --hooks blocks.9.hook_resid_post
    python -m sae_workbench serve --host 0.0.0.0           # reachable from other machines: only when asked

Loads the model, every hook's SAE and the steer stage's judge once (15-35 s for
Gemma on 2 busy cores), then serves until Ctrl-C. Needs the SAEs of a finished
`dvc repro` (data/saes); without them it stops at once with one line, status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--saes", default="data/saes", help="trained SAEs, one directory per hook (the train_sae stage's)")
    p.add_argument("--analysis", default="data/analysis", help="the analyze stage's per-hook results (specialists, max activations)")
    p.add_argument("--texts", default="data/texts/labelled.jsonl", help="labelled texts the concept judge is fitted on (as the steer stage)")
    p.add_argument("--browser", default="report/browser", help="the static feature browser, served at /browser/ when built")
    p.add_argument("--hooks", nargs="+", help="serve only these hooks (default: every hook in params.yaml)")
    p.add_argument("--max-requests", type=int, default=None, help="model requests in flight before 429 (default 16)")
    p.add_argument("--threads", type=int, default=min(2, len(os.sched_getaffinity(0))),
                   help="torch threads (default 2, or 1 on a 1-core machine: on idle cores 2 steer 1.4x faster "
                        "(bench/results/app_latency.json); pass 1 when other work keeps the cores busy, "
                        "where 2 were up to 4-7x slower per generation step)")


def serve(args) -> int:
    """Load once, then serve; one line and status 2 on bad input (missing SAEs, bad params)."""
    from .cli import seed_everything
    from .config import load_params
    from .offline import ModelUnavailable
    from .app.workbench import Limits, Workbench, missing_saes

    try:
        params = load_params(args.params)
        seed_everything(params.seed)
        hooks = [params.require_hook(h) for h in args.hooks] if args.hooks else list(params.hooks)
        missing_saes(params, args.saes, hooks, raise_error=True)  # before the model's 15-35 s
        limits = Limits() if args.max_requests is None else Limits(max_requests=args.max_requests)
        if limits.max_requests < 1:
            raise ValueError(f"--max-requests must be at least 1, got {limits.max_requests}")
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)  # after determinism.py's pinned count: the app writes no pipeline output
        print(f"loading {params.model.name} and the SAEs of {len(hooks)} hook(s)...", file=sys.stderr, flush=True)
        wb = Workbench.load(params, args.saes, args.analysis, args.texts, hooks, args.browser, limits)
    except (ValueError, ModelUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    from .app.server import create_app

    app = create_app(wb, args.browser)
    if args.host not in LOOPBACK:
        print(f"warning: listening on {args.host}: other machines can reach this app", file=sys.stderr)
    print(f"serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sae_workbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve_args(sub.add_parser("serve", help="the local app: prompt features, feature pages, steering"))
    args = parser.parse_args(argv)
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
