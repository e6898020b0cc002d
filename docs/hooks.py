"""MkDocs hook: publish the committed benchmark results as they are, at build time.

Every ``benchmarks/results/**/*.md`` becomes the page ``benchmarks/<same path>`` of the site, read
from the repository when the site is built (nothing is copied into docs/, so the pages cannot
go stale), together with the PNG files those pages show and the few that docs/ pages show
(``EXTRA_IMAGES``). ``<!-- usfad:results-index -->`` in a page is replaced by a list of links
to all of them. Loaded by mkdocs.yml (``hooks:``).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
#: where the result pages appear in the site (a folder of docs/, shared with the overview page)
DEST = "benchmarks"
#: PNG files under benchmarks/results that pages in docs/ show
EXTRA_IMAGES = (
    "vision_summary.png",
    "vision_magnetic_tile/seed0/fastflow-usf-seed0_best-defect.png",
    "vision_magnetic_tile/seed0/fastflow-affine-seed0_best-defect.png",
)
INDEX_MARKER = "<!-- usfad:results-index -->"
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")

_pages: dict[str, str] = {}  # site path -> title


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.relative_to(RESULTS).as_posix()


def _add(files: Files, config: Any, uri: str, source: Path) -> None:
    if files.get_file_from_path(uri) is None:
        # NOT_IN_NAV: linked from the overview page; mkdocs need not list those outside the nav
        files.append(File.generated(config, uri, abs_src_path=str(source), inclusion=InclusionLevel.NOT_IN_NAV))


def on_files(files: Files, config: Any) -> Files:
    _pages.clear()
    images = {RESULTS / name for name in EXTRA_IMAGES}
    for page in sorted(RESULTS.rglob("*.md")):
        uri = f"{DEST}/{page.relative_to(RESULTS).as_posix()}"
        _add(files, config, uri, page)
        _pages[uri] = _title(page)
        for target in IMAGE_LINK.findall(page.read_text(encoding="utf-8")):
            if "://" not in target and not target.startswith("/"):
                images.add((page.parent / target).resolve())
    for image in sorted(images):
        if image.is_file() and image.is_relative_to(RESULTS):
            _add(files, config, f"{DEST}/{image.relative_to(RESULTS).as_posix()}", image)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if INDEX_MARKER not in markdown:
        return markdown
    here = posixpath.dirname(page.file.src_uri)
    lines = []
    for uri, title in _pages.items():
        link = posixpath.relpath(uri, here or ".")
        source = f"benchmarks/results/{Path(uri).relative_to(DEST).as_posix()}"
        lines.append(f"- [`{source}`]({link}): {title}")
    return markdown.replace(INDEX_MARKER, "\n".join(lines))
