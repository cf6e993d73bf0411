"""docs/benchmarks.md is written by several benchmarks: each owns its sections and leaves the others alone."""
from __future__ import annotations

import re
from pathlib import Path

HEAD = "# FaceForge benchmarks\n"


def _sections(text: str) -> list[tuple[str, str]]:
    """[(title line, whole section text)] of the '## ' sections, in order (the text before the first is dropped)."""
    parts = re.split(r"(?m)^(?=## )", text)
    return [(p.splitlines()[0], p.rstrip("\n") + "\n") for p in parts if p.startswith("## ")]


def write_section(doc: Path, lines: list[str]) -> None:
    """Replace the section whose title is lines[0] ('## ...'), or append it; every other section stays."""
    doc = Path(doc)
    text = doc.read_text() if doc.is_file() else HEAD
    title = lines[0].strip()
    body = "\n".join(lines).rstrip("\n") + "\n"
    secs = _sections(text)
    head = text[: text.find("\n## ") + 1] if secs else text.rstrip("\n") + "\n"
    if any(t.strip() == title for t, _ in secs):
        secs = [(t, body if t.strip() == title else s) for t, s in secs]
    else:
        secs.append((title, body))
    doc.write_text(head.rstrip("\n") + "\n\n" + "\n".join(s for _, s in secs))


def write_head(doc: Path, lines: list[str], own) -> None:
    """Rewrite the file's head and the sections `own(title)` claims with `lines`, keeping every other section
    (another benchmark's) after them."""
    doc = Path(doc)
    kept = []
    if doc.is_file():
        kept = [s for t, s in _sections(doc.read_text()) if not own(t)]
    doc.write_text("\n".join(lines).rstrip("\n") + "\n" + ("\n" + "\n".join(kept) if kept else ""))
