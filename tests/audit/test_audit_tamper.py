"""Tamper evidence: over a thousand random tamperings of a closed log (bit flips, deleted and
swapped records, truncation, a replaced segment, a tree head re-signed with another key) are
every one detected by `verify` with the auditor's pinned public key."""

from __future__ import annotations

import base64
import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from audit import AuditLog, PublicKey, SigningKey
from audit.segments import list_segments
from audit.tree_head import SignedTreeHead
from audit.verify import verify_log

Files = dict[str, bytes]
TAMPERINGS = 1200


def write_log(directory: Path, key: SigningKey, rotate_to: SigningKey) -> None:
    log = AuditLog.open(
        directory, key, tree_head_every=6, tree_head_ms=60_000, segment_max_bytes=2500
    )
    for i in range(40):
        outcome = "deny" if i % 7 == 0 else "allow"
        log.append({"type": "decision", "stream": "norway-traffic", "outcome": outcome, "i": i})
        if i == 20:
            log.rotate_key(rotate_to)
    log.close()


def snapshot(directory: Path) -> Files:
    return {path.name: path.read_bytes() for _, path in list_segments(directory)}


def lines_of(files: Files) -> list[tuple[str, int, bytes]]:
    """(segment, line index, line) for every entry."""
    return [
        (name, index, line)
        for name in sorted(files)
        for index, line in enumerate(files[name].splitlines())
    ]


def is_tree_head(line: bytes) -> bool:
    return orjson.loads(line)["type"] == "tree_head"


def set_line(files: Files, name: str, index: int, new: bytes | None) -> None:
    lines = files[name].splitlines(keepends=True)
    if new is None:
        del lines[index]
    else:
        lines[index] = new + b"\n"
    files[name] = b"".join(lines)


def bit_flip(files: Files, rng: random.Random, _: Files) -> None:
    name = rng.choice(sorted(files))
    data = bytearray(files[name])
    position = rng.randrange(len(data))
    data[position] ^= 1 << rng.randrange(8)
    files[name] = bytes(data)


def record_deleted(files: Files, rng: random.Random, _: Files) -> None:
    name, index, _line = rng.choice([e for e in lines_of(files) if not is_tree_head(e[2])])
    set_line(files, name, index, None)


def records_swapped(files: Files, rng: random.Random, _: Files) -> None:
    records = [e for e in lines_of(files) if not is_tree_head(e[2])]
    (name_a, index_a, line_a), (name_b, index_b, line_b) = rng.sample(records, 2)
    set_line(files, name_a, index_a, line_b)
    set_line(files, name_b, index_b, line_a)


def truncation_in_the_middle(files: Files, rng: random.Random, _: Files) -> None:
    names = sorted(files)
    name = rng.choice(names)
    data = files[name]
    cut = rng.randrange(1, len(data))
    if name == names[-1] and data[cut - 1 : cut] == b"\n":
        cut -= 1  # in the last segment, a cut at an entry boundary is a shorter log, not a tear
    files[name] = data[:cut]


def segment_replaced(files: Files, rng: random.Random, other: Files) -> None:
    name = rng.choice(sorted(set(files) & set(other)))
    files[name] = other[name]


def make_tree_head_resigned(attacker: SigningKey) -> Callable[[Files, random.Random, Files], None]:
    def tree_head_resigned(files: Files, rng: random.Random, _: Files) -> None:
        name, index, line = rng.choice([e for e in lines_of(files) if is_tree_head(e[2])])
        head = SignedTreeHead.from_dict(orjson.loads(line))
        fields = head.unsigned_fields()
        change = rng.choice(["nothing", "root", "size", "timestamp"])
        if change == "root":
            fields["root_hash"] = bytes(rng.randrange(256) for _ in range(32)).hex()
        elif change == "size":
            fields["tree_size"] += rng.choice([-1, 1])
        elif change == "timestamp":
            fields["timestamp"] = "2020-01-01T00:00:00.000000Z"
        if rng.random() < 0.5:  # claim to be the attacker's key, or keep the legitimate key id
            fields["key_id"] = attacker.key_id
        unsigned = SignedTreeHead.from_dict({**fields, "signature": ""})
        signature = base64.b64encode(attacker.sign(unsigned.signing_input())).decode()
        set_line(
            files,
            name,
            index,
            SignedTreeHead.from_dict({**fields, "signature": signature}).to_line(),
        )

    return tree_head_resigned


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey, SigningKey]:
    return SigningKey.generate(), SigningKey.generate(), SigningKey.generate()


def test_every_random_tampering_is_detected(
    tmp_path: Path,
    keys: tuple[SigningKey, SigningKey, SigningKey],
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, rotated, attacker = keys
    write_log(tmp_path / "original", key, rotated)
    write_log(tmp_path / "other", key, rotated)  # same key, same records: another log
    original, other = snapshot(tmp_path / "original"), snapshot(tmp_path / "other")
    pinned: list[PublicKey] = [key.public_key]
    assert verify_log(tmp_path / "original", pinned).ok
    assert len(original) >= 4

    kinds: list[Callable[[Files, random.Random, Files], None]] = [
        bit_flip,
        record_deleted,
        records_swapped,
        truncation_in_the_middle,
        segment_replaced,
        make_tree_head_resigned(attacker),
    ]
    rng = random.Random(20201607)
    tried: Counter[str] = Counter()
    detected: Counter[str] = Counter()
    undetected: list[str] = []
    target = tmp_path / "tampered"
    for trial in range(TAMPERINGS):
        tamper = kinds[trial % len(kinds)]
        files = dict(original)
        tamper(files, rng, other)
        if files == original:
            continue  # a swap or re-sign that happened to change nothing is no tampering
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for name, data in files.items():
            (target / name).write_bytes(data)
        report = verify_log(target, pinned)
        tried[tamper.__name__] += 1
        if report.ok:
            undetected.append(f"trial {trial}: {tamper.__name__}")
        else:
            detected[tamper.__name__] += 1
    total, caught = sum(tried.values()), sum(detected.values())
    with capsys.disabled():
        print(
            f"\ntamper test: {caught}/{total} tamperings detected ({100.0 * caught / total:.1f}%)"
        )
        for name in sorted(tried):
            print(f"  {name:26s} {detected[name]:5d}/{tried[name]}")
    assert not undetected, undetected[:10]
    assert total >= 1000
    assert set(tried) == {k.__name__ for k in kinds}


def test_a_log_rewritten_with_another_key_fails_against_the_pinned_key(
    tmp_path: Path, keys: tuple[SigningKey, SigningKey, SigningKey]
) -> None:
    key, _rotated, attacker = keys
    write_log(tmp_path / "forged", attacker, SigningKey.generate())
    assert verify_log(tmp_path / "forged").ok  # self-consistent...
    report = verify_log(tmp_path / "forged", [key.public_key])
    assert not report.ok and report.problem is not None  # ...but not by the pinned key
    assert "pinned" in report.problem.message


def test_cut_off_tail_is_detected_against_a_held_tree_head(
    tmp_path: Path, keys: tuple[SigningKey, SigningKey, SigningKey]
) -> None:
    key, rotated, _ = keys
    directory = tmp_path / "log"
    write_log(directory, key, rotated)
    held = verify_log(directory).latest_tree_head
    assert held is not None
    last = list_segments(directory)[-1][1]
    lines = last.read_bytes().splitlines(keepends=True)
    last.write_bytes(b"".join(lines[:-3]))  # a clean cut at an entry boundary
    assert verify_log(directory, [key.public_key]).ok  # a prefix is self-consistent...
    report = verify_log(directory, [key.public_key], witness=held)
    assert not report.ok and report.problem is not None  # ...but not with the held tree head
    assert "removed from the end" in report.problem.message
