"""The retailCRM API methods callsync uses, named as key permissions name them."""

from __future__ import annotations

__all__ = ["BATCH_METHODS", "CALLBACK_METHODS", "REFERENCE_SITES", "REQUIRED_METHODS",
           "SETTINGS", "TASK_EDIT", "TELEPHONY_UPLOAD_METHODS"]

# The 16 methods the integration's key must reach (shared/seed, the original setup guide).
REQUIRED_METHODS: tuple[str, ...] = (
    "/api/users/{id}",
    "/api/users",
    "/api/users/{id}/status",
    "/api/user-groups",
    "/api/telephony/manager",
    "/api/customers",
    "/api/customers/{externalId}",
    "/api/customers/create",
    "/api/customers/{externalId}/edit",
    "/api/orders",
    "/api/orders/create",
    "/api/tasks",
    "/api/tasks/create",
    "/api/reference/status-groups",
    "/api/integration-modules/{code}",
    "/api/integration-modules/{code}/edit",
)

# Not in the setup guide's list, yet the pipeline posts to them; a key needs them too.
TELEPHONY_UPLOAD_METHODS: tuple[str, ...] = (
    "/api/telephony/calls/upload",
    "/api/telephony/call/event",
)

# Optional: where the key reaches them, new leads' customers and orders go up to 50 to a request
# (a lane's backlog); a key without them gets one create per customer and per order.
BATCH_METHODS: tuple[str, ...] = (
    "/api/customers/upload",
    "/api/orders/upload",
)

# Optional: where the key has it, activation asks it whether the tenant's shop exists (a key with
# access to every shop may list none in /api/credentials' sitesAvailable).
REFERENCE_SITES = "/api/reference/sites"

# Optional: where the key has it, a first activation that names no time zone takes the account's
# own (`settings.timezone.value`): retailCRM reads the naive times callsync sends in that zone.
SETTINGS = "/api/settings"

# Not in the setup guide's list either: the `callback_loop` option completes a missed call's task
# (and notes later missed calls on it) with it; activation with the option on asks for it.
TASK_EDIT = "/api/tasks/{id}/edit"
CALLBACK_METHODS: tuple[str, ...] = (TASK_EDIT,)
