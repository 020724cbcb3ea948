"""Where a route log's records live: the active file and its rotated, dated siblings.

`routes.jsonl` rotates to `routes.2025-01-31.jsonl` (then `routes.2025-01-31.1.jsonl`, … when
one day rotates more than once), named by the day of the records it holds.
"""

from __future__ import annotations

import re
from pathlib import Path


def _pattern(active: Path) -> re.Pattern[str]:
    return re.compile(
        rf"^{re.escape(active.stem)}\.(\d{{4}}-\d{{2}}-\d{{2}})(?:\.(\d+))?{re.escape(active.suffix)}$"
    )


def rotated_files(active: str | Path) -> list[Path]:
    """The rotated files of the log whose active file is `active`, oldest first."""
    active = Path(active)
    if not active.parent.is_dir():
        return []
    pattern = _pattern(active)
    found = []
    for path in active.parent.iterdir():
        match = pattern.match(path.name)
        if match is not None:
            found.append((match.group(1), int(match.group(2) or 0), path))
    return [path for _, _, path in sorted(found)]


def log_files(active: str | Path) -> list[Path]:
    """Every file of the log, oldest records first: the rotated ones, then the active one."""
    active = Path(active)
    return [*rotated_files(active), *([active] if active.is_file() else [])]


def rotated_name(active: Path, day: str) -> Path:
    """The first free name for `active`'s records of `day` (YYYY-MM-DD)."""
    candidate = active.with_name(f"{active.stem}.{day}{active.suffix}")
    number = 0
    while candidate.exists():
        number += 1
        candidate = active.with_name(f"{active.stem}.{day}.{number}{active.suffix}")
    return candidate


__all__ = ["log_files", "rotated_files", "rotated_name"]
