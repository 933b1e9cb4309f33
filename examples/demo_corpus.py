"""`python examples/demo_corpus.py OUT`: a small, real multilingual corpus in CC-100 format,
built from Debian's translated manual pages, for the demo on a fresh machine.

Each manual page becomes a document, each paragraph of its rendered text a
line. Run as root, the missing `manpages-<lang>` packages are installed first.
The result has a real crawl's skew: English has thousands of pages, Greek a few.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from xlmr_plugin.storage.atomic import atomic_path

logger = logging.getLogger("demo_corpus")

MAN_ROOT = Path("/usr/share/man")
DEFAULT_LANGS = "en,de,fr,es,it,pl,ru,uk,ja,zh,el"
# Language -> the man directories holding it (English pages sit at the top level).
LOCALE_DIRS = {"en": [""], "pt": ["pt", "pt_BR"], "zh": ["zh_CN", "zh_TW"]}
PACKAGES = {"en": "manpages", "pt": "manpages-pt-br"}


def page_paths(lang: str, root: Path = MAN_ROOT) -> list[Path]:
    paths = []
    for locale in LOCALE_DIRS.get(lang, [lang]):
        paths += (root / locale).glob("man[1-8]/*")
    return sorted(p for p in paths if p.is_file() and not p.is_symlink())


def render(page: Path) -> list[str]:
    """A page's paragraphs as lines: groff with one line per paragraph, no headings,
    no option tags or synopses (short lines that are mostly not words)."""
    with open(page, "rb") as f:
        source = subprocess.run(["zcat", "-f"], stdin=f, capture_output=True, check=True).stdout
    text = subprocess.run(
        ["groff", "-k", "-t", "-man", "-Tutf8", "-rLL=4000n", "-rHY=0", "-P-cbou"],
        input=source, capture_output=True,
    ).stdout.decode("utf-8", errors="replace")
    paragraphs = []
    for line in text.splitlines()[1:-1]:  # first and last: the page's header and footer
        if not line.startswith(" "):  # section headings start at column 0
            continue
        words = line.split()
        line = " ".join(words)
        letters = sum(c.isalpha() for c in line)
        wide = sum(ord(c) > 0x2E80 and c.isalpha() for c in line)  # CJK text has no spaces
        if (len(words) >= 4 or wide >= 10) and letters >= len(line) / 2 and "\ufffd" not in line:
            paragraphs.append(line)
    return paragraphs


def install_packages(langs: list[str]) -> None:
    """apt-get the manual pages of missing languages (root only)."""
    missing = [PACKAGES.get(lang, f"manpages-{lang}") for lang in langs if not page_paths(lang)]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"demo_corpus: install {' '.join(missing)} (Debian) or pass a corpus directory instead")
    logger.info("installing %s", " ".join(missing))
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def build(out: Path, langs: list[str], max_pages: int, workers: int) -> dict[str, int]:
    """Write out/<lang>.txt for each language; returns documents per language."""
    out.mkdir(parents=True, exist_ok=True)
    documents = {}
    with ThreadPoolExecutor(workers) as pool:
        for lang in langs:
            pages = page_paths(lang)[:max_pages]
            if not pages:
                raise SystemExit(f"demo_corpus: no manual pages for '{lang}' under {MAN_ROOT}")
            docs = [d for d in tqdm(pool.map(render, pages), total=len(pages), desc=lang, disable=None) if d]
            with atomic_path(out / f"{lang}.txt") as tmp:
                tmp.write_text("".join("\n".join(doc) + "\n\n" for doc in docs), encoding="utf-8")
            documents[lang] = len(docs)
    return documents


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    parser = argparse.ArgumentParser(prog="examples/demo_corpus.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write <lang>.txt into")
    parser.add_argument("--langs", default=DEFAULT_LANGS, help=f"comma-separated (default {DEFAULT_LANGS})")
    parser.add_argument("--max-pages", type=int, default=150, help="pages per language, at most")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    langs = [x for x in args.langs.split(",") if x]
    if all((args.out / f"{lang}.txt").exists() for lang in langs):
        logger.info("%s already holds every language; delete it to rebuild", args.out)
        return 0
    install_packages(langs)
    for lang, n in build(args.out, langs, args.max_pages, args.workers).items():
        print(f"{lang}\t{n} documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
