"""Wall time of every pipeline stage, measured in one `dvc repro` run.

$ python bench/stage_times.py            # dvc repro -f: every stage re-runs
$ python bench/stage_times.py --no-force

Prints one line per stage (seconds, share of the total) and the total; stage
boundaries are DVC's own "Running stage" lines, timestamped as they arrive.
"""

import argparse
import subprocess
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-force", action="store_true")
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "dvc", "repro"] + ([] if a.no_force else ["-f"])
    t0 = time.perf_counter()
    times: list[tuple[str, float]] = []
    current, started = None, t0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as p:
        for line in p.stdout:
            if line.startswith("Running stage '"):
                now = time.perf_counter()
                if current:
                    times.append((current, now - started))
                current, started = line.split("'")[1], now
        rc = p.wait()
    end = time.perf_counter()
    if current:
        times.append((current, end - started))
    total = end - t0
    for name, s in times:
        print(f"{name:45s} {s:8.1f} s  {100 * s / total:5.1f}%")
    print(f"{'total (dvc repro' + ('' if a.no_force else ' -f') + ')':45s} {total:8.1f} s")
    sys.exit(rc)


if __name__ == "__main__":
    main()
