"""Screenshots of the rendered report, for README readers who have not run it.

    python report/screenshots/take.py        # after dvc repro; needs selenium, chromium, chromedriver, pdftoppm

Writes, into this directory:
  html-highlights.png  the token highlights of the first hook chapter, in headless Chromium
  pdf-pages.png        a contact sheet of PDF pages (the abstract, a hook chapter's
                       specialists and highlights), drawn by pdftoppm
A developer's tool (selenium is not in requirements.txt): the screenshots are
committed, so nobody else needs to run it.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parent / "_output"


def _serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def html_highlights(out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    pages = sorted((OUTPUT / "executed").glob("hook-*.html")) or [OUTPUT / "index.html"]
    server, port = _serve(OUTPUT)
    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1200,1500"):
        opts.add_argument(flag)
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(options=opts)
    try:
        driver.get(f"http://127.0.0.1:{port}/{pages[0].relative_to(OUTPUT).as_posix()}")
        section = driver.find_element(By.ID, "token-highlights")
        driver.execute_script("arguments[0].scrollIntoView();", section)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        server.shutdown()


def pdf_pages(out: Path, pages: list[int]) -> None:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for n in pages:
            prefix = Path(tmp) / f"p{n}"
            subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", str(n), "-l", str(n), str(OUTPUT / "report.pdf"), str(prefix)], check=True)
            images.append(Image.open(next(Path(tmp).glob(f"p{n}*.png"))))
        w, h = images[0].size
        sheet = Image.new("RGB", (w * len(images), h), "white")
        for i, im in enumerate(images):
            sheet.paste(im, (i * w, 0))
        sheet.save(out)


def find_pages(*needles: str) -> list[int]:
    """The first PDF page whose text holds each needle."""
    import pypdf

    texts = [p.extract_text() for p in pypdf.PdfReader(OUTPUT / "report.pdf").pages]
    return [next(i + 1 for i, t in enumerate(texts) if n in t) for n in needles]


if __name__ == "__main__":
    html_highlights(HERE / "html-highlights.png")
    pdf_pages(HERE / "pdf-pages.png", find_pages("We encode", "Category specialists at", "Opacity is proportional"))
    print("wrote", HERE / "html-highlights.png", HERE / "pdf-pages.png")
