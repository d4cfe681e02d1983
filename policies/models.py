"""The pydantic models of the policy language: what a policy file may say, validated.

Structure is checked by the models; rules that relate several parts of a
policy (the key field must be declared, an allow rule to a non-adequate
country needs a legal basis, ...) are checked by `semantic_problems`, which
names the exact place of each problem so the loader can point at its line.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import itertools
from collections.abc import Iterator
from functools import cached_property
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from policies._countries import ISO_3166_ALPHA2

# --- vocabulary -------------------------------------------------------------

Mode = Literal["enforce", "observe"]
Action = Literal["allow", "pseudonymise", "encrypt", "redact", "generalise", "drop"]
ACTIONS: tuple[str, ...] = get_args(Action)
PiiClass = Literal[
    "none",
    "free_text",
    "fodselsnummer",
    "d_nummer",
    "h_nummer",
    "organisasjonsnummer",
    "bank_account",
    "iban",
    "payment_card",
    "email",
    "phone",
    "ip_address",
    "vehicle_plate",
    "name",
    "address",
    "location",
    "date_of_birth",
    "device_id",
    "other",
]
PII_CLASSES: tuple[str, ...] = get_args(PiiClass)
# Identifiers that single out a person on their own: allowing one in clear
# text is a decision a DPO must write down (`justification`).
DIRECT_IDENTIFIERS: frozenset[str] = frozenset(
    {"fodselsnummer", "d_nummer", "h_nummer", "payment_card", "bank_account", "iban"}
)
FieldType = Literal["any", "string", "integer", "number", "boolean", "object", "array"]
TimeFormat = Literal["iso8601", "epoch_ms", "epoch_s"]
UndeclaredFieldHandling = Literal["drop", "redact", "deny", "allow"]
OnDetected = Literal["redact", "drop", "pseudonymise", "encrypt", "deny"]
EgressAction = Literal["allow", "deny"]
LegalMechanism = Literal["adequacy", "scc", "bcr", "dpf", "derogation"]
NvmePreference = Literal["required", "preferred", "any"]
# Actions that keep a value usable as a partitioning / grouping key.
KEY_ACTIONS: frozenset[str] = frozenset({"allow", "pseudonymise", "generalise"})


def _check_country(code: str) -> str:
    if code in ISO_3166_ALPHA2:
        return code
    if code.upper() in ISO_3166_ALPHA2:
        raise ValueError(
            f"country codes are upper case: write {code.upper()!r} instead of {code!r}"
        )
    near = difflib.get_close_matches(code.upper(), sorted(ISO_3166_ALPHA2), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    raise ValueError(
        f"unknown country code {code!r}: expected an ISO 3166-1 alpha-2 code such as 'NO'{hint}"
    )


Country = Annotated[
    str,
    AfterValidator(_check_country),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(ISO_3166_ALPHA2),
            "description": "ISO 3166-1 alpha-2 country code, upper case (quote NO if your "
            "editor treats it as a boolean)",
        }
    ),
]
RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
StreamName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,248}$")]
FieldPath = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")]


def _unique(values: list[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} is listed twice")
        seen.add(value)


class PolicyModel(BaseModel):
    """Base of every policy model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- metadata ---------------------------------------------------------------


class Metadata(PolicyModel):
    """Who owns the policy and which version of it this is."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    version: Annotated[str, Field(min_length=1, max_length=64)]
    owner: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(
                f'the version must be text: quote it (version: "{value}") so YAML does '
                "not read it as a number"
            )
        return value


# --- jurisdiction -----------------------------------------------------------


class NetworkOwnerOverride(PolicyModel):
    """A network owner and its home jurisdiction, overriding the shipped owner data."""

    name: Annotated[str, Field(min_length=1)]
    jurisdiction: Country
    asns: list[Annotated[int, Field(ge=1, le=4294967295)]] = Field(
        default_factory=list, description="Autonomous system numbers this owner operates."
    )
    org_patterns: list[str] = Field(
        default_factory=list,
        description="Regular expressions matched against the AS organisation name.",
    )


class Jurisdiction(PolicyModel):
    """Home country, where data may be placed, where it may go, whose providers are out."""

    home: Country
    placement_countries: list[Country] | None = Field(
        default=None,
        description="Countries where brokers, state and sinks may run (default: [home]).",
    )
    adequate_destinations: list[Country] = Field(
        default_factory=list,
        description="Countries transfers may go to without a further legal basis; logged.",
    )
    forbidden_provider_jurisdictions: list[Country] = Field(
        default_factory=list,
        description="Jurisdictions whose providers may not receive data, wherever their "
        "servers stand (a US-owned cloud's Stockholm region is US jurisdiction).",
    )
    network_owners: list[NetworkOwnerOverride] = Field(
        default_factory=list,
        description="Owner entries that override the shipped, reviewed owner data "
        "(policies/data/network-owners.yaml); first match wins.",
    )

    @field_validator(
        "placement_countries", "adequate_destinations", "forbidden_provider_jurisdictions"
    )
    @classmethod
    def _no_repeats(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            _unique(value, "country")
        return value

    @property
    def placement(self) -> frozenset[str]:
        """Countries where components may run."""
        return frozenset(self.placement_countries or [self.home])


# --- streams ----------------------------------------------------------------


class Generalisation(PolicyModel):
    """How a `generalise` action coarsens a value; exactly one option is set."""

    numeric_step: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Round a number down to a multiple of this step."
    )
    time_unit: Literal["minute", "hour", "day", "month", "year"] | None = Field(
        default=None, description="Truncate a timestamp to this unit."
    )
    keep_prefix: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, description="Keep the first N characters (e.g. of a postcode)."
    )
    ip_prefix_length: Annotated[int, Field(ge=0, le=128)] | None = Field(
        default=None, description="Keep an IP address's network prefix of this length."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Generalisation:
        chosen = [name for name, value in self if value is not None]
        if len(chosen) != 1:
            raise ValueError(
                "generalise needs exactly one of numeric_step, time_unit, keep_prefix, "
                f"ip_prefix_length (got {', '.join(chosen) if chosen else 'none'})"
            )
        return self


class ScanRule(PolicyModel):
    """Free-text scanning: what to do when the detectors find personal data."""

    on_detected: OnDetected = Field(
        default="redact",
        description="Action when PII is detected; `deny` refuses the whole event.",
    )
    types: list[PiiClass] | None = Field(
        default=None, description="Detected PII types that count (default: all)."
    )
    scope: Literal["spans", "field"] = Field(
        default="spans",
        description="redact/pseudonymise/encrypt only the detected spans, or the whole field.",
    )


class FieldRule(PolicyModel):
    """One declared field of a stream: what it is and what happens to it."""

    id: RuleId | None = Field(default=None, description="Rule id (default: streams.S.fields.F).")
    pii: PiiClass = "none"
    action: Action
    type: FieldType = "any"
    required: bool = False
    scan: ScanRule | None = None
    generalise: Generalisation | None = None
    key_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="Keyring key id for pseudonymise / encrypt."
    )
    justification: str | None = Field(
        default=None, description="Why a direct identifier may pass in clear (action allow)."
    )
    description: str | None = None


class EventTime(PolicyModel):
    """The field that carries an event's time, and the formats it may take."""

    field: FieldPath
    formats: list[TimeFormat] = Field(default_factory=lambda: ["iso8601"], min_length=1)  # type: ignore[arg-type]
    required: bool = True

    @field_validator("formats")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        _unique(value, "format")
        return value


class Stream(PolicyModel):
    """A stream's declared schema and per-field decisions."""

    description: str | None = None
    key: FieldPath | None = Field(default=None, description="Field the stream is keyed by.")
    event_time: EventTime | None = None
    undeclared_fields: UndeclaredFieldHandling = Field(
        default="drop",
        description="What happens to a field the stream does not declare.",
    )
    fields: Annotated[dict[FieldPath, FieldRule], Field(min_length=1)]


# --- egress -----------------------------------------------------------------


class LegalBasis(PolicyModel):
    """The GDPR chapter V basis of a transfer (e.g. SCCs with a transfer impact assessment)."""

    mechanism: LegalMechanism
    reference: Annotated[str, Field(min_length=1)] = Field(
        description="E.g. 'SCC 2021/914 module 2, signed 2024-03-01'."
    )
    tia: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="Transfer impact assessment id (required for scc and bcr)."
    )

    @model_validator(mode="after")
    def _tia_for_contracts(self) -> LegalBasis:
        if self.mechanism in ("scc", "bcr") and not self.tia:
            raise ValueError(
                f"a transfer on {self.mechanism} needs a transfer impact assessment: add `tia:`"
            )
        return self


class EgressMatch(PolicyModel):
    """What a destination must be for a rule to apply; all given conditions must hold."""

    host: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="Host name, `*` globs allowed (`*.fjord.no`)."
    )
    url: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="URL prefix (`https://api.example.no/v1/`)."
    )
    cidr: str | None = Field(default=None, description="IP network (`10.0.0.0/8`).")
    country: list[Country] | None = Field(
        default=None, description="Countries of every resolved address (needs GeoIP)."
    )
    provider_jurisdiction: list[Country] | None = Field(
        default=None, description="Home jurisdiction of the network's owner (needs ASN data)."
    )

    @field_validator("host")
    @classmethod
    def _host_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and any(ch in value for ch in "/:@ "):
            raise ValueError(
                f"{value!r} is not a host name: `host` takes a name such as kafka.fjord.no "
                "or *.fjord.no; use `url` for a URL prefix and `cidr` for addresses"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(
                f"{value!r} is not a URL prefix: write it with its scheme, "
                "e.g. https://api.example.no/v1/"
            )
        return value

    @field_validator("cidr")
    @classmethod
    def _valid_network(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP network: write e.g. 10.0.0.0/8 or 2001:db8::/32"
            ) from None

    @field_validator("country", "provider_jurisdiction")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("list at least one country, or leave the key out")
            _unique(value, "country")
        return value

    @model_validator(mode="after")
    def _something(self) -> EgressMatch:
        if all(value is None for _, value in self):
            raise ValueError(
                "a match needs at least one of host, url, cidr, country, provider_jurisdiction"
            )
        return self

    @property
    def needs_location(self) -> bool:
        """True when the match depends on GeoIP / ASN facts, not only the destination text."""
        return self.country is not None or self.provider_jurisdiction is not None


class EgressRule(PolicyModel):
    """One egress rule; the first rule that matches a destination decides."""

    id: RuleId
    match: EgressMatch
    action: EgressAction
    log: bool = Field(default=False, description="Audit every transfer this rule allows.")
    legal_basis: LegalBasis | None = None
    description: str | None = None


class Egress(PolicyModel):
    """Where data may go; rules in order, then the jurisdiction, then the default."""

    default: EgressAction = "deny"
    rules: list[EgressRule] = Field(default_factory=list)


# --- placement --------------------------------------------------------------


class PlacementTarget(PolicyModel):
    """Where one kind of component may run (default: the jurisdiction's placement countries)."""

    countries: list[Country] | None = None


class StatePlacement(PlacementTarget):
    """Where keyed state lives: a local block device, NVMe preferred."""

    local_block_device: bool = True
    nvme: NvmePreference = "preferred"
    forbidden_filesystems: list[str] = Field(
        default_factory=lambda: ["nfs", "nfs4", "cifs", "smb3", "overlay", "fuse", "9p"],
        description="File system types state may not live on.",
    )


class Placement(PolicyModel):
    """Placement rules checked at start and on a schedule."""

    brokers: PlacementTarget = Field(default_factory=PlacementTarget)
    state: StatePlacement = Field(default_factory=StatePlacement)
    sinks: PlacementTarget = Field(default_factory=PlacementTarget)
    max_swappiness: Annotated[int, Field(ge=0, le=200)] | None = 10
    max_broker_rtt_ms: Annotated[float, Field(gt=0)] | None = None
    recheck_interval_s: Annotated[int, Field(ge=1)] = 300


class GeoIp(PolicyModel):
    """How fresh the GeoIP / ASN databases must be."""

    max_age_days: Annotated[int, Field(ge=1, le=3650)] = 35


# --- the policy -------------------------------------------------------------


class Policy(PolicyModel):
    """A whole policy file, validated."""

    metadata: Metadata
    mode: Mode = "enforce"
    jurisdiction: Jurisdiction
    geoip: GeoIp = Field(default_factory=GeoIp)
    streams: Annotated[dict[StreamName, Stream], Field(min_length=1)]
    egress: Egress = Field(default_factory=Egress)
    placement: Placement = Field(default_factory=Placement)

    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Policy:
        # The loader runs these checks itself to point at exact lines.
        if info.context and info.context.get("defer_semantics"):
            return self
        problems = semantic_problems(self)
        if problems:
            raise ValueError(
                "; ".join(f"{'.'.join(str(p) for p in loc)}: {msg}" for loc, msg in problems)
            )
        return self

    @property
    def source(self) -> str | None:
        """The file this policy was loaded from, if any."""
        return self._source

    def canonical(self) -> bytes:
        """Canonical form: JSON with sorted keys and defaults filled in, no whitespace."""
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)

    @cached_property
    def content_hash(self) -> str:
        """`sha256:<hex>` of the canonical form: the same for any formatting or key order."""
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()


# --- rules across parts -----------------------------------------------------

Loc = tuple[str | int, ...]


def field_rule_id(stream: str, path: str, rule: FieldRule) -> str:
    """The rule id a field's decision carries."""
    return rule.id or f"streams.{stream}.fields.{path}"


def semantic_problems(policy: Policy) -> list[tuple[Loc, str]]:
    """Every contradiction between parts of a structurally valid policy, with its location."""
    return list(_semantic_problems(policy))


def _semantic_problems(policy: Policy) -> Iterator[tuple[Loc, str]]:
    jur = policy.jurisdiction
    if jur.home in jur.forbidden_provider_jurisdictions:
        yield (
            ("jurisdiction", "forbidden_provider_jurisdictions"),
            f"the home country {jur.home} is also a forbidden provider jurisdiction",
        )
    for i, code in enumerate(jur.adequate_destinations):
        if code in jur.forbidden_provider_jurisdictions:
            yield (
                ("jurisdiction", "adequate_destinations", i),
                f"{code} is both an adequate destination and a forbidden provider jurisdiction",
            )
    rule_ids: dict[str, Loc] = {}

    def claim(rule_id: str, loc: Loc) -> Iterator[tuple[Loc, str]]:
        if rule_id in rule_ids:
            first = ".".join(str(p) for p in rule_ids[rule_id])
            yield loc, f"rule id {rule_id!r} is already used at {first}; rule ids must be unique"
        else:
            rule_ids[rule_id] = loc

    for name, stream in policy.streams.items():
        base: Loc = ("streams", name)
        paths = sorted(stream.fields)
        for a, b in itertools.pairwise(paths):
            if b.startswith(a + "."):
                yield (
                    (*base, "fields", b),
                    f"field {b!r} is inside field {a!r}, which already has its own action; "
                    f"declare either {a!r} or its parts",
                )
        for path, rule in stream.fields.items():
            loc: Loc = (*base, "fields", path)
            yield from claim(field_rule_id(name, path, rule), (*loc, "id") if rule.id else loc)
            if rule.action == "generalise" and rule.generalise is None:
                yield (
                    (*loc, "action"),
                    "action generalise needs a `generalise:` block saying how "
                    "(numeric_step, time_unit, keep_prefix or ip_prefix_length)",
                )
            if rule.generalise is not None and rule.action != "generalise":
                yield (
                    (*loc, "generalise"),
                    f"`generalise:` is set but the action is {rule.action!r}; "
                    "use action generalise or remove the block",
                )
            if (
                rule.key_id is not None
                and rule.action not in ("pseudonymise", "encrypt")
                and (rule.scan is None or rule.scan.on_detected not in ("pseudonymise", "encrypt"))
            ):
                yield (
                    (*loc, "key_id"),
                    f"key_id only applies to pseudonymise and encrypt, not {rule.action!r}",
                )
            if rule.pii in DIRECT_IDENTIFIERS and rule.action == "allow" and not rule.justification:
                yield (
                    (*loc, "action"),
                    f"a {rule.pii} passes in clear text with action allow: choose pseudonymise, "
                    "encrypt, redact or drop, or write down why in `justification:`",
                )
            if (
                rule.pii == "free_text"
                and rule.action in ("allow", "generalise")
                and (rule.scan is None)
            ):
                yield (
                    loc,
                    "a free_text field would pass unscanned: add `scan:` (detectors run on it) "
                    "or choose redact or drop",
                )
            if rule.scan is not None and rule.type not in ("any", "string"):
                yield (
                    (*loc, "scan"),
                    f"only text can be scanned, but the field's type is {rule.type!r}",
                )
        if stream.key is not None:
            key_rule = stream.fields.get(stream.key)
            if key_rule is None:
                yield (
                    (*base, "key"),
                    f"key field {stream.key!r} is not declared under fields"
                    + _did_you_mean(stream.key, list(stream.fields)),
                )
            elif key_rule.action not in KEY_ACTIONS:
                yield (
                    (*base, "key"),
                    f"key field {stream.key!r} has action {key_rule.action!r}, which destroys "
                    "the key; use allow, pseudonymise or generalise",
                )
        if stream.event_time is not None:
            if {"epoch_ms", "epoch_s"} <= set(stream.event_time.formats):
                yield (
                    (*base, "event_time", "formats"),
                    "epoch_ms and epoch_s cannot both be accepted: a number would be ambiguous",
                )
            et = stream.event_time.field
            et_rule = stream.fields.get(et)
            if et_rule is None:
                yield (
                    (*base, "event_time", "field"),
                    f"event-time field {et!r} is not declared under fields"
                    + _did_you_mean(et, list(stream.fields)),
                )
            elif et_rule.action != "allow":
                yield (
                    (*base, "event_time", "field"),
                    f"event-time field {et!r} has action {et_rule.action!r}; windows need the "
                    "time as sent: use action allow",
                )
            elif et_rule.type not in ("any", "string", "integer", "number"):
                yield (
                    (*base, "event_time", "field"),
                    f"event-time field {et!r} has type {et_rule.type!r}; use string, "
                    "integer, number or any",
                )

    seen_matches: dict[str, tuple[int, str]] = {}
    for i, egress_rule in enumerate(policy.egress.rules):
        loc = ("egress", "rules", i)
        yield from _egress_rule_problems(egress_rule, i, loc, jur, seen_matches)
        yield from claim(egress_rule.id, (*loc, "id"))

    yield from _placement_problems(policy)


def _egress_rule_problems(
    rule: EgressRule,
    i: int,
    loc: Loc,
    jur: Jurisdiction,
    seen_matches: dict[str, tuple[int, str]],
) -> Iterator[tuple[Loc, str]]:
    home_and_adequate = {jur.home, *jur.adequate_destinations}
    signature = rule.match.model_dump_json()
    if signature in seen_matches:
        j, action = seen_matches[signature]
        if action != rule.action:
            yield (
                (*loc, "action"),
                f"rule {rule.id!r} matches exactly what rule {j} matches but says "
                f"{rule.action!r} where that one says {action!r}; the first wins, so "
                "this rule is contradictory: remove one",
            )
        else:
            yield (
                (*loc, "match"),
                f"rule {rule.id!r} repeats the match of rule {j} and can never apply",
            )
    else:
        seen_matches[signature] = (i, rule.action)
    if rule.action == "allow":
        forbidden = set(rule.match.provider_jurisdiction or ()) & set(
            jur.forbidden_provider_jurisdictions
        )
        if forbidden:
            yield (
                (*loc, "match", "provider_jurisdiction"),
                f"rule {rule.id!r} allows providers under {', '.join(sorted(forbidden))}, "
                "which the jurisdiction forbids",
            )
        outside = set(rule.match.country or ()) - home_and_adequate
        if outside and rule.legal_basis is None:
            yield (
                (*loc, "match", "country"),
                f"rule {rule.id!r} allows transfers to {', '.join(sorted(outside))}, "
                "which is neither home nor an adequate destination: add `legal_basis:` "
                "(mechanism, reference, tia)",
            )
    elif rule.legal_basis is not None:
        yield (
            (*loc, "legal_basis"),
            f"rule {rule.id!r} denies; a legal basis only belongs on an allow rule",
        )


def _placement_problems(policy: Policy) -> Iterator[tuple[Loc, str]]:
    placement = policy.placement
    allowed = policy.jurisdiction.placement
    for part in ("brokers", "state", "sinks"):
        target: PlacementTarget = getattr(placement, part)
        for i, code in enumerate(target.countries or ()):
            if code not in allowed:
                yield (
                    ("placement", part, "countries", i),
                    f"{code} is not among the jurisdiction's placement countries "
                    f"({', '.join(sorted(allowed))})",
                )
    if placement.state.nvme == "required" and not placement.state.local_block_device:
        yield (
            ("placement", "state", "nvme"),
            "NVMe is required but local_block_device is false: NVMe is a local block device",
        )


def _did_you_mean(word: str, candidates: list[str]) -> str:
    near = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""
