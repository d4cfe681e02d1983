"""Facts about this machine that placement depends on, read from /proc and /sys.

Both roots are parameters so that tests can lay out a fake /proc and /sys
(a mountinfo with NFS, a swappiness of 60) and check each rule both ways.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Mount points in mountinfo escape space, tab, newline and backslash as octal.
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "afs",
        "davfs",
        "sshfs",
        "gpfs",
        "beegfs",
        "ocfs2",
    }
)
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
OVERLAY_FILESYSTEMS = frozenset({"overlay", "overlayfs", "aufs", "unionfs"})


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    mount_point: str
    fstype: str
    source: str
    major: int
    minor: int
    options: str

    @property
    def family(self) -> str:
        """`network`, `fuse`, `overlay`, `memory` or `local` (a file system on a device)."""
        base = self.fstype.split(".", 1)[0]
        if base in ("fuse", "fuseblk") or self.fstype.startswith("fuse."):
            return "fuse"
        if base in NETWORK_FILESYSTEMS:
            return "network"
        if base in OVERLAY_FILESYSTEMS:
            return "overlay"
        if base in MEMORY_FILESYSTEMS:
            return "memory"
        return "local"


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse the text of /proc/self/mountinfo (see proc(5)); malformed lines are skipped."""
    mounts = []
    # The kernel separates lines with "\n" and fields with " " only; str.split()
    # and splitlines() would also cut at Unicode spaces inside a mount point.
    for line in text.split("\n"):
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < separator + 3:
            continue
        major, _, minor = fields[2].partition(":")
        try:
            numbers = (int(major), int(minor))
        except ValueError:
            continue
        mounts.append(
            Mount(
                mount_point=_unescape(fields[4]),
                fstype=fields[separator + 1],
                source=_unescape(fields[separator + 2]),
                major=numbers[0],
                minor=numbers[1],
                options=fields[5],
            )
        )
    return mounts


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount that holds `path`: the longest mount point that is a prefix of it.

    When a mount point appears twice (mounted over), the later line wins, as in the kernel.
    """
    target = os.path.normpath(str(path))
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point
        inside = target == point or target.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = mount
    return best


def existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing parent (state dirs are made later)."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current.resolve()


@dataclass(frozen=True)
class BlockDevice:
    """The block device under a mount, as /sys tells it."""

    name: str
    nvme: bool
    rotational: bool | None


def block_device_of(mount: Mount, sys_root: Path) -> BlockDevice | None:
    """The block device a mount lives on, or None when it has none (tmpfs, NFS, overlay)."""
    sys_path: Path | None = None
    if mount.major != 0:
        candidate = sys_root / "dev" / "block" / f"{mount.major}:{mount.minor}"
        if candidate.exists():
            sys_path = candidate.resolve()
    if sys_path is None and mount.source.startswith("/dev/"):
        # btrfs and some others report an anonymous 0:N device; fall back to the source.
        name = Path(mount.source).name
        candidate = sys_root / "class" / "block" / name
        if candidate.exists():
            sys_path = candidate.resolve()
    if sys_path is None:
        return None
    name = sys_path.name
    # A partition's queue attributes live on its parent disk.
    disk = sys_path if (sys_path / "queue").exists() else sys_path.parent
    # A device-mapper or md device (LVM, LUKS, RAID) is NVMe when what it sits on is.
    lower = [p.name for p in (disk / "slaves").iterdir()] if (disk / "slaves").is_dir() else []
    nvme = "nvme" in str(sys_path) or any(part.startswith("nvme") for part in lower)
    rotational: bool | None = None
    flag = disk / "queue" / "rotational"
    if flag.exists():
        rotational = flag.read_text().strip() == "1"
    return BlockDevice(name=name, nvme=nvme, rotational=rotational)


def read_swappiness(proc_root: Path) -> int:
    """vm.swappiness, from {proc}/sys/vm/swappiness."""
    return int((proc_root / "sys" / "vm" / "swappiness").read_text().strip())


def read_transparent_hugepages(sys_root: Path) -> str | None:
    """The selected THP mode (`always`, `madvise`, `never`), or None when the kernel has none."""
    path = sys_root / "kernel" / "mm" / "transparent_hugepage" / "enabled"
    if not path.exists():
        return None
    match = re.search(r"\[(\w+)\]", path.read_text())
    return match.group(1) if match else None


def read_memtotal_bytes(proc_root: Path) -> int | None:
    """MemTotal from {proc}/meminfo, in bytes."""
    path = proc_root / "meminfo"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) * 1024
    return None
