"""`fjordgate audit verify | prove | prove-consistency | check-proof | key`: exit codes, the
first bad record with segment and byte offset, proofs that check without the log."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from audit import AuditLog, SigningKey
from audit.segments import list_segments
from gateway.cli import app

runner = CliRunner()


@pytest.fixture
def closed_log(tmp_path: Path) -> tuple[Path, Path]:
    key_file, public = tmp_path / "signing.pem", tmp_path / "public.pem"
    result = runner.invoke(
        app, ["audit", "key", "generate", str(key_file), "--public-out", str(public)]
    )
    assert result.exit_code == 0, result.output
    key = SigningKey.load(key_file)
    with AuditLog.open(tmp_path / "log", key, tree_head_every=5, segment_max_bytes=1500) as log:
        for i in range(30):
            log.append({"type": "decision", "outcome": "allow", "i": i})
    return tmp_path / "log", public


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", *args])
    return result.exit_code, result.output


def test_verify_intact_log_exits_0_with_pinned_key(closed_log: tuple[Path, Path]) -> None:
    log, public = closed_log
    code, out = invoke("verify", str(log), "--public-key", str(public))
    assert code == 0, out
    assert "intact: 31 records" in out and "pinned public key" in out


def test_verify_names_first_bad_record_segment_and_offset(closed_log: tuple[Path, Path]) -> None:
    log, public = closed_log
    _, segment = list_segments(log)[1]
    data = segment.read_bytes()
    lines = data.splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if b'"type":"decision"' in line)
    offset = sum(len(line) for line in lines[:target])
    seq = orjson.loads(lines[target])["seq"]
    lines[target] = lines[target].replace(b'"allow"', b'"deny!"')
    segment.write_bytes(b"".join(lines))
    code, out = invoke("verify", str(log), "--public-key", str(public), "--json")
    assert code == 1
    problem = orjson.loads(out)[0]["problem"]
    assert problem["segment"] == segment.name
    assert problem["offset"] == offset and problem["seq"] == seq


def test_verify_with_another_pinned_key_fails(
    closed_log: tuple[Path, Path], tmp_path: Path
) -> None:
    log, _ = closed_log
    SigningKey.generate().public_key.export(tmp_path / "other.pem")
    code, out = invoke("verify", str(log), "--public-key", str(tmp_path / "other.pem"))
    assert code == 1 and "pinned" in out


def test_prove_and_check_inclusion(closed_log: tuple[Path, Path], tmp_path: Path) -> None:
    log, public = closed_log
    code, out = invoke("prove", str(log), "--seq", "17", "-o", str(tmp_path / "p.json"))
    assert code == 0, out
    code, out = invoke("check-proof", str(tmp_path / "p.json"), "--public-key", str(public))
    assert code == 0 and "seq 17 is included" in out
    proof = orjson.loads((tmp_path / "p.json").read_bytes())
    proof["record"]["outcome"] = "deny"
    (tmp_path / "forged.json").write_bytes(orjson.dumps(proof))
    code, out = invoke("check-proof", str(tmp_path / "forged.json"), "--public-key", str(public))
    assert code == 1 and "INVALID" in out


def test_prove_unknown_seq_is_an_error(closed_log: tuple[Path, Path]) -> None:
    log, _ = closed_log
    code, out = invoke("prove", str(log), "--seq", "999")
    assert code == 1 and "sequence numbers run from 0 to 30" in out


def test_consistency_proof_between_two_tree_heads(
    closed_log: tuple[Path, Path], tmp_path: Path
) -> None:
    log, public = closed_log
    code, out = invoke(
        "prove-consistency", str(log), "--old-size", "6", "-o", str(tmp_path / "c.json")
    )
    assert code == 0, out
    code, out = invoke("check-proof", str(tmp_path / "c.json"), "--public-key", str(public))
    assert code == 0 and "is a prefix of the tree of 31 records" in out
    # A tree head held by the auditor is accepted as the old end of the proof.
    document = orjson.loads((tmp_path / "c.json").read_bytes())
    (tmp_path / "held.json").write_bytes(orjson.dumps(document["old_tree_head"]))
    code, out = invoke(
        "prove-consistency", str(log), "--old-tree-head", str(tmp_path / "held.json")
    )
    assert code == 0, out
    code, out = invoke("verify", str(log), "--tree-head", str(tmp_path / "held.json"))
    assert code == 0, out


def test_key_export_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    key_file = tmp_path / "signing.pem"
    SigningKey.create(key_file)
    key_file.chmod(0o644)
    code, out = invoke("key", "export", str(key_file), "-o", str(tmp_path / "pub.pem"))
    assert code == 2 and "chmod 600" in out
