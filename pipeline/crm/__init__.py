"""The retailCRM v5 client: requests, typed responses, the exception tree, per-key pacing."""

from __future__ import annotations

from pipeline.crm.client import MAX_CALLS_PER_UPLOAD, RetailCRMClient
from pipeline.crm.errors import *  # noqa: F403 - the exception tree is part of this package's API
from pipeline.crm.errors import __all__ as _errors

__all__ = ["MAX_CALLS_PER_UPLOAD", "RetailCRMClient", *_errors]
