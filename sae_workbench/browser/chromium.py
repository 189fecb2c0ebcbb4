"""Debian's headless chromium through its chromedriver: how the tests and bench/
open the feature browser and the local app in a real browser.

    from sae_workbench.browser.chromium import headless
    d = headless(1400, 900)
    d.get("file:///.../report/browser/blocks.9.hook_resid_post/index.html")

The packages are Debian's `chromium` and `chromium-driver` (`.ci/run` apt-installs
them; playwright's and selenium's own browser downloads cannot be reached here).
The browser keeps its console log (`d.get_log("browser")`) and sees only the
project's own fonts (`sae_workbench.fonts`, the PDF's): pages render the same on a
machine without system fonts (`.ci/clean-machine` hides them all), where chromium's
renderer would otherwise crash on the first page of text.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..fonts import font_dirs

CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"


def available() -> bool:
    """Both Debian binaries are on PATH."""
    return bool(shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER))


def headless(width: int = 1400, height: int = 900, extra_args: tuple[str, ...] = ()):
    """A selenium Chrome driver for Debian's headless chromium at this window size."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not available():
        raise RuntimeError("chromium and chromedriver are not installed: apt-get install chromium chromium-driver")
    conf = Path(tempfile.mkdtemp(prefix="chromium-fonts-")) / "fonts.conf"
    dirs = "".join(f"<dir>{d}</dir>" for d in font_dirs())
    conf.write_text(f'<?xml version="1.0"?><fontconfig>{dirs}<cachedir>{conf.parent}/cache</cachedir></fontconfig>')
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}", *extra_args):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which(CHROMEDRIVER), env={**os.environ, "FONTCONFIG_FILE": str(conf)})
    return webdriver.Chrome(service=service, options=opts)
