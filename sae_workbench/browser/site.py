"""The static feature browser of one hook, written as plain files that open from
local disk (file://) in any browser: no server, no CDN, no web fonts.

    <out>/<hook>/
        index.html      every alive feature: sortable by density, max activation and
                        selectivity; searchable by feature id and by token or text
        feature.html    one page for every feature: feature.html#<id>
        browser.css, browser.js
        index.js        the index rows (IndexRow)
        texts.js        each evaluation text's [category, split, id] (contexts name texts by
                        index), and which data files exist
        data/<k>.js     FeaturePage records of features [k*SHARD, (k+1)*SHARD): a page
                        loads only the shard of the feature it shows

Data files are JavaScript that hands its JSON to a callback (browsers refuse
fetch() of file:// URLs, not <script src>). `read_site` reads them back through
the same types.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from ..atomic import atomic_dir
from ..viz.highlight import ORANGE
from .pages import FeaturePage, IndexRow

SHARD = 16
"""Features per data file."""
ASSETS = ("index.html", "feature.html", "browser.css", "browser.js")


def _js(callback: str, payload) -> str:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    safe = body.replace("</", "<\\/")  # inside <script>: never let a text close the script element
    return f"{callback}({safe});\n"


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def write_site(out: str | Path, hook: str, pages: list[FeaturePage], index: list[IndexRow], texts: list[dict], meta: dict) -> Path:
    """Write the browser of `hook` to <out>/<hook> atomically (a reader sees the old one or the new one)."""
    target = Path(out) / hook
    with atomic_dir(target) as tmp:
        for name in ASSETS:
            text = (_asset(name).replace("__HOOK__", hook).replace("__ORANGE__", ",".join(map(str, ORANGE)))
                    .replace("__SHARD__", str(SHARD)))
            (tmp / name).write_text(text, encoding="utf-8")
        shards: dict[int, dict] = {}
        for p in pages:
            shards.setdefault(p.feature // SHARD, {})[str(p.feature)] = p.to_json()
        (tmp / "data").mkdir()
        for k, feats in sorted(shards.items()):
            (tmp / "data" / f"{k}.js").write_text(_js("BROWSER.shard", {"shard": k, "features": feats}), encoding="utf-8")
        payload = {**meta, "hook": hook, "shard_size": SHARD, "rows": [r.to_json() for r in index]}
        (tmp / "index.js").write_text(_js("BROWSER.index", payload), encoding="utf-8")
        text_rows = [[t["category"], t["split"], t["id"]] for t in texts]
        site = {"texts": text_rows, "shards": sorted(shards), "d_sae": meta.get("d_sae")}
        (tmp / "texts.js").write_text(_js("BROWSER.texts", site), encoding="utf-8")
    return target


_CALL = re.compile(r"^BROWSER\.(\w+)\((.*)\);\s*$", re.S)


def _read_js(path: Path) -> dict:
    m = _CALL.match(path.read_text(encoding="utf-8"))
    if not m:
        raise ValueError(f"{path} is not a browser data file; delete {path.parent} and re-run dvc repro")
    return json.loads(m.group(2).replace("<\\/", "</"))


def read_index(site: str | Path) -> tuple[dict, list[IndexRow]]:
    """(meta, rows) of a written browser."""
    d = _read_js(Path(site) / "index.js")
    return {k: v for k, v in d.items() if k != "rows"}, [IndexRow.from_json(r) for r in d["rows"]]


def read_page(site: str | Path, feature: int) -> FeaturePage | None:
    """The page of one feature, or None where the feature never fired (it has no page)."""
    path = Path(site) / "data" / f"{feature // SHARD}.js"
    if not path.exists():
        return None
    d = _read_js(path)["features"].get(str(feature))
    return None if d is None else FeaturePage.from_json(d)
