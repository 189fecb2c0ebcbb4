"""The PDF's fonts: the project's own font files, never the machine's.

Typst's embedded fonts set Latin, Greek and Cyrillic; what they lack (Chinese,
Arabic, Devanagari, emoji and the other scripts of the corpus and the labelled
texts) comes from PyPI packages that requirements.txt installs (SIL Open Font
License), in a regular and a bold weight:

- `noto-cjk-sans-jp-regular`, `noto-cjk-sans-jp-bold`: Noto Sans CJK as two
  static OpenType files, used as they are. (`manimgx-fonts-cjk` ships a
  variable collection whose default instance, Typst's pick, is Thin.)
- `manimgx-fonts`: Noto Sans for Arabic, Devanagari and 20 other scripts, and
  Noto Emoji, as variable fonts (a `wght` axis). Typst takes a variable font's
  default instance only, so bold text would print in the regular weight:
  fontTools' instancer cuts a static Regular (400) and Bold (700) of each,
  once per machine, into `<cache>/fonts/<key>/` (<cache> as for the model,
  $SAE_WORKBENCH_CACHE or ~/.cache/sae_workbench; the key hashes the source
  files and fontTools' version, so a new package or fontTools cuts anew).

    font_dirs()   # the directories to hand Typst (--font-path / font-paths)

Both renderers use exactly these directories: the pandoc fallback with
`ignore_system_fonts`, and Quarto through report/_pipeline.yml's
`format: typst: font-paths:`, written as paths relative to the report
directory (Quarto resolves a relative font path against the book's
directory, but joins one that starts with `/` onto the project directory,
so an absolute path would name a directory that does not exist).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from .atomic import atomic_dir
from .offline import cache_root

STATIC_PACKAGES = ("noto_cjk_sans_jp_regular", "noto_cjk_sans_jp_bold")
"""Packages of static fonts, handed to Typst as they are."""
VARIABLE_PACKAGES = ("manimgx_fonts",)
"""Packages of variable fonts (a `wght` axis), cut into static weights."""
WEIGHTS = {"Regular": 400, "Bold": 700}
"""The static instances cut from each variable font."""
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")


def package_dir(name: str) -> Path:
    """Where font package `name` is installed; ValueError naming the pip package if it is not."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"font package {name.replace('_', '-')} is not installed: pip install -r requirements.txt")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def font_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in FONT_SUFFIXES)


def _instance_key(sources: list[Path]) -> str:
    import fontTools

    h = hashlib.sha256(f"fontTools {fontTools.version} {sorted(WEIGHTS.items())}".encode())
    for p in sources:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def static_instances(package: str) -> Path:
    """A directory with a static Regular and Bold of every variable font in
    `package` (fonts without a `wght` axis are copied as they are); made once
    per machine, written whole or not at all."""
    sources = font_files(package_dir(package))
    out = cache_root() / "fonts" / f"{package}-{_instance_key(sources)}"
    if out.is_dir():
        return out
    from fontTools.ttLib import TTFont
    from fontTools.varLib import instancer

    print(f"fonts: cutting static regular and bold weights of {len(sources)} variable fonts from {package} into {out} (once per machine)")
    with atomic_dir(out) as tmp:
        for src in sources:
            stem = src.stem.split("[")[0]  # NotoSansArabic[wght] -> NotoSansArabic
            font = TTFont(src)
            axes = {a.axisTag: a for a in font["fvar"].axes} if "fvar" in font else {}
            if "wght" not in axes:
                font.save(tmp / src.name)
                continue
            for style, weight in WEIGHTS.items():
                w = min(max(weight, axes["wght"].minValue), axes["wght"].maxValue)
                pinned = {tag: (w if tag == "wght" else a.defaultValue) for tag, a in axes.items()}
                instancer.instantiateVariableFont(TTFont(src), pinned, updateFontNames=True).save(tmp / f"{stem}-{style}.ttf")
    return out


def font_dirs() -> list[Path]:
    """Every directory whose fonts the PDF may use, in order; ValueError if a package is missing."""
    return [static_instances(p) for p in VARIABLE_PACKAGES] + [package_dir(p) for p in STATIC_PACKAGES]


def postscript_names(directories: list[Path]) -> set[str]:
    """The PostScript names of every font in `directories` (what a PDF's /BaseFont
    names after its subset prefix): how a test tells the project's fonts from others."""
    from fontTools.ttLib import TTCollection, TTFont

    names = set()
    for d in directories:
        for p in font_files(d):
            fonts = TTCollection(p).fonts if p.suffix.lower() in (".ttc", ".otc") else [TTFont(p, lazy=True)]
            names |= {f["name"].getDebugName(6) for f in fonts}
    return names
