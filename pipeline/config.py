"""callsync's one settings object, read from CALLSYNC_* variables (nested with '__')."""

from __future__ import annotations

import ssl
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from faust.auth import Credentials, SASLCredentials, SSLCredentials
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.secrets import KeyRing

__all__ = ["CRMSettings", "IngestSettings", "KafkaSettings", "SecretsSettings", "Settings",
           "SettingsError", "TopicSettings", "load_settings", "require_worker_secrets"]

ENV_PREFIX = "CALLSYNC_"


class SettingsError(SystemExit):
    """A bad setting: start-up stops with a message that names the variable."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        description="CALLSYNC_KAFKA__BOOTSTRAP_SERVERS: host:port[,host:port…]")

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return value

    session_timeout_seconds: float = Field(
        default=60.0, ge=6, le=300,
        description="CALLSYNC_KAFKA__SESSION_TIMEOUT_SECONDS: a dead worker's partitions move "
        "after this long")
    fetch_wait_ms: int = Field(
        default=100, ge=1, le=1500,
        description="CALLSYNC_KAFKA__FETCH_WAIT_MS: how long a broker may hold the worker's "
        "fetch when nothing new came; a partition left out of that fetch waits as long")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="CALLSYNC_KAFKA__SECURITY_PROTOCOL: TLS and/or SASL to "
        "the brokers (a real cluster wants SASL_SSL)")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="CALLSYNC_KAFKA__SASL_MECHANISM")
    sasl_username: str | None = Field(default=None,
                                      description="CALLSYNC_KAFKA__SASL_USERNAME")
    sasl_password: SecretStr | None = Field(default=None,
                                            description="CALLSYNC_KAFKA__SASL_PASSWORD")
    ssl_cafile: FilePath | None = Field(
        default=None, description="CALLSYNC_KAFKA__SSL_CAFILE: CA bundle for the brokers' "
        "certificates (else the system's)")
    ssl_certfile: FilePath | None = Field(
        default=None, description="CALLSYNC_KAFKA__SSL_CERTFILE: client certificate (mTLS)")
    ssl_keyfile: FilePath | None = Field(
        default=None, description="CALLSYNC_KAFKA__SSL_KEYFILE: its private key")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
                self.sasl_username and self.sasl_password):
            raise ValueError("SASL needs CALLSYNC_KAFKA__SASL_USERNAME and "
                             "CALLSYNC_KAFKA__SASL_PASSWORD")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("a client certificate needs both CALLSYNC_KAFKA__SSL_CERTFILE "
                             "and CALLSYNC_KAFKA__SSL_KEYFILE")
        return self

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.security_protocol.endswith("SSL"):
            return None
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
            certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
            keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client callsync makes (replays, the operator
        CLI, topic creation, producers): the brokers and how to reach them."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                                   "security_protocol": self.security_protocol}
        context = self._ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (self.sasl_password.get_secret_value()
                                              if self.sasl_password else None)
        return options

    def faust_credentials(self) -> Credentials | None:
        """The same for the Faust app (its `broker_credentials`)."""
        context = self._ssl_context()
        if self.security_protocol.startswith("SASL"):
            return SASLCredentials(
                username=self.sasl_username, ssl_context=context, mechanism=self.sasl_mechanism,
                password=self.sasl_password.get_secret_value() if self.sasl_password else None)
        if context is not None:
            return SSLCredentials(context)
        return None


class TopicSettings(_Section):
    calls: str = Field(default="callsync.calls", description="CALLSYNC_TOPICS__CALLS")
    partitions: int = Field(default=6, ge=1, le=1000,
                            description="CALLSYNC_TOPICS__PARTITIONS: for every keyed topic")
    calls_retention_days: int = Field(
        default=7, ge=4, description="CALLSYNC_TOPICS__CALLS_RETENTION_DAYS: replay needs >= 3")
    integrations: str = Field(default="callsync.integrations",
                              description="CALLSYNC_TOPICS__INTEGRATIONS")
    mappings: str = Field(default="callsync.employee-mappings",
                          description="CALLSYNC_TOPICS__MAPPINGS")
    invalid: str = Field(default="callsync.invalid-events", description="CALLSYNC_TOPICS__INVALID")
    dead_letter: str = Field(default="callsync.dead-letter",
                             description="CALLSYNC_TOPICS__DEAD_LETTER")
    control: str = Field(default="callsync.control", description="CALLSYNC_TOPICS__CONTROL")
    results: str = Field(default="callsync.control-results",
                         description="CALLSYNC_TOPICS__RESULTS")


class CRMSettings(_Section):
    timeout_seconds: float = Field(default=10.0, gt=0,
                                   description="CALLSYNC_CRM__TIMEOUT_SECONDS: per request")
    general_rps: int = Field(default=10, ge=1, le=10,
                             description="CALLSYNC_CRM__GENERAL_RPS: retailCRM allows 10/s")
    telephony_rps: int = Field(default=40, ge=1, le=40,
                               description="CALLSYNC_CRM__TELEPHONY_RPS: retailCRM allows 40/s")
    upload_linger_seconds: float = Field(
        default=0.5, ge=0, le=10, description="CALLSYNC_CRM__UPLOAD_LINGER_SECONDS: a batch of "
        "uploads leaves once no call came for this long, or four times this long after its first")
    max_attempts: int = Field(default=8, ge=1, le=100,
                              description="CALLSYNC_CRM__MAX_ATTEMPTS: per retryable failure")
    backoff_base_seconds: float = Field(default=0.1, gt=0,
                                        description="CALLSYNC_CRM__BACKOFF_BASE_SECONDS")
    backoff_max_seconds: float = Field(default=30.0, gt=0,
                                       description="CALLSYNC_CRM__BACKOFF_MAX_SECONDS")


class SecretsSettings(_Section):
    keys: SecretStr | None = Field(
        default=None, description="CALLSYNC_SECRETS__KEYS: key-encryption keys of the tenants' "
        "API keys, 'kid:base64(32 bytes)[,kid:base64…]'; the first encrypts, the others are "
        "still accepted for decryption during a rotation (then `rekey --all`)")

    @field_validator("keys")
    @classmethod
    def _parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            KeyRing.parse(value.get_secret_value())
        return value

    def keyring(self) -> KeyRing | None:
        return KeyRing.parse(self.keys.get_secret_value()) if self.keys is not None else None


class IngestSettings(_Section):
    """`python -m pipeline ingest`: the HTTP way in for producers that cannot speak Kafka."""

    host: str = Field(default="127.0.0.1", min_length=1,
                      description="CALLSYNC_INGEST__HOST: address to listen on")
    port: int = Field(default=8790, ge=1, le=65535, description="CALLSYNC_INGEST__PORT")
    tokens_file: str = Field(
        default=".callsync/ingest-tokens.json", min_length=1,
        description="CALLSYNC_INGEST__TOKENS_FILE: the producers' tokens, hashed "
        "(`python -m pipeline ingest-token`); re-read when it changes")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=67_108_864,
                                description="CALLSYNC_INGEST__MAX_BODY_BYTES: larger: 413")
    max_events: int = Field(default=500, ge=1, le=10_000,
                            description="CALLSYNC_INGEST__MAX_EVENTS: per request; more: 413")
    max_in_flight: int = Field(
        default=5000, ge=1, le=1_000_000, description="CALLSYNC_INGEST__MAX_IN_FLIGHT: records "
        "sent and not yet acknowledged by the brokers; a request that would pass it: 429")
    send_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="CALLSYNC_INGEST__SEND_TIMEOUT_SECONDS: how "
        "long a request waits for the brokers' acknowledgements before 503")
    retry_after_seconds: int = Field(
        default=1, ge=1, le=3600, description="CALLSYNC_INGEST__RETRY_AFTER_SECONDS: "
        "Retry-After of a 429 (a 503 says 5 times as long)")

    @model_validator(mode="after")
    def _a_full_request_fits(self) -> IngestSettings:
        if self.max_events > self.max_in_flight:
            raise ValueError("CALLSYNC_INGEST__MAX_EVENTS must not exceed "
                             "CALLSYNC_INGEST__MAX_IN_FLIGHT (such a request could never pass)")
        return self


class Settings(BaseSettings):
    """Built once at start-up (`load_settings`); tests construct it explicitly."""

    # hide_input_in_errors: a bad secret must not be echoed by a traceback.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      frozen=True, extra="forbid", hide_input_in_errors=True)

    app_id: str = Field(default="callsync", pattern=r"^[A-Za-z0-9._-]+$",
                        description="CALLSYNC_APP_ID: consumer group and table prefix")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    crm: CRMSettings = Field(default_factory=CRMSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    metrics_port: int = Field(default=9108, ge=0, le=65535,
                              description="CALLSYNC_METRICS_PORT: /metrics and health; 0 = off")
    operator_key: SecretStr | None = Field(
        default=None, description="CALLSYNC_OPERATOR_KEY: HMAC key for control commands")
    metrics_bind: str = Field(default="0.0.0.0",  # noqa: S104 - containers expose it
                              description="CALLSYNC_METRICS_BIND: address for /metrics")
    replication_factor: int = Field(default=1, ge=1, le=5,
                                    description="CALLSYNC_REPLICATION_FACTOR: new topics")
    lane_buffer: int = Field(default=2000, ge=1,
                             description="CALLSYNC_LANE_BUFFER: events queued per tenant")
    lane_idle_seconds: float = Field(
        default=600.0, gt=0, description="CALLSYNC_LANE_IDLE_SECONDS: a tenant quiet this long "
        "has its delivery lane and CRM client let go (memory follows the tenants calling)")
    broken_probe_seconds: float = Field(
        default=300.0, gt=0, description="CALLSYNC_BROKEN_PROBE_SECONDS: how seldom a broken "
        "key is tried again (one /api/credentials call)")
    outage_probe_seconds: float = Field(
        default=30.0, gt=0, description="CALLSYNC_OUTAGE_PROBE_SECONDS: how often a portal "
        "that stopped answering is asked again; once it answers, what was parked is replayed")
    roster_sync_seconds: float = Field(
        default=900.0, ge=10, description="CALLSYNC_ROSTER_SYNC_SECONDS: how often each "
        "tenant's CRM managers are synced")
    log_json: bool = Field(default=False, description="CALLSYNC_LOG_JSON: JSON log lines")
    log_phone_numbers: bool = Field(
        default=False, description="CALLSYNC_LOG_PHONE_NUMBERS: full phone numbers in logs "
        "(for debugging only; by default they are masked: +38050*****33)")
    data_dir: str = Field(default=".callsync", description="CALLSYNC_DATA_DIR: table stores")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="CALLSYNC_EVENT_LOOP: the worker's event loop; uvloop "
        "takes about 5 % less CPU per call (the benchmark), asyncio is the standard library's")


def load_settings() -> Settings:
    """Read the environment; on a bad value stop with the variable's name and what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("invalid callsync settings:\n" + "\n".join(lines)) from None


def require_worker_secrets(settings: Settings) -> KeyRing:
    """A worker stores tenant keys encrypted and takes only signed records: it needs both."""
    missing = [f"  {name}: required by the worker" for name, value in (
        ("CALLSYNC_SECRETS__KEYS", settings.secrets.keys),
        ("CALLSYNC_OPERATOR_KEY", settings.operator_key)) if value is None]
    keyring = settings.secrets.keyring()
    if missing or keyring is None:
        raise SettingsError("invalid callsync settings:\n" + "\n".join(missing))
    return keyring
