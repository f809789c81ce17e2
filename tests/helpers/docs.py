"""The README and docs/*.md as tests read them: sections by heading, code blocks, command lines."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.paths import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def pages() -> list[Path]:
    """The README and every page of docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def section(path: Path, heading: str) -> str:
    """The text of ``path`` from the line ``heading`` (e.g. ``"## Training"``) to the next heading
    of the same or a higher level (or the end)."""
    body = text(path)
    start = body.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    ends = [
        m.start() for m in re.finditer(r"\n(#+) ", body[start + 1 :]) if len(m[1]) <= len(level)
    ]
    return body[start : start + 1 + ends[0]] if ends else body[start:]


def blocks(body: str, *langs: str) -> list[str]:
    """The code blocks of ``body`` fenced as one of ``langs`` (e.g. ``"python"``), in order."""
    return [code for lang, code in re.findall(r"```(\w*)\n(.*?)```", body, re.S) if lang in langs]


def command_lines(body: str) -> list[str]:
    """Every command line of the ``sh``/``bash`` blocks of ``body``: comments cut off,
    continuation lines joined."""
    lines: list[str] = []
    for block in blocks(body, "sh", "bash"):
        pending = ""
        for raw in block.splitlines():
            line = raw.split("  #", 1)[0].strip()
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            line = (pending + line).strip()
            pending = ""
            if line:
                lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    plain = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return plain.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    body = re.sub(r"```.*?```", "", text(path), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", body, re.M)}
