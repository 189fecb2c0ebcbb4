"""The feature browser's size on disk and how fast a feature's page opens from local disk.

$ python bench/browser_open.py                       # report/browser/*, 40 features per hook
$ python bench/browser_open.py --site report/browser --n 40 --out bench/results/browser.json

Opens each hook's index and then `--n` seeded random alive features' pages
(file://, Debian's headless chromium through chromedriver, one browser), each
from a fresh navigation, timing from the navigation to the page's contexts
being in the DOM. Prints and writes: bytes per hook and in all, files, features
with a page, and p50/p95/max of the open times per hook and overall.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from machine import cpu_model  # bench/machine.py


def main() -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from sae_workbench.browser import read_index
    from sae_workbench.browser.chromium import headless

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="report/browser")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--out", default="bench/results/browser.json")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    d = headless()
    hooks, all_times, total = {}, [], 0
    try:
        for site in sorted(p for p in Path(a.site).resolve().iterdir() if (p / "index.js").is_file()):
            size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
            files = sum(1 for f in site.rglob("*") if f.is_file())
            total += size
            _, rows = read_index(site)
            t = time.perf_counter()
            d.get((site / "index.html").as_uri())
            WebDriverWait(d, 30).until(lambda x: x.find_elements(By.CSS_SELECTOR, "#features tbody tr"))
            index_s = time.perf_counter() - t
            times = []
            for f in rng.choice([r.feature for r in rows], size=min(a.n, len(rows)), replace=False):
                d.get("about:blank")
                t = time.perf_counter()
                d.get((site / "feature.html").as_uri() + f"#{int(f)}")
                WebDriverWait(d, 30).until(lambda x: x.find_elements(By.CSS_SELECTOR, "#contexts .tokhl"))
                times.append(time.perf_counter() - t)
            all_times += times
            hooks[site.name] = {"bytes": size, "files": files, "features_with_page": len(rows), "index_open_s": round(index_s, 3),
                                "page_open_s": {"p50": round(float(np.percentile(times, 50)), 3),
                                                "p95": round(float(np.percentile(times, 95)), 3), "max": round(max(times), 3)}}
            print(f"{site.name}: {size / 1e6:.1f} MB, {len(rows)} pages, index {index_s:.2f} s, "
                  f"page p50 {hooks[site.name]['page_open_s']['p50']:.3f} s, p95 {hooks[site.name]['page_open_s']['p95']:.3f} s")
    finally:
        d.quit()
    out = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                       "python": platform.python_version()},
           "site": a.site, "features_opened_per_hook": a.n, "total_bytes": total, "hooks": hooks,
           "page_open_s": {"p50": round(float(np.percentile(all_times, 50)), 3), "p95": round(float(np.percentile(all_times, 95)), 3),
                           "max": round(max(all_times), 3)}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"all hooks: {total / 1e6:.1f} MB; page open p50 {out['page_open_s']['p50']:.3f} s, p95 {out['page_open_s']['p95']:.3f} s -> {a.out}")


if __name__ == "__main__":
    main()
