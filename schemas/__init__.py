"""Pydantic models at the edges: the call event contract, tenant config, retailCRM payloads."""

from __future__ import annotations

from schemas.call_event import CallDirection, CallEvent, CallStage, CallStatus, Employee, Utm
from schemas.integration import IntegrationConfig, IntegrationOptions, LeadPolicy, OwnNumbers
from schemas.mapping import EmployeeLink, EmployeeMapping

__all__ = [
    "CallDirection",
    "CallEvent",
    "CallStage",
    "CallStatus",
    "Employee",
    "EmployeeLink",
    "EmployeeMapping",
    "IntegrationConfig",
    "IntegrationOptions",
    "LeadPolicy",
    "OwnNumbers",
    "Utm",
]
