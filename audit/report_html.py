"""The audit report as one self-contained HTML file: inline CSS and SVG charts, no external
assets, verification status first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from importlib.resources import files
from typing import Any

from audit.report import AuditReport, EventList

OUTCOME_COLOURS = {
    "allow": "#2e7d5b",
    "deny": "#c0392b",
    "rejected": "#d68910",
    "unknown": "#7f8c8d",
}
OTHER_COLOUR = "#5d6d7e"
_INTACT = "<span class='ok'>intact</span>"
_FAILED = "<span class='bad'>FAILED</span>"


def _colour(outcome: str) -> str:
    return OUTCOME_COLOURS.get(outcome, OTHER_COLOUR)


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _outcomes(report: AuditReport) -> list[str]:
    seen: Counter[str] = Counter(report.decisions)
    for counts in list(report.by_destination.values()) + list(report.by_rule.values()):
        seen.update(counts)
    order = [o for o in ("allow", "deny", "rejected") if o in seen]
    return order + sorted(o for o in seen if o not in order)


def timeline_svg(report: AuditReport, width: int = 960, height: int = 260) -> str:
    """Stacked bars of decisions per time bucket, by outcome."""
    step, rows = report.timeline()
    if not rows:
        return '<p class="muted">No decisions in this period.</p>'
    outcomes = [o for o in _outcomes(report) if any(c[o] for _, c in rows)]
    left, right, top, bottom = 56, 12, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(sum(c.values()) for _, c in rows) or 1
    scale = _nice_ceiling(peak)
    bar_gap = 2 if len(rows) < 60 else 1
    bar_w = max(plot_w / len(rows) - bar_gap, 1.0)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="Decisions over time, {step // 60}-minute buckets" class="chart">'
    ]
    for i in range(5):
        value = scale * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
            f"{_short(value)}</text>"
        )
    label_every = max(1, len(rows) // 8)
    for index, (label, counts) in enumerate(rows):
        x = left + index * (bar_w + bar_gap)
        y = top + plot_h
        tooltip = f"{label}: " + ", ".join(f"{o} {counts[o]:,}" for o in outcomes)
        parts.append(f"<g><title>{_e(tooltip)}</title>")
        for outcome in outcomes:
            value = counts[outcome]
            if not value:
                continue
            h = plot_h * value / scale
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{_colour(outcome)}"/>'
            )
        parts.append("</g>")
        if index % label_every == 0:
            text = label[5:16].replace("T", " ") if step < 86400 else label[:10]
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" '
                f'class="axis" text-anchor="middle">{_e(text)}</text>'
            )
    legend_x = left
    for outcome in outcomes:
        parts.append(
            f'<rect x="{legend_x}" y="{height - 14}" width="10" height="10" '
            f'fill="{_colour(outcome)}"/>'
        )
        parts.append(
            f'<text x="{legend_x + 14}" y="{height - 5}" class="axis">{_e(outcome)}</text>'
        )
        legend_x += 24 + 8 * len(outcome)
    parts.append("</svg>")
    return "".join(parts)


def outcome_donut_svg(counts: Counter[str], size: int = 150) -> str:
    """A ring of the outcome shares, the total in the middle."""
    total = sum(counts.values())
    r, stroke = 54, 20
    circumference = 2 * 3.141592653589793 * r
    parts = [
        f'<svg viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img" '
        'aria-label="Decisions by outcome" class="donut">'
    ]
    parts.append(
        f'<circle cx="{size / 2}" cy="{size / 2}" r="{r}" fill="none" stroke="#e5e8eb" '
        f'stroke-width="{stroke}"/>'
    )
    offset = 0.0
    for outcome, value in sorted(counts.items(), key=lambda kv: -kv[1]):
        if not total or not value:
            continue
        length = circumference * value / total
        parts.append(
            f'<circle cx="{size / 2}" cy="{size / 2}" r="{r}" fill="none" '
            f'stroke="{_colour(outcome)}" stroke-width="{stroke}" '
            f'stroke-dasharray="{length:.2f} {circumference - length:.2f}" '
            f'stroke-dashoffset="{-offset:.2f}" transform="rotate(-90 {size / 2} {size / 2})">'
            f"<title>{_e(outcome)}: {value:,}</title></circle>"
        )
        offset += length
    parts.append(
        f'<text x="{size / 2}" y="{size / 2 + 2}" text-anchor="middle" class="donut-n">'
        f"{_short(total)}</text>"
    )
    parts.append(
        f'<text x="{size / 2}" y="{size / 2 + 20}" text-anchor="middle" class="axis">'
        "decisions</text></svg>"
    )
    return "".join(parts)


def _nice_ceiling(value: float) -> float:
    magnitude = float(10 ** (len(str(int(value))) - 1))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:.0f}"


def _breakdown_table(
    title: str,
    key_name: str,
    data: dict[str, Counter[str]],
    outcomes: Sequence[str],
    limit: int = 25,
) -> str:
    if not data:
        return f"<h3>{_e(title)}</h3><p class='muted'>None in this period.</p>"
    rows = sorted(data.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    peak = max(sum(c.values()) for _, c in rows) or 1
    head = "".join(f"<th class='num'>{_e(o)}</th>" for o in outcomes)
    body = []
    for key, counts in rows[:limit]:
        total = sum(counts.values())
        bar = "".join(
            f'<span style="width:{100 * counts[o] / peak:.2f}%;background:{_colour(o)}" '
            f'title="{_e(o)} {counts[o]:,}"></span>'
            for o in outcomes
            if counts[o]
        )
        cells = "".join(f"<td class='num'>{counts[o]:,}</td>" for o in outcomes)
        body.append(
            f"<tr><td class='key'>{_e(key) or '<em>none</em>'}</td>{cells}"
            f"<td class='num'><b>{total:,}</b></td><td class='barcell'>"
            f"<div class='bar'>{bar}</div></td></tr>"
        )
    more = (
        f"<p class='muted'>{len(rows) - limit} more not shown (see the JSON or CSV export).</p>"
        if len(rows) > limit
        else ""
    )
    return (
        f"<h3>{_e(title)}</h3><table><thead><tr><th>{_e(key_name)}</th>{head}"
        f"<th class='num'>total</th><th></th></tr></thead><tbody>{''.join(body)}</tbody>"
        f"</table>{more}"
    )


def _event_table(
    title: str, events: EventList, columns: Iterable[tuple[str, str]], empty: str, limit: int = 200
) -> str:
    cols = list(columns)
    if not events.total:
        return f"<h3>{_e(title)}</h3><p class='muted'>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(label)}</th>" for _, label in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(key, row.get(key))}</td>" for key, _ in cols) + "</tr>"
        for row in events.rows[:limit]
    )
    shown = min(limit, len(events.rows))
    more = (
        f"<p class='muted'>Showing {shown:,} of {events.total:,}.</p>"
        if events.total > shown
        else ""
    )
    return (
        f"<h3>{_e(title)} <span class='count'>{events.total:,}</span></h3>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"
    )


def _archived_note(count: int) -> str:
    return f"<br><span class='muted'>{count:,} archived</span>" if count else ""


def _cell(key: str, value: Any) -> str:
    if key in ("policy_hash", "kept_policy_hash") and value:
        text = str(value)
        return f"<code title='{_e(text)}'>{_e(text[:19])}…</code>"
    if key == "ts" and value:
        return f"<span class='ts'>{_e(str(value)[:19].replace('T', ' '))}</span>"
    if key == "outcome":
        return f"<span class='pill' style='background:{_colour(str(value))}'>{_e(value)}</span>"
    return _e(value)


def render_html(report: AuditReport, title: str = "fjordgate audit report") -> str:
    """The whole report page."""
    css = files("audit").joinpath("templates/report.css").read_text(encoding="utf-8")
    outcomes = _outcomes(report)
    total_decisions = sum(report.decisions.values())
    n_instances = len(report.instances)
    if report.intact:
        anchor = (
            "signatures checked against the pinned public key"
            if report.pinned
            else "signatures checked against the key recorded in the log: pin the operator's "
            "public key with --public-key for an independent check"
        )
        banner = (
            f"<div class='status ok'><div class='big'>✓ Verified intact</div><div>"
            f"{sum(i.records for i in report.instances):,} records in {n_instances} instance "
            f"log{'s' if n_instances != 1 else ''}, "
            f"{sum(i.tree_heads for i in report.instances):,} signed tree heads; every hash, "
            f"the chain, every Merkle root and every signature recomputed; {_e(anchor)}.</div>"
            "</div>"
        )
    else:
        failures = "".join(
            f"<li><b>{_e(i.name)}</b>: {_e(i.problem)}</li>"
            for i in report.instances
            if not i.intact
        )
        banner = (
            "<div class='status bad'><div class='big'>✗ Verification FAILED</div>"
            "<div>The log has been altered or damaged; the totals below cover only the records "
            f"read before the first fault and must not be relied on.</div><ul>{failures}</ul>"
            "</div>"
        )
    warnings = "".join(
        f"<li>{_e(i.name)}: {_e(w)}</li>" for i in report.instances for w in i.warnings
    )
    if warnings:
        banner += f"<div class='status warn'><ul>{warnings}</ul></div>"

    denied_egress = report.egress.get("deny", 0)
    placement_failed = sum(1 for r in report.placements.rows if r["outcome"] not in ("pass",))
    cards = [
        ("decisions", f"{total_decisions:,}", ""),
        ("allowed", f"{report.decisions.get('allow', 0):,}", "allow"),
        ("denied", f"{report.decisions.get('deny', 0):,}", "deny"),
        ("rejected", f"{report.decisions.get('rejected', 0):,}", "rejected"),
        ("repeated (retries)", f"{report.repeated_decisions:,}", ""),
        ("denied egress", f"{denied_egress:,}", "deny" if denied_egress else ""),
        ("placement checks", f"{report.placements.total:,}", "deny" if placement_failed else ""),
        ("policy changes", f"{report.policies.total:,}", ""),
        ("key rotations", f"{report.key_rotations.total:,}", ""),
    ]
    card_html = "".join(
        f"<div class='card {cls}'><div class='n'>{value}</div><div class='l'>{_e(label)}</div>"
        "</div>"
        for label, value, cls in cards
    )
    period = (
        f"{_e((report.period_from or report.first_ts or '-')[:19].replace('T', ' '))} — "
        f"{_e((report.period_to or report.last_ts or '-')[:19].replace('T', ' '))} UTC"
    )
    step, _rows = report.timeline()
    bucket = (
        f"{step // 60}-minute"
        if step < 3600
        else f"{step // 3600}-hour"
        if step < 86400
        else f"{step // 86400}-day"
    )
    instances_rows = "".join(
        f"<tr><td>{_e(i.name)}</td><td><code>{_e(i.log_id)}</code></td>"
        f"<td class='num'>{i.records:,}"
        f"{_archived_note(i.archived_records)}"
        f"</td><td class='num'>{i.tree_heads:,}</td>"
        f"<td class='num'>{i.segments}</td><td><code title='{_e(i.latest_root)}'>"
        f"{_e((i.latest_root or '-')[:16])}…</code></td><td>{_cell('ts', i.latest_tree_head_time)}"
        f"</td><td>{_INTACT if i.intact else _FAILED}"
        f"{' · pinned key' if i.pinned else ''}</td></tr>"
        for i in report.instances
    )
    types = ", ".join(f"{_e(k)} {v:,}" for k, v in report.by_type.most_common())
    sections = [
        f"<section class='overview'><div class='donut-wrap'>{outcome_donut_svg(report.decisions)}"
        f"</div><div class='cards'>{card_html}</div></section>",
        f"<section><h2>Decisions over time</h2><p class='muted'>{bucket} buckets, stacked by "
        f"outcome.</p>{timeline_svg(report)}</section>",
        "<section><h2>Totals</h2>"
        + _breakdown_table("By stream", "stream", report.by_stream, outcomes)
        + _breakdown_table("By destination", "destination", report.by_destination, outcomes)
        + _breakdown_table("By rule", "rule", report.by_rule, outcomes)
        + "</section>",
        "<section><h2>Egress</h2>"
        + _event_table(
            "Denied egress attempts",
            report.denied_egress,
            [
                ("ts", "time"),
                ("instance", "instance"),
                ("component", "component"),
                ("destination", "destination"),
                ("rule_id", "rule"),
                ("reasons", "why"),
            ],
            "No egress attempt was denied in this period.",
        )
        + "</section>",
        "<section><h2>Placement attestations</h2>"
        + _event_table(
            "Placement checks",
            report.placements,
            [
                ("ts", "time"),
                ("instance", "instance"),
                ("component", "component"),
                ("outcome", "outcome"),
                ("mode", "mode"),
                ("checks", "checks"),
                ("not_passed", "not passed"),
                ("policy_hash", "policy"),
            ],
            "No placement attestation in this period.",
        )
        + "</section>",
        "<section><h2>Policies in force</h2>"
        + _event_table(
            "Policies loaded",
            report.policies,
            [
                ("ts", "in force from"),
                ("instance", "instance"),
                ("name", "name"),
                ("version", "version"),
                ("mode", "mode"),
                ("policy_hash", "hash"),
            ],
            "No policy was loaded in this period.",
        )
        + _event_table(
            "Policies rejected",
            report.policy_rejections,
            [
                ("ts", "time"),
                ("instance", "instance"),
                ("path", "file"),
                ("issues", "issues"),
                ("kept_policy_hash", "kept in force"),
            ],
            "No policy file was rejected.",
        )
        + "</section>",
        "<section><h2>Keys and recoveries</h2>"
        + _event_table(
            "Key rotations",
            report.key_rotations,
            [
                ("ts", "time"),
                ("instance", "instance"),
                ("key", "key"),
                ("action", "action"),
                ("key_id", "key id"),
                ("old_key_id", "old key"),
                ("new_key_id", "new key"),
            ],
            "No key was created, rotated or shredded in this period.",
        )
        + _event_table(
            "Crash recoveries",
            report.recoveries,
            [
                ("ts", "time"),
                ("instance", "instance"),
                ("reason", "reason"),
                ("segment", "segment"),
                ("offset", "byte offset"),
                ("bytes_discarded", "bytes cut"),
            ],
            "No recovery: every writer closed cleanly.",
        )
        + "</section>",
        "<section><h2>Instance logs</h2><table><thead><tr><th>instance</th><th>log id</th>"
        "<th class='num'>records</th><th class='num'>tree heads</th><th class='num'>segments"
        "</th><th>latest root</th><th>signed at</th><th>status</th></tr></thead><tbody>"
        f"{instances_rows}</tbody></table><p class='muted'>Records in the period by type: "
        f"{types or 'none'}.</p></section>",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{css}</style></head><body><main>"
        f"<header><div><h1>{_e(title)}</h1><div class='muted'>Period: {period} · generated "
        f"{_e(report.generated[:19].replace('T', ' '))} UTC · {n_instances} instance "
        f"log{'s' if n_instances != 1 else ''}</div></div></header>"
        f"{banner}{''.join(sections)}"
        "<footer>Independent check: <code>fjordgate audit verify DIR --public-key KEY.pem</code>, "
        "or any verifier written from <i>docs/audit-format.md</i> (RFC 6962 hashing, Ed25519 "
        "tree heads). The records hold field names, actions, rule ids and pseudonyms, never "
        "personal values.</footer></main></body></html>"
    )
