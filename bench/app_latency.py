"""Latency of the local app (`python -m sae_workbench serve`), measured over HTTP as a
browser sees it: the prompt view of a 64-token prompt, and steering a 20-token
continuation (steered and unsteered side by side, with the steer stage's measures):
a prompt's first run (both sides computed, in one batch) and a repeat at a new
coefficient (the unsteered side reused, `app.workbench`).

$ python bench/app_latency.py [--threads 1 2] [--rounds 3] [--prompt-reps 40] [--steer-reps 7] [--screenshot report/screenshots/app.png]

Starts the app in a fresh process per torch thread count (`--threads`), on a free
port of 127.0.0.1, with the pipeline's SAEs and analysis (`--params`, `--saes`,
`--analysis`, `--hooks`), warms it up (2 prompt views, 1 steering run), then times
the requests one after another, client side, --rounds times over (each round's first
runs on prompts not steered before), with the memory read bandwidth before each round
(`machine.memory_read_gb_s`: this shared VM's speed at memory-bound work drifts by up
to 2x within an hour), and writes p50 / p95 / mean and every time, pooled and per round,
to bench/results/app_latency.json with the machine's CPU and load. With
--screenshot, the page is shown in headless Debian chromium (a prompt's highlights
and a steering run of the steer stage's specialist) and saved there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from machine import cpu_model, memory_read_gb_s  # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]

TEXT = ("The old lighthouse stood on the rocks at the edge of the bay, its white paint peeling after decades of salt "
        "and wind. Every evening the keeper climbed the spiral stairs, trimmed the wick and wound the clockwork that "
        "turned the great lens, so that ships far out at sea could find their way home through the dark and the fog.")
"""Cut to its first 64 tokens (`prompt_of`)."""

FIRST_RUN_PROMPTS = ["The river behind the mill", "My favourite book", "In the morning the market", "The train to the city",
                     "She opened the letter and", "Our garden in spring", "The last time I saw him", "On the radio they said",
                     "The children ran down to", "At the top of the hill"]
"""Steering prompts of 3-7 words, none of params.yaml's steer.prompts (the warm-up's), each steered once (a first run)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base: str, path: str, body: dict, timeout: float = 600) -> tuple[float, dict]:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out = json.loads(r.read())
    return time.perf_counter() - t, out


def get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.loads(r.read())


def start(args, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "sae_workbench", "serve", "--port", str(port), "--params", args.params, "--saes", args.saes,
           "--analysis", args.analysis, "--threads", str(threads)] + (["--hooks", *args.hooks] if args.hooks else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    t = time.monotonic()
    while True:
        if proc.poll() is not None:
            sys.exit(f"error: the app exited: {proc.stderr.read()[-1000:]}")
        try:
            get(base, "/api/info")
            print(f"app up in {time.monotonic() - t:.0f} s ({threads} thread(s))", flush=True)
            return proc, base
        except OSError:
            time.sleep(1)


def prompt_of(base: str, n: int) -> str:
    """TEXT cut after its n-th token (the prompt view reports each token's character span)."""
    _, v = post(base, "/api/prompt", {"prompt": TEXT})
    toks = [t for t in v["tokens"] if not t["special"]]
    prompt = TEXT[: toks[n - 1]["end"]]
    _, v = post(base, "/api/prompt", {"prompt": prompt})
    assert v["n_tokens"] == n, (v["n_tokens"], n)
    return prompt


def summary(times: list[float]) -> dict:
    s = sorted(times)
    pct = lambda q: s[min(len(s) - 1, round(q * (len(s) - 1)))]  # noqa: E731  nearest rank
    return {"n": len(s), "p50_ms": round(1000 * statistics.median(s), 1), "p95_ms": round(1000 * pct(0.95), 1),
            "mean_ms": round(1000 * statistics.fmean(s), 1), "min_ms": round(1000 * s[0], 1), "max_ms": round(1000 * s[-1], 1),
            "all_ms": [round(1000 * t, 1) for t in times]}


def measure(args, threads: int) -> dict:
    proc, base = start(args, threads)
    try:
        info = get(base, "/api/info")
        hook = info["default_hook"]
        prompt = prompt_of(base, 64)
        steer = {"prompt": info["steer"]["prompt"], "feature": info["steer"]["feature"], "coefficient": info["steer"]["coefficient"],
                 "mode": "add", "max_new_tokens": 20, "hook": hook}
        for _ in range(2):
            post(base, "/api/prompt", {"prompt": prompt, "hook": hook})
        post(base, "/api/steer", steer)
        load0 = os.getloadavg()
        rounds, views, firsts, repeats = [], [], [], []
        for rnd in range(args.rounds):  # the same requests again: a shared VM's speed drifts (memory_read_gb_s)
            bw = memory_read_gb_s()
            v = [post(base, "/api/prompt", {"prompt": prompt, "hook": hook})[0] for _ in range(args.prompt_reps)]
            f, rep = [], []
            for i in range(rnd * args.steer_reps, (rnd + 1) * args.steer_reps):  # a new prompt: both sides computed, in one batch
                t, r = post(base, "/api/steer", {**steer, "prompt": FIRST_RUN_PROMPTS[i % len(FIRST_RUN_PROMPTS)] + " " * (i // len(FIRST_RUN_PROMPTS))})
                assert not r["unsteered_reused"], r
                f.append(t)
            for i in range(args.steer_reps):  # the warm-up's prompt at a new coefficient: the unsteered side reused
                t, r = post(base, "/api/steer", {**steer, "coefficient": steer["coefficient"] * (0.5 + 0.25 * i)})
                assert r["unsteered_reused"], r
                rep.append(t)
            rounds.append({"memory_read_gb_s_before": bw, "prompt_view": summary(v), "steering_20_tokens": summary(f),
                           "steering_20_tokens_repeat": summary(rep)})
            print(f"round {rnd + 1}: memory read {bw} GB/s; prompt view p50 {rounds[-1]['prompt_view']['p50_ms']} ms; steering p50 "
                  f"{rounds[-1]['steering_20_tokens']['p50_ms']} ms (first run), {rounds[-1]['steering_20_tokens_repeat']['p50_ms']} ms "
                  f"(a new coefficient)", flush=True)
            views, firsts, repeats = views + v, firsts + f, repeats + rep
        load1 = os.getloadavg()
        run = {"threads": threads, "hook": hook, "prompt_tokens": 64, "prompt_view": summary(views),
               "steer_request": {k: v for k, v in steer.items() if k != "prompt"} | {"prompt": steer["prompt"]},
               "steering_20_tokens": summary(firsts),
               "steering_20_tokens_what": ("first run of a prompt (FIRST_RUN_PROMPTS, with 1, 2, ... trailing spaces once all are used): "
                                           "steered and unsteered computed in one batch"),
               "steering_20_tokens_repeat": summary(repeats),
               "steering_20_tokens_repeat_what": ("the warm-up's prompt and feature at coefficients 0.5, 0.75, ... x the default: "
                                                  "the unsteered side reused, the steered side computed alone"),
               "pooled": "prompt_view and steering_* pool every round; rounds: each round's own figures and the memory bandwidth before it",
               "rounds": rounds,
               "load_average_before_after": [list(load0), list(load1)]}
        print(f"{threads} thread(s): prompt view p50 {run['prompt_view']['p50_ms']} ms, p95 {run['prompt_view']['p95_ms']} ms; "
              f"steering 20 tokens p50 {run['steering_20_tokens']['p50_ms']} ms (first run of a prompt), "
              f"{run['steering_20_tokens_repeat']['p50_ms']} ms (a new coefficient)", flush=True)
        if args.screenshot and threads == args.threads[0]:
            screenshot(base, args.screenshot, steer)
        return run
    finally:
        proc.terminate()
        proc.wait(30)


def screenshot(base: str, path: str, steer: dict) -> None:
    """The page after a prompt view and a steering run, in headless Debian chromium."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from sae_workbench.browser.chromium import headless

    driver = headless(1400, 900, ("--hide-scrollbars",))
    try:
        driver.get(base + "/")
        wait = WebDriverWait(driver, 600)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        driver.find_element(By.ID, "show").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#highlight .tok"))
        spec = driver.find_elements(By.CSS_SELECTOR, f'#features .feat[data-feature="{steer["feature"]}"] button')
        if spec:
            spec[0].click()
        e = driver.find_element(By.ID, "feature")
        e.clear()
        e.send_keys(str(steer["feature"]))
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.ID, "steered").text.strip() or d.find_element(By.ID, "steer-error").text)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(path)
        print(f"screenshot: {path}", flush=True)
    finally:
        driver.quit()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--analysis", default="data/analysis")
    p.add_argument("--hooks", nargs="+")
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--prompt-reps", type=int, default=40)
    p.add_argument("--steer-reps", type=int, default=7)
    p.add_argument("--rounds", type=int, default=3, help="times the whole set of requests is repeated")
    p.add_argument("--screenshot")
    p.add_argument("--out", default=str(ROOT / "bench/results/app_latency.json"))
    p.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = p.parse_args()
    runs = [measure(args, t) for t in args.threads]
    out = {"what": "local app latency over HTTP (client side, one request at a time, after warm-up): prompt view of a 64-token "
                   "prompt; steering a 20-token continuation with the steer stage's measures, a prompt's first run (steered and "
                   "unsteered as one batch) and a new coefficient on it (the unsteered side reused)",
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cpus_visible": os.cpu_count(),
           "torch": version("torch"), "python": platform.python_version(), "niceness": os.nice(0), "note": args.note,
           "targets": {"prompt_view_p50_ms": 300, "prompt_view_p95_ms": 1000, "steering_20_tokens_p50_ms": 3000}, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
