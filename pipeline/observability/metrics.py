"""Prometheus metrics (callsync_ prefix, base units); labels stay low-cardinality."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from pipeline.observability.tenantgauges import TenantGauges

__all__ = [
    "BATCH_SIZE", "CALLBACK_SECONDS", "CONSUMER_LAG_RECORDS", "CONSUMER_LAG_SECONDS",
    "CRM_REQUESTS", "CRM_REQUEST_SECONDS", "DEAD_LETTERED", "DELIVERED",
    "DIAGNOSIS_FAILURES", "DIAGNOSIS_TASKS",
    "EVENTS_CONSUMED", "FALLBACKS", "HEAP_RETURNED", "INGEST_ACCEPTED", "INGEST_IN_FLIGHT",
    "INGEST_REGISTRY",
    "INGEST_REQUESTS", "INVALID", "LANE_BACKLOG", "LEAD_BATCH_SIZE",
    "POPUPS_SKIPPED", "RATE_LIMIT_WAIT", "READY", "REPLAY_REMAINING", "REPLAY_SCANNED",
    "REPLAY_SUBMITTED", "REROUTED",
    "RETRIES", "ROSTER_SYNCS", "STATUS_SYNC", "TENANT_GAUGES", "TENANT_UPDATES",
    "observe_crm_request",
]

EVENTS_CONSUMED = Counter("callsync_events_consumed_total", "Records read", ["topic"])
DELIVERED = Counter("callsync_events_delivered_total",
                    "Call events whose every CRM operation succeeded")
INVALID = Counter("callsync_events_invalid_total", "Events put on the invalid topic", ["reason"])
REROUTED = Counter("callsync_events_rerouted_total",
                   "Call records moved to their tenant's partition (produced to another one: "
                   "the producer's partitioner is not murmur2)")
DEAD_LETTERED = Counter("callsync_events_dead_lettered_total",
                        "Events (or their parked operations) put on the dead-letter topic",
                        ["reason"])
CRM_REQUESTS = Counter("callsync_crm_requests_total", "retailCRM requests",
                       ["method", "outcome"])
CRM_REQUEST_SECONDS = Histogram("callsync_crm_request_duration_seconds",
                                "retailCRM request duration", ["method"],
                                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RATE_LIMIT_WAIT = Counter("callsync_crm_rate_limit_wait_seconds_total",
                          "Time spent waiting for the per-key request budget")
RETRIES = Counter("callsync_crm_retries_total", "Retried retailCRM requests", ["method"])
BATCH_SIZE = Histogram("callsync_call_upload_batch_size", "Calls per telephony/calls/upload",
                       buckets=(1, 2, 5, 10, 20, 30, 40, 50))
LEAD_BATCH_SIZE = Histogram("callsync_lead_upload_batch_size",
                            "New leads' customers or orders per customers/upload or orders/upload",
                            ["step"], buckets=(2, 5, 10, 20, 30, 40, 50))
POPUPS_SKIPPED = Counter("callsync_popups_skipped_total", "Pop-ups not sent", ["reason"])
TENANT_UPDATES = Counter("callsync_tenant_updates_total",
                         "Integration configs and mappings stored", ["table"])
# callsync_integration_state{tenant, state} and callsync_dead_letter_backlog_events{tenant}.
TENANT_GAUGES = TenantGauges()
REGISTRY.register(TENANT_GAUGES)
REPLAY_SCANNED = Counter("callsync_replay_records_scanned_total",
                         "Call topic records read by replays", ["tenant"])
REPLAY_SUBMITTED = Counter("callsync_replay_events_submitted_total",
                           "Replayed events handed to delivery", ["tenant"])
REPLAY_REMAINING = Gauge("callsync_replay_remaining_records",
                         "Records a running replay still has to read", ["tenant"])
CONSUMER_LAG_RECORDS = Gauge("callsync_consumer_lag_records",
                             "Records of the call topic not yet read or settled",
                             ["topic", "partition"])
CONSUMER_LAG_SECONDS = Gauge("callsync_consumer_lag_seconds",
                             "How long the oldest unsettled record has waited",
                             ["topic", "partition"])
READY = Gauge("callsync_worker_ready", "1 when the worker has partitions and its tables "
              "are recovered")
FALLBACKS = Counter("callsync_manager_fallbacks_total",
                    "Calls of employees not linked to an active manager (to the senior)",
                    ["tenant", "reason"])
ROSTER_SYNCS = Counter("callsync_roster_syncs_total", "CRM manager roster syncs",
                       ["outcome"])
STATUS_SYNC = Counter("callsync_user_status_changes_total",
                      "CRM user statuses set by status sync", ["action"])
CALLBACK_SECONDS = Histogram(
    "callsync_callback_seconds",
    "How long a caller waited from their first missed call to the call that completed its task "
    "(option callback_loop); once per completed task",
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800))
DIAGNOSIS_TASKS = Counter(
    "callsync_diagnosis_tasks_total",
    "Tasks made for the senior manager about a set-up problem (option self_diagnosis)",
    ["problem"])
DIAGNOSIS_FAILURES = Counter(
    "callsync_diagnosis_failures_total",
    "Set-up problems no diagnosis task could be made for (logged; no call is parked for it)",
    ["problem"])
LANE_BACKLOG = Gauge("callsync_lane_backlog_events", "Events waiting in tenant lanes")
HEAP_RETURNED = Counter("callsync_heap_returned_bytes_total",
                        "Resident memory the free-heap trims handed back to the system")

# The HTTP ingest is a process of its own: its /metrics serves these alone, not the worker's.
INGEST_REGISTRY = CollectorRegistry()
INGEST_REQUESTS = Counter("callsync_ingest_requests_total",
                          "POST /v1/calls answers by outcome (accepted, unauthorized, "
                          "forbidden, invalid, too_large, busy, unavailable, …)", ["outcome"],
                          registry=INGEST_REGISTRY)
INGEST_ACCEPTED = Counter("callsync_ingest_events_accepted_total",
                          "Call events the brokers acknowledged, by producer (token name)",
                          ["producer"], registry=INGEST_REGISTRY)
INGEST_IN_FLIGHT = Gauge("callsync_ingest_in_flight_records",
                         "Records sent and not yet acknowledged", registry=INGEST_REGISTRY)


def observe_crm_request(method: str, outcome: str, seconds: float, waited: float) -> None:
    CRM_REQUESTS.labels(method, outcome).inc()
    CRM_REQUEST_SECONDS.labels(method).observe(seconds)
    if waited:
        RATE_LIMIT_WAIT.inc(waited)
