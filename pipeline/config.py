"""callsync's one settings object, read from CALLSYNC_* variables (nested with '__')."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CRMSettings", "KafkaSettings", "Settings", "SettingsError", "TopicSettings",
           "load_settings"]

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
        default=0.5, ge=0, le=10, description="CALLSYNC_CRM__UPLOAD_LINGER_SECONDS: batch window")
    max_attempts: int = Field(default=8, ge=1, le=100,
                              description="CALLSYNC_CRM__MAX_ATTEMPTS: per retryable failure")
    backoff_base_seconds: float = Field(default=0.1, gt=0,
                                        description="CALLSYNC_CRM__BACKOFF_BASE_SECONDS")
    backoff_max_seconds: float = Field(default=30.0, gt=0,
                                       description="CALLSYNC_CRM__BACKOFF_MAX_SECONDS")


class Settings(BaseSettings):
    """Built once at start-up (`load_settings`); tests construct it explicitly."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      frozen=True, extra="forbid")

    app_id: str = Field(default="callsync", pattern=r"^[A-Za-z0-9._-]+$",
                        description="CALLSYNC_APP_ID: consumer group and table prefix")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    crm: CRMSettings = Field(default_factory=CRMSettings)
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
