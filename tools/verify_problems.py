"""How every ``tools verify`` check words a problem: ``"<bundle>: <file>: <what is wrong>"``."""

from __future__ import annotations

from pathlib import Path


def bundle_problem(bundle_dir: Path, file: str | Path, message: str) -> str:
    """One problem, named by bundle and file so a reader of a long verify log knows where to look."""
    return f"{bundle_dir.name}: {file}: {message}"


def first_line(error: BaseException, limit: int = 300) -> str:
    """An exception as one short line: a traceback's tail would bury the other problems."""
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text if len(text) <= limit else text[:limit] + "..."
