"""Operator commands: verified, validated, never carried out twice, answered on results."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pipeline.crm import errors as e
from pipeline.delivery.employees import link_refusal
from pipeline.delivery.health import Condition, TenantHealth
from pipeline.delivery.intake import TenantDirectory
from pipeline.delivery.lanes import ClientFor, LaneRegistry
from pipeline.delivery.tenantstate import StateStore, key_fingerprint
from pipeline.operations.activation import Refused, account_zone_config, check_key, config_for
from pipeline.operations.admission import Refusal, admit, remember
from pipeline.operations.deskcommands import DeskCommands, StartReplay
from pipeline.operations.staff import Staff, StaffRefused
from pipeline.operations.window import calendar_days_window
from pipeline.secrets import KeyRing, SecretError, scrub, scrub_json
from pipeline.signing import RecordWriter
from schemas.control import (
    ActivateCommand,
    Command,
    CommandResult,
    DeactivateCommand,
    EmployeesCommand,
    LinkCommand,
    RekeyCommand,
    ReplayCommand,
    SeniorCommand,
    SignedCommand,
    UnlinkCommand,
)
from schemas.crm import (
    AdditionalCode,
    IntegrationModulePayload,
    Integrations,
    TelephonyConfiguration,
)
from schemas.integration import INTEGRATION_CODE, IntegrationConfig
from schemas.mapping import EmployeeMapping

__all__ = ["ControlDesk", "Refused", "module_payload"]

log = logging.getLogger(__name__)

Report = Callable[[CommandResult], Awaitable[object]]


def module_payload(config: IntegrationConfig, mapping: EmployeeMapping, *,
                   active: bool) -> IntegrationModulePayload:
    """The telephony module as the CRM lists it; extensions route pop-ups to managers."""
    return IntegrationModulePayload(
        code=config.module_code, integrationCode=INTEGRATION_CODE, active=active,
        name="Ringostat",
        integrations=Integrations(telephony=TelephonyConfiguration(
            inputEventSupported=True, outputEventSupported=True, hangupEventSupported=True,
            allowEdit=False,
            additionalCodes=[AdditionalCode(userId=link.crm_user_id, code=link.extension)
                             for link in mapping.employees.values() if link.extension])))


class ControlDesk(DeskCommands):
    """Answers every command record; carries out the verified, valid, new ones."""

    def __init__(self, *, operator_key: bytes | None, directory: TenantDirectory,
                 records: RecordWriter, states: StateStore,
                 lanes: LaneRegistry, report: Report, start_replay: StartReplay,
                 client_for: ClientFor,
                 staff: Staff | None = None, keyring: KeyRing | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.operator_key = operator_key
        self.directory = directory
        self.records = records
        self.keyring = keyring
        self.states = states
        self.lanes = lanes
        self.report = report
        self.start_replay = start_replay
        self.client_for = client_for
        self.staff = staff
        self.clock = clock

    async def _answer(self, command_id: str, status: str, message: str, *,
                      command: Command | None = None, data: dict[str, Any] | None = None,
                      secrets: Sequence[str] = ()) -> CommandResult:
        result = self._result(command_id, status, message, command=command, data=data,
                              secrets=secrets)
        await self.report(result)
        return result

    def _result(self, command_id: str, status: str, message: str, *,
                command: Command | None = None, data: dict[str, Any] | None = None,
                secrets: Sequence[str] = ()) -> CommandResult:
        # A net under the client's own scrubbing: no key the desk knows reaches the results.
        known = [*secrets, *self._secrets_of(command)]
        return CommandResult.model_validate({
            "command_id": command_id, "status": status, "message": scrub(message, known),
            "tenant_id": command.tenant_id if command else None,
            "type": command.type if command else None, "data": scrub_json(data or {}, known),
            "at": self.clock()})

    def _secrets_of(self, command: Command | None) -> list[str]:
        found = [self.operator_key.decode(errors="replace")] if self.operator_key else []
        config = self.directory.config(command.tenant_id) if command is not None else None
        if config is not None:
            found.append(config.api_key.get_secret_value())
        return found

    async def failed(self, raw: bytes, exc: Exception) -> None:
        """A command that broke the desk is answered, never silently lost."""
        command_id = "unknown"
        try:
            command_id = str(SignedCommand.model_validate_json(raw).command.get(
                "command_id", "unknown"))[:128]
        except ValidationError:
            pass
        try:
            await self._answer(command_id, "failed", f"internal:{type(exc).__name__}")
        except Exception:
            log.exception("could not answer command %s", command_id)

    async def handle(self, raw: bytes, key: bytes | None) -> CommandResult:
        """Every record gets an answer; only a verified, valid, new command changes anything."""
        checked = admit(raw, key, operator_key=self.operator_key, states=self.states,
                        clock=self.clock)
        if isinstance(checked, Refusal):
            return await self._answer(checked.command_id, checked.status, checked.message,
                                      command=checked.command, data=checked.data)
        command = checked
        secrets: list[str] = []
        try:
            if isinstance(command, ActivateCommand):
                secrets.append(self._open_key(command))
            status, message, data = await self._carry_out(command, secrets)
        except Refused as refused:
            status, message, data = "refused", str(refused), {}
        except SecretError as exc:
            status, message, data = "refused", f"a key cannot be decrypted: {exc}", {}
        except e.RetailCRMError as exc:
            status, message, data = "failed", f"retailCRM: {exc}", {}
        except Exception as exc:  # it may have acted before: answered, and kept
            log.exception("command %s of tenant %s failed", command.command_id,
                          command.tenant_id)
            status, message, data = "failed", f"internal:{type(exc).__name__}", {}
        result = self._result(command.command_id, status, message, command=command, data=data,
                              secrets=secrets)
        # Kept before it is answered: a command whose answer could not be sent is still never
        # carried out again.
        remember(self.states, command, result, clock=self.clock)
        await self.report(result)
        return result

    def _open_key(self, command: ActivateCommand) -> str:
        if self.keyring is None:
            raise SecretError("CALLSYNC_SECRETS__KEYS is not set on the worker")
        return self.keyring.decrypt(command.api_key, tenant_id=command.tenant_id)

    async def _carry_out(self, command: Command, secrets: Sequence[str]
                         ) -> tuple[str, str, dict[str, Any]]:
        if isinstance(command, LinkCommand | UnlinkCommand | SeniorCommand | EmployeesCommand):
            if self.staff is None:
                raise Refused("employee commands are not available on this worker")
            try:
                return await self.staff.handle(command, self.directory.config(command.tenant_id),
                                               self._push_module)
            except StaffRefused as refused:
                raise Refused(str(refused)) from None
        if isinstance(command, ActivateCommand):
            return await self._activate(command, secrets[0])
        if isinstance(command, RekeyCommand):
            return await self._rekey(command)
        if isinstance(command, DeactivateCommand):
            return await self._deactivate(command)
        if isinstance(command, ReplayCommand):
            return await self._replay(command)
        return self._status(command)

    async def _push_module(self, config: IntegrationConfig, mapping: EmployeeMapping) -> None:
        """The CRM routes pop-ups by extension: its module follows the mapping."""
        health = self._health(config.tenant_id).now
        async with self.client_for(config) as crm:
            await crm.edit_integration_module(module_payload(
                config, mapping, active=health.condition is not Condition.DEACTIVATED))

    def _health(self, tenant_id: str) -> TenantHealth:
        return TenantHealth(self.states, tenant_id, clock=self.clock)

    async def _activate(self, cmd: ActivateCommand, api_key: str
                        ) -> tuple[str, str, dict[str, Any]]:
        current = self.directory.config(cmd.tenant_id)
        config = config_for(cmd, current, api_key)
        new = not self._configured(cmd.tenant_id)
        saved = mapping = self.directory.stored_mapping(cmd.tenant_id)
        senior = mapping.senior_manager_id
        if cmd.senior_manager_id is not None and cmd.senior_manager_id != senior:
            if senior is not None:
                raise Refused(f"the tenant's senior manager is user {senior}: change it with "
                              "`employees senior`, not with activate")
            senior = cmd.senior_manager_id  # first-time set-up: checked below, then saved
            mapping = mapping.model_copy(update={"senior_manager_id": senior})
        if senior is None:
            raise Refused("no senior manager: name one (an active CRM manager) with "
                          "--senior-manager, or choose one with `employees senior`")
        async with self.client_for(config) as crm:
            credentials = await check_key(crm, config)
            if cmd.timezone is None and current is None:
                config, zone_note = await account_zone_config(cmd, config, crm, credentials,
                                                              api_key)
            else:
                zone_note = "as named" if cmd.timezone is not None else "kept"
            if self.staff is not None:
                roster = await self.staff.sync(config, crm)
                refusal = link_refusal(roster, senior)
                if refusal is not None:
                    raise Refused(f"the senior manager cannot be used: {refusal}")
            else:
                user = await crm.user(senior)
                if not user.active or not user.isManager:
                    raise Refused(f"the senior manager (user {user.id}) is not an active "
                                  "manager")
            info = await crm.edit_integration_module(module_payload(config, mapping,
                                                                    active=True))
        previous = self.states.get(cmd.tenant_id)
        await self.records.write_config(config)
        if mapping != saved:
            await self.records.write_mapping(mapping)
        health = self._health(cmd.tenant_id)
        data: dict[str, Any] = {"previous_state": None if new else previous.state,
                                "module": info.info,
                                "timezone": {"zone": config.timezone, "source": zone_note}}
        message = f"active (new; time zone {config.timezone}, {zone_note})" if new \
            else f"active (was {previous.state})"
        if cmd.send_after_reactivation:
            # The replay is set up before the lane resumes: from then on the tenant's live
            # events wait for it, so what was parked is delivered first, in order.
            window = calendar_days_window(self.clock(), config.zone)
            await self.start_replay(cmd.tenant_id, cmd.command_id, window)
            health.activated(key_fingerprint(api_key))
            self.lanes.reset(config)
            data["replay_window"] = window.as_dict()
            return "accepted", message + "; replaying today and the two days before", data
        health.activated(key_fingerprint(api_key))
        self.lanes.reset(config)
        return "done", message, data

    async def _deactivate(self, cmd: DeactivateCommand) -> tuple[str, str, dict[str, Any]]:
        config = self.directory.config(cmd.tenant_id)
        note = ""
        if config is not None:
            try:
                async with self.client_for(config) as crm:
                    await crm.edit_integration_module(module_payload(
                        config, self.directory.stored_mapping(cmd.tenant_id), active=False))
            except e.CRMAuthorizationError as exc:
                note = f"; the module could not be switched off in the CRM ({exc.error_msg})"
        self._health(cmd.tenant_id).deactivated(cmd.reason)
        return "done", "deactivated: events are parked until re-activation" + note, {}
