"""The gateway's configuration file (`fjordgate gateway serve --config FILE`), validated.

Paths in the file are relative to the file's own directory. Secrets are not
in it: API keys appear only as SHA-256 digests, and the keyring and the audit
signing key are files it names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Model):
    cert: Path
    key: Path


class HttpConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tls: TlsConfig | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_events_per_batch: int = Field(default=10_000, ge=1)
    # uvicorn only. The option offered granian too, and `serve` ignored it. Measured end to
    # end (bench/gateway's Kafka run, 4 clients, two pairs of runs): granian's embedded server
    # took 0.90-0.97x uvicorn's events/s, no gain worth a second server to support.
    server: Literal["uvicorn"] = "uvicorn"


class ApiKeyConfig(_Model):
    name: str = Field(min_length=1, max_length=100)
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    streams: list[str] = Field(min_length=1)


class KafkaConfig(_Model):
    bootstrap: str
    transactional_id: str = "fjordgate-gateway"
    tagged_topic: str = "{stream}.tagged"
    raw_topic: str = "{stream}.raw"
    dead_letter_topic: str = "{stream}.dead-letter"
    create_topics: bool = True
    partitions: int = Field(default=3, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)
    lanes: int = Field(
        default=2,
        ge=1,
        le=16,
        description=(
            "Groups committed at once, each in its own Kafka transaction (transactional ids "
            "`<transactional_id>`, `<transactional_id>-lane1`, ...)."
        ),
    )
    ingress_streams: list[str] = Field(
        default_factory=list, description="Streams also consumed from their raw topic."
    )
    consumer_group: str = "fjordgate-gateway-ingress"
    extra: dict[str, Any] = Field(default_factory=dict, description="librdkafka settings")


class AuditConfig(_Model):
    directory: Path
    signing_key: Path


class CommitConfig(_Model):
    max_pending_events: int = Field(default=50_000, ge=1)
    max_group_events: int = Field(default=10_000, ge=1)
    retry_after_s: int = Field(default=1, ge=1)
    index_capacity: int = Field(
        default=2_000_000,
        ge=1,
        le=100_000_000,
        description="Event ids remembered at least, for idempotency; the compiled index "
        "reserves two tables of about 36 bytes per id at start (143 MB at the default), "
        "whose pages are touched as ids arrive",
    )


class PlacementConfigModel(_Model):
    state_dir: Path | None = None
    country_db: Path | None = None
    asn_db: Path | None = None
    jurisdictions: Path | None = None
    site_networks: dict[str, str] = Field(
        default_factory=dict,
        description="This site's own networks and their country, e.g. {'10.20.0.0/16': 'NO'}: "
        "no GeoIP database knows private ranges (as `fjordgate doctor` takes them).",
    )


class GatewayConfig(_Model):
    """The whole file."""

    policy: Path
    keyring: Path
    audit: AuditConfig
    kafka: KafkaConfig
    http: HttpConfig = Field(default_factory=HttpConfig)
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    commit: CommitConfig = Field(default_factory=CommitConfig)
    placement: PlacementConfigModel = Field(default_factory=PlacementConfigModel)
    event_id_field: str = "event_id"
    policy_reload_interval_s: float = Field(default=2.0, gt=0)

    @classmethod
    def load(cls, path: Path | str) -> GatewayConfig:
        """Read and validate a configuration file; ConfigError names the problem and the field."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{where}: not valid YAML") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the configuration must be a mapping")
        try:
            config = cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"{path}: {problems}") from None
        return config.resolved(path.parent)

    def resolved(self, base: Path) -> GatewayConfig:
        """Paths made absolute against `base` (the configuration file's directory)."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())

        http = self.http
        if http.tls is not None:
            http = http.model_copy(
                update={"tls": TlsConfig(cert=fix(http.tls.cert), key=fix(http.tls.key))}
            )
        return self.model_copy(
            update={
                "policy": fix(self.policy),
                "keyring": fix(self.keyring),
                "audit": AuditConfig(
                    directory=fix(self.audit.directory),
                    signing_key=fix(self.audit.signing_key),
                ),
                "http": http,
                "placement": PlacementConfigModel(
                    state_dir=fix(self.placement.state_dir),
                    country_db=fix(self.placement.country_db),
                    asn_db=fix(self.placement.asn_db),
                    jurisdictions=fix(self.placement.jurisdictions),
                    site_networks=dict(self.placement.site_networks),
                ),
            }
        )
