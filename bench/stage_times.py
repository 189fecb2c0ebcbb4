"""Wall time and peak memory of every pipeline stage, measured in one `dvc repro` run.

$ python bench/stage_times.py                  # dvc repro -f: every stage re-runs
$ python bench/stage_times.py --no-force       # only what is stale
$ python bench/stage_times.py --out bench/results/stage_times.json
$ python bench/stage_times.py --no-force steer render   # these stages and what they need

Stage boundaries are DVC's own "Running stage" lines, timestamped as they
arrive. Peak RSS: every 0.2 s the resident memory of each process under DVC is
read (psutil); a stage's peak is the largest single process seen while it ran
(the stage's `python stages/...` process; DVC's own process is excluded).
Prints one line per stage and writes the figures as JSON.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

GIB = 1024**3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-force", action="store_true")
    ap.add_argument("--out", default="bench/results/stage_times.json")
    ap.add_argument("targets", nargs="*", help="stages to reproduce (default: the whole pipeline)")
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "dvc", "repro"] + ([] if a.no_force else ["-f"]) + a.targets
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    times: list[dict] = []
    state = {"stage": None, "peak": 0}
    done = threading.Event()

    def poll(root_pid: int) -> None:
        while not done.is_set():
            try:
                kids = psutil.Process(root_pid).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for k in kids:
                try:
                    state["peak"] = max(state["peak"], k.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.2)

    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env) as p:
        threading.Thread(target=poll, args=(p.pid,), daemon=True).start()
        started = t0
        for line in p.stdout:
            sys.stdout.write(line)
            if line.startswith("Running stage '"):
                now = time.perf_counter()
                if state["stage"]:
                    times.append({"stage": state["stage"], "seconds": round(now - started, 1), "peak_rss_gib": round(state["peak"] / GIB, 3)})
                state.update(stage=line.split("'")[1], peak=0)
                started = now
        rc = p.wait()
    done.set()
    end = time.perf_counter()
    if state["stage"]:
        times.append({"stage": state["stage"], "seconds": round(end - started, 1), "peak_rss_gib": round(state["peak"] / GIB, 3)})
    total = end - t0
    for t in times:
        print(f"{t['stage']:45s} {t['seconds']:8.1f} s  {100 * t['seconds'] / total:5.1f}%  peak RSS {t['peak_rss_gib']:.2f} GiB")
    print(f"{'total (dvc repro' + ('' if a.no_force else ' -f') + ')':45s} {total:8.1f} s")
    result = {
        "what": "wall time and peak RSS (largest single process) of every stage in one dvc repro" + ("" if a.no_force else " -f"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus_visible": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / GIB, 1)},
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "command": " ".join(["dvc", "repro"] + ([] if a.no_force else ["-f"]) + a.targets),
        "exit_status": rc,
        "total_seconds": round(total, 1),
        "max_peak_rss_gib": max((t["peak_rss_gib"] for t in times), default=0.0),
        "stages": times,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(rc)


if __name__ == "__main__":
    main()
