"""Segment files: naming, listing, and splitting a segment into its newline-terminated entries
with their byte offsets."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SEGMENT_PATTERN = re.compile(r"^segment-(\d{8})\.jsonl$")
LOCK_FILE = ".lock"


def segment_name(index: int) -> str:
    """File name of segment `index` (1-based): segment-00000001.jsonl."""
    return f"segment-{index:08d}.jsonl"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segments of one log directory, in order."""
    found: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        match = SEGMENT_PATTERN.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    found.sort()
    return found


def writer_active(directory: Path) -> bool:
    """True while a process has the log open for appending (it holds the lock file)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor drops a lock taken just above
    return False


def is_log_directory(directory: Path) -> bool:
    return directory.is_dir() and bool(list_segments(directory))


def instance_logs(directory: Path) -> list[Path]:
    """The log directories under `directory`: itself when it holds segments, otherwise each
    subdirectory that does (one per process instance)."""
    if is_log_directory(directory):
        return [directory]
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if is_log_directory(p))


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One line of a segment: its bytes without the newline, where it starts, and whether the
    newline that ends every whole entry is there."""

    offset: int
    data: bytes
    complete: bool


def split_entries(data: bytes) -> Iterator[RawEntry]:
    """Split segment bytes into entries; the last one is incomplete when no newline ends it."""
    offset = 0
    size = len(data)
    while offset < size:
        end = data.find(b"\n", offset)
        if end < 0:
            yield RawEntry(offset, data[offset:], False)
            return
        yield RawEntry(offset, data[offset:end], True)
        offset = end + 1
