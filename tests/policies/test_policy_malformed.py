"""Malformed policies: each gives a clear FILE:LINE:COL error, all at once, never a traceback.

Each case is the small valid policy of conftest.py with one change; `@@` in the
changed text marks where the error must point (line and column).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from policies import PolicyLoadError, load_policy
from policies.cli import policy_app
from policies.loader import MAX_EXPANDED_NODES
from tests.policies.conftest import BASE_POLICY


def variant(old: str, new: str) -> str:
    assert old in BASE_POLICY, old
    return BASE_POLICY.replace(old, new, 1)


# (case id, policy text with @@ at the expected position, text the message must contain)
MALFORMED: list[tuple[str, str, str]] = [
    ("unknown-top-level-key", variant("streams:\n", "@@stream:\n"), "did you mean 'streams'"),
    (
        "unknown-field-key",
        variant("{action: allow, type: number}", "{@@acton: allow, type: number}"),
        "did you mean 'action'",
    ),
    (
        "unknown-pii-class",
        variant("{pii: vehicle_plate,", "{pii: @@vehicle_plat,"),
        "did you mean 'vehicle_plate'",
    ),
    (
        "unknown-action",
        variant(
            "{pii: vehicle_plate, action: pseudonymise}",
            "{pii: vehicle_plate, action: @@pseudonymize}",
        ),
        "did you mean 'pseudonymise'",
    ),
    (
        "unknown-country",
        variant("adequate_destinations: [SE]", "adequate_destinations: [@@XZ]"),
        "unknown country code 'XZ'",
    ),
    (
        "lower-case-country",
        variant("adequate_destinations: [SE]", "adequate_destinations: [@@se]"),
        "write 'SE'",
    ),
    ("three-letter-country", variant('home: "NO"', "home: @@NOR"), "ISO 3166-1 alpha-2"),
    ("version-as-number", variant('version: "1"', "version: @@1.0"), "quote it"),
    (
        "wrong-type-boolean",
        variant("type: string, required: true}", "type: string, required: @@maybe}"),
        "expected true or false",
    ),
    (
        "wrong-type-list-for-mapping",
        variant("    fields:\n      region:", "    fields: @@[region]\n    x:\n      region:"),
        "expected a mapping",
    ),
    (
        "unknown-field-type",
        variant("type: number}", "type: @@float}"),
        "expected one of any, string, integer, number",
    ),
    (
        "duplicate-stream",
        variant(
            "streams:\n  traffic:\n",
            "streams:\n  traffic:\n    fields: {a: {action: drop}}\n  @@traffic:\n",
        ),
        "duplicate key 'traffic'",
    ),
    (
        "duplicate-field",
        variant(
            "      ts: {action: allow}", "      ts: {action: allow}\n      @@speed: {action: drop}"
        ),
        "duplicate key 'speed'",
    ),
    ("key-not-declared", variant("key: region", "key: @@regin"), "did you mean 'region'"),
    (
        "key-dropped",
        variant(
            "region: {action: allow, type: string, required: true}",
            "region: {action: drop, type: string, required: true}",
        ).replace("key: region", "key: @@region"),
        "which destroys the key",
    ),
    (
        "event-time-encrypted",
        variant("ts: {action: allow}", "ts: {action: encrypt}").replace(
            "event_time: {field: ts", "event_time: {field: @@ts"
        ),
        "windows need the time",
    ),
    (
        "event-time-ambiguous-epochs",
        variant("formats: [iso8601, epoch_ms]", "formats: @@[epoch_s, epoch_ms]"),
        "ambiguous",
    ),
    (
        "direct-identifier-in-clear",
        variant(
            "{pii: vehicle_plate, action: pseudonymise}", "{pii: fodselsnummer, action: @@allow}"
        ),
        "justification",
    ),
    (
        "free-text-unscanned",
        variant(
            "      note: {pii: free_text, action: allow, scan: {on_detected: redact}}",
            "      note: @@{pii: free_text, action: allow}",
        ),
        "pass unscanned",
    ),
    (
        "generalise-without-spec",
        variant(
            "speed: {action: allow, type: number}", "speed: {action: @@generalise, type: number}"
        ),
        "needs a `generalise:` block",
    ),
    (
        "generalise-two-options",
        variant(
            "speed: {action: allow, type: number}",
            "speed: {action: generalise, type: number,"
            " generalise: @@{numeric_step: 5, keep_prefix: 2}}",
        ),
        "exactly one of",
    ),
    (
        "contradicting-egress-rules",
        BASE_POLICY
        + "    - id: local-deny\n      match: {cidr: 127.0.0.0/8}\n      action: @@deny\n",
        "contradictory",
    ),
    (
        "duplicate-rule-id",
        BASE_POLICY + "    - id: @@local\n      match: {cidr: 10.0.0.0/8}\n      action: allow\n",
        "rule id 'local' is already used",
    ),
    (
        "transfer-without-legal-basis",
        BASE_POLICY + "    - id: us\n      match: {country: @@[US]}\n      action: allow\n",
        "add `legal_basis:`",
    ),
    (
        "scc-without-tia",
        BASE_POLICY + "    - id: us-scc\n      match: {country: [CA]}\n      action: allow\n"
        "      legal_basis: @@{mechanism: scc, reference: SCC 2021/914}\n",
        "transfer impact assessment",
    ),
    (
        "invalid-cidr",
        variant("match: {cidr: 127.0.0.0/8}", "match: {cidr: @@127.0.0.300/8}"),
        "not an IP network",
    ),
    ("empty-match", variant("match: {cidr: 127.0.0.0/8}", "match: @@{}"), "needs at least one of"),
    (
        "allow-forbidden-jurisdiction",
        BASE_POLICY
        + "    - id: us-cloud\n      match: {provider_jurisdiction: @@[US]}\n      action: allow\n",
        "which the jurisdiction forbids",
    ),
    (
        "placement-outside-jurisdiction",
        BASE_POLICY + "placement:\n  brokers: {countries: [@@SE]}\n",
        "not among the jurisdiction's placement countries",
    ),
    (
        "home-forbidden",
        variant(
            "forbidden_provider_jurisdictions: [US]",
            'forbidden_provider_jurisdictions: @@[US, "NO"]',
        ),
        "home country NO is also a forbidden",
    ),
    (
        "swappiness-out-of-range",
        BASE_POLICY + "placement:\n  max_swappiness: @@300\n",
        "less than or equal to 200",
    ),
    ("invalid-stream-name", variant("  traffic:\n", "  @@traffic jam:\n"), "stream name"),
    (
        "invalid-field-path",
        variant(
            "      ts: {action: allow}",
            "      ts: {action: allow}\n      @@bad path!: {action: drop}",
        ),
        "field path",
    ),
    (
        "missing-jurisdiction",
        "@@"
        + BASE_POLICY[: BASE_POLICY.index("jurisdiction:")]
        + BASE_POLICY[BASE_POLICY.index("streams:") :],
        "missing required key 'jurisdiction'",
    ),
    (
        "misspelt-key-not-also-missing",
        variant("jurisdiction:\n", "@@jurisdictio:\n"),
        "did you mean 'jurisdiction'",
    ),
    ("empty-streams", BASE_POLICY.split("streams:")[0] + "streams: @@{}\n", "must not be empty"),
    (
        "nested-path-conflict",
        variant(
            "      ts: {action: allow}",
            "      ts: {action: allow}\n      region.x: @@{action: drop}",
        ),
        "inside field 'region'",
    ),
    (
        "scan-on-number",
        variant(
            "speed: {action: allow, type: number}",
            "speed: {action: allow, type: number, scan: @@{}}",
        ),
        "only text can be scanned",
    ),
    (
        "key-id-on-allow",
        variant(
            "speed: {action: allow, type: number}",
            "speed: {action: allow, type: number, key_id: @@k1}",
        ),
        "key_id only applies",
    ),
    (
        "legal-basis-on-deny",
        BASE_POLICY + "    - id: nope\n      match: {host: x.example}\n      action: deny\n"
        "      legal_basis: @@{mechanism: dpf, reference: DPF list}\n",
        "only belongs on an allow rule",
    ),
    (
        "python-tag",
        variant("mode: enforce", "mode: @@!!python/object/apply:os.system [echo]"),
        "unsupported YAML tag",
    ),
    (
        "yaml-syntax-unclosed-bracket",
        variant("adequate_destinations: [SE]", "adequate_destinations: [SE\n  forbidden@@: 1"),
        "YAML syntax",
    ),
    ("yaml-tab-indent", variant("  name: test-policy", "@@\tname: test-policy"), "YAML syntax"),
    ("two-documents", BASE_POLICY + "@@---\nmetadata: {}\n", "YAML syntax"),
    (
        "control-character",
        variant("name: test-policy", "name: test@@\x00policy"),
        "not allowed in YAML",
    ),
    (
        "tag-on-a-key",
        variant("speed: {action: allow", "speed: {@@!!weird action: allow"),
        "unsupported YAML tag",
    ),
    ("top-level-list", "@@- metadata: {}\n", "a policy is a mapping"),
    ("recursive-alias", variant("mode: enforce", "mode: enforce\nx: @@&a [*a]"), "recursive alias"),
]


def _marked(text: str) -> tuple[str, int, int]:
    index = text.index("@@")
    before = text[:index]
    line = before.count("\n") + 1
    col = index - (before.rfind("\n") + 1) + 1
    return text.replace("@@", "", 1), line, col


@pytest.mark.parametrize(
    ("text", "expected"),
    [(t, e) for _, t, e in MALFORMED],
    ids=[case_id for case_id, _, _ in MALFORMED],
)
def test_malformed_policy_names_file_line_and_column(
    tmp_path: Path, text: str, expected: str
) -> None:
    source, line, col = _marked(text)
    path = tmp_path / "policy.yaml"
    path.write_text(source, encoding="utf-8")
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(path)
    issues = caught.value.issues
    matching = [i for i in issues if expected in i.message]
    assert matching, f"no issue mentions {expected!r}: {[str(i) for i in issues]}"
    assert (matching[0].line, matching[0].col) == (line, col), [str(i) for i in issues]
    assert matching[0].file == str(path)


def test_there_are_at_least_thirty_malformed_cases() -> None:
    assert len(MALFORMED) >= 30


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        variant("streams:\n", "strams:\n")
        .replace("action: pseudonymise", "action: pseudonymize")
        .replace("adequate_destinations: [SE]", "adequate_destinations: [SX1]")
        .replace("mode: enforce", "mode: enforced")
    )
    path = tmp_path / "many.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(path)
    messages = " | ".join(i.message for i in caught.value.issues)
    assert "did you mean 'streams'" in messages
    assert "did you mean 'enforce'" in messages
    assert "SX1" in messages
    lines = [i.line for i in caught.value.issues]
    assert lines == sorted(lines)


def test_alias_bomb_is_rejected_where_it_starts(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        refs = ", ".join([f"*a{n - 1}"] * 10)
        levels.append(f"a{n}: &a{n} [{refs}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\n" + BASE_POLICY, encoding="utf-8")
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(path)
    (issue,) = caught.value.issues
    assert f"more than {MAX_EXPANDED_NODES}" in issue.message
    assert issue.line <= len(levels)


def test_oversized_file_is_rejected_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(BASE_POLICY + "# " + "x" * 2_000_000 + "\n", encoding="utf-8")
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.col) == (1, 1)
    assert "limit" in issue.message


def test_non_utf8_byte_is_located(tmp_path: Path) -> None:
    raw = BASE_POLICY.replace("owner: dpo@example.no", "owner: dpo@\xf8.no").encode("latin-1")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(raw)
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.col) == (4, 14)
    assert "not UTF-8" in issue.message and "0xf8" in issue.message


def test_empty_file_says_what_a_policy_needs(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(path)
    assert "empty" in caught.value.issues[0].message


def test_missing_file_is_an_issue_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(tmp_path / "nope.yaml")
    assert "cannot read" in caught.value.issues[0].message


def test_check_prints_file_line_col_lines_and_exits_1_for_every_malformed_case(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    paths = []
    for n, (case_id, text, _) in enumerate(MALFORMED):
        path = tmp_path / f"{n:02d}-{case_id}.yaml"
        path.write_text(_marked(text)[0], encoding="utf-8")
        paths.append(path)
    for path in paths:
        result = runner.invoke(policy_app, ["check", str(path)])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        lines = [line for line in result.output.splitlines() if line]
        assert lines and all(line.startswith(f"{path}:") for line in lines), result.output
        for line in lines:
            _, line_no, col, message = line.split(":", 3)
            assert line_no.isdigit() and col.isdigit() and message.strip()
