"""Self-diagnosis (option `self_diagnosis`): a set-up fault, one task for the senior manager."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.ledger import DiagnosisKey, Ledger
from pipeline.observability.metrics import DIAGNOSIS_FAILURES, DIAGNOSIS_TASKS
from schemas.crm import TaskPayload
from schemas.integration import IntegrationConfig

__all__ = ["CREATE", "Diagnosis", "Problem", "access_denied", "diagnosis_key", "site_refused",
           "unmapped_extension"]

log = logging.getLogger(__name__)
T = TypeVar("T")
CREATE = "/api/tasks/create"
# How often a problem whose task is open may cost a look at that task (was it completed?):
# only when the problem recurs, and then at most this often.
RECHECK_SECONDS = 600.0
KEYS_PAGE = "Administration → Integrations → API access keys"


class Steps(Protocol):
    """What diagnosis uses of `pipeline.delivery.steps.Steps` (the error policy and the ledger)."""

    client: RetailCRMClient
    ledger: Ledger
    clock: Callable[[], datetime]

    @property
    def denied(self) -> frozenset[str]: ...

    def call(self, method: str, fn: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


@dataclass(frozen=True)
class Problem:
    """A set-up fault only the operator can mend. `kind` is the metric's label; the pair
    (`kind`, `subject`) is the problem: one task for it, however many calls meet it."""

    kind: str
    subject: str
    text: str
    commentary: str


def unmapped_extension(employee_id: str, extension: str | None, why: str) -> Problem:
    """A call whose employee reaches no CRM manager (`TenantDirectory.note_fallback`)."""
    who = f"extension {extension}" if extension else f"employee {employee_id}"
    return Problem(
        kind="unmapped_extension", subject=extension or f"employee:{employee_id}",
        text=f"callsync: telephony {who} is linked to no CRM manager",
        commentary=(
            f"Calls of telephony employee {employee_id}"
            f"{f' (extension {extension})' if extension else ''} reach no manager in "
            f"retailCRM ({why}): their pop-ups, calls and leads go to you, the senior manager. "
            "Link the employee to an active CRM manager on the callsync console's employees "
            "page, or make the CRM user an active manager again (Administration → Users)."))


def access_denied(method: str) -> Problem:
    return Problem(
        kind="access_denied", subject=method,
        text=f"callsync: the API key may not use {method}",
        commentary=(
            f"retailCRM answered \"Access denied.\" to {method}: the API key callsync uses "
            f"lacks it, and the calls that need it are parked. Allow {method} for the key in "
            f"{KEYS_PAGE}, then activate the integration again on the callsync console "
            "(its parked calls can then be replayed)."))


def site_refused(method: str, site: str, message: str) -> Problem:
    return Problem(
        kind="site", subject=site,
        text=f"callsync: retailCRM refuses the shop code \"{site}\"",
        commentary=(
            f"retailCRM refused the shop (site) code \"{site}\" on {method}: {message[:200]} "
            "Check that the shop exists with this code (Administration → Stores) and that "
            f"the API key may reach it ({KEYS_PAGE}); set the code on the callsync console's "
            "settings page. Calls refused for it are on the invalid-events topic."))


def site_error(exc: e.CRMRejectedError) -> str | None:
    """The portal's message when it refused a request for its `site` (the double answers an
    unknown shop with `errors: {"site": …}`, as retailCRM does for a field it refuses)."""
    errors = exc.errors
    if isinstance(errors, Mapping) and "site" in errors:
        return str(errors["site"])
    return None


def diagnosis_key(tenant_id: str, portal: str, problem: Problem) -> DiagnosisKey:
    """The ledger's entry for a problem; `#` is in no call id."""
    digest = hashlib.sha256(f"{tenant_id}|{portal}|{problem.kind}|{problem.subject}"
                            .encode()).hexdigest()[:32]
    return DiagnosisKey(f"#diagnosis/{digest}")


def _marker(key: str, generation: int) -> str:
    return f"[callsync {key}#{generation}]"


class Diagnosis:
    """A lane's problems, reported as they are met and dealt with after its batch (never
    before or instead of a call's own steps). The ledger keeps, per problem, its open task
    (`task`), how many were made (`n`), an intent (`pending`) and when it was last checked."""

    def __init__(self, *, tenant_id: str, steps: Steps,
                 recheck_seconds: float = RECHECK_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.tenant_id = tenant_id
        self.steps = steps
        self.recheck_seconds = recheck_seconds
        self.monotonic = monotonic
        self.config: IntegrationConfig | None = None
        self.senior_manager_id: int | None = None
        self._due: dict[DiagnosisKey, Problem] = {}
        # problem key -> nothing to do for it until then
        self._quiet: dict[DiagnosisKey, float] = {}

    @property
    def enabled(self) -> bool:
        return self.config is not None and self.config.options.self_diagnosis

    def configure(self, config: IntegrationConfig, senior_manager_id: int | None) -> None:
        self.config = config
        self.senior_manager_id = senior_manager_id

    def report(self, problem: Problem) -> None:
        """Cheap, for every call that meets the problem: a known open task costs nothing."""
        if not self.enabled:
            return
        key = self._key(problem)
        if key in self._due or self._quiet.get(key, 0.0) > self.monotonic():
            return
        self._due[key] = problem

    def denied(self, method: str) -> None:
        """Told of every method the key is refused (`Steps.on_denied`)."""
        self.report(access_denied(method))

    def rejected(self, method: str, exc: e.CRMRejectedError) -> None:
        """Told of every refused request (`Steps.on_rejected`): a refused shop is a problem."""
        message = site_error(exc)
        config = self.config
        if message is not None and config is not None:
            self.report(site_refused(method, config.site_code, message))

    def _key(self, problem: Problem) -> DiagnosisKey:
        return diagnosis_key(self.tenant_id, self.steps.client.base_url, problem)

    async def run(self) -> None:
        """The reported problems' tasks. A failure is logged and counted, never raised: a
        call is not parked because its diagnosis could not be made."""
        due, self._due = self._due, {}
        for key, problem in due.items():
            try:
                await self._one(key, problem)
            except Exception as exc:  # noqa: BLE001 - diagnosis never fails a call
                DIAGNOSIS_FAILURES.labels(problem.kind).inc()
                log.warning("tenant %s: no diagnosis task for %s %s (%s: %s)", self.tenant_id,
                            problem.kind, problem.subject, type(exc).__name__, exc)
                self._quiet[key] = self.monotonic() + self.recheck_seconds

    async def _one(self, key: DiagnosisKey, problem: Problem) -> None:
        quiet = self.monotonic() + self.recheck_seconds
        if CREATE in self.steps.denied or problem == access_denied(CREATE):
            self._quiet[key] = quiet
            log.warning("tenant %s: %s %s, but the key may not use %s: no diagnosis task "
                        "can be made (%s)", self.tenant_id, problem.kind, problem.subject,
                        CREATE, problem.text)
            return
        performer = self.senior_manager_id
        if performer is None:
            self._quiet[key] = quiet
            log.warning("tenant %s: %s, and no senior manager to tell (set one in the "
                        "mapping)", self.tenant_id, problem.text)
            DIAGNOSIS_FAILURES.labels(problem.kind).inc()
            return
        ledger, now = self.steps.ledger, self.steps.clock().timestamp()
        facts = ledger.diagnosis(self.tenant_id, key)
        generation = int(facts.get("n") or 0)
        task_id = facts.get("task")
        if isinstance(task_id, int):
            checked = facts.get("checked")
            if isinstance(checked, int | float) and now - checked < self.recheck_seconds:
                self._quiet[key] = self.monotonic() + self.recheck_seconds - (now - checked)
                return
            if await self._still_open(task_id):
                # `at` anew: the ledger prunes by it, and the task may be open for long.
                ledger.record_diagnosis(self.tenant_id, key, checked=now, at=int(now))
                self._quiet[key] = quiet
                return
            ledger.record_diagnosis(self.tenant_id, key, task=None)
            generation += 1  # completed (or deleted) in the CRM: a new one for the recurrence
        elif not facts.get("pending"):
            generation += 1
        task = self._payload(problem, performer, _marker(key, generation))
        found = await self._find(task, _marker(key, generation)) if facts.get("pending") \
            and not isinstance(task_id, int) else None
        if found is None:
            # retailCRM does not de-duplicate tasks: the intent is durable before the create.
            ledger.record_diagnosis(self.tenant_id, key, n=generation, pending=True,
                                    at=int(now))
            await ledger.sync((self.tenant_id, key))
            found = await self.steps.call(CREATE, self._create(task, problem, key, generation))
            DIAGNOSIS_TASKS.labels(problem.kind).inc()
            log.warning("tenant %s: diagnosis task %s for the senior manager: %s",
                        self.tenant_id, found, problem.text)
        ledger.record_diagnosis(self.tenant_id, key, n=generation, task=found, pending=False,
                                checked=now, at=int(now))
        self._quiet[key] = quiet

    def _create(self, task: TaskPayload, problem: Problem, key: str,
                generation: int) -> Callable[[], Awaitable[int]]:
        """Its first try creates; a later one first looks for what a lost answer made."""
        tried = False
        # A task needs no shop; the tenant's is sent as its other requests send it, but not
        # where that shop is the problem.
        site = None if self.config is None or problem.kind == "site" else \
            self.config.site_code

        async def attempt() -> int:
            nonlocal tried
            if tried:
                found = await self._find(task, _marker(key, generation))
                if found is not None:
                    return found
            tried = True
            return await self.steps.client.create_task(task, site=site)

        return attempt

    def _payload(self, problem: Problem, performer: int, marker: str) -> TaskPayload:
        zone = self.config.zone if self.config is not None else None
        return TaskPayload(text=problem.text, commentary=f"{problem.commentary} {marker}",
                           datetime=self.steps.clock().astimezone(zone).strftime(
                               "%Y-%m-%d %H:%M"), performerId=performer)

    async def _still_open(self, task_id: int) -> bool:
        async def read() -> Any:
            return await self.steps.client.tasks(filter={"ids": [task_id]}, limit=20)

        found = await self.steps.call("/api/tasks", read)
        task = next((t for t in found.tasks if t.id == task_id), None)
        return task is not None and not task.complete

    async def _find(self, task: TaskPayload, marker: str) -> int | None:
        """The task an earlier try made for this problem and generation, if there is one."""
        return await self.steps.call("/api/tasks",
                                     lambda: self.steps.client.find_task(task, marker))
