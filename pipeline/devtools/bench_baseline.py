"""The benchmark's baseline: aiokafka consume and each call's CRM requests, no pipeline.

Run as its own process (like the worker), reading a JSON job on stdin and printing its result:
    {"bootstrap": ..., "topic": ..., "group": ..., "expected": N,
     "portals": {"<tenant>": {"url": ..., "key": ..., "manager": <user id>}}}
One shared httpx client; per consumed batch the tenants run concurrently, each tenant's calls in
order. Per call the requests the pipeline makes for its kind, without pacing, ledger or retries:
a lookup (`telephony/manager`) unless an answered call's caller is known, a customer and an
order for a new caller, a task for a missed call; calls uploaded 50 at a time per batch.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

__all__ = ["run_baseline"]


class _Tenant:
    def __init__(self, http: httpx.AsyncClient, spec: dict[str, Any]) -> None:
        self.http = http
        self.base = spec["url"].rstrip("/") + "/api/v5/"
        self.headers = {"X-API-KEY": spec["key"]}
        self.manager = int(spec["manager"])
        self.known: dict[str, int] = {}  # phone -> customer id
        self.requests = 0

    async def _send(self, verb: str, path: str, **kw: Any) -> dict[str, Any]:
        self.requests += 1
        response = await self.http.request(verb, self.base + path, headers=self.headers, **kw)
        body: dict[str, Any] = response.json()
        if not body.get("success"):
            raise RuntimeError(f"{path}: {response.status_code} {body.get('errorMsg')}")
        return body

    async def deliver(self, calls: list[dict[str, Any]]) -> None:
        for call in calls:
            await self._per_call(call)
        for start in range(0, len(calls), 50):
            chunk = calls[start:start + 50]
            await self._send("POST", "telephony/calls/upload", data={"calls": json.dumps([{
                "externalId": c["call_id"], "date": c["started_at"][:19].replace("T", " "),
                "type": c["direction"], "phone": c["client_phone"],
                "result": "answered" if c["status"] == "answered" else "no answer",
                "duration": c.get("talk_seconds", 0), "site": "main"} for c in chunk])})

    async def _per_call(self, call: dict[str, Any]) -> None:
        if call["direction"] != "in":
            return
        phone, missed = call["client_phone"], call["status"] != "answered"
        customer = self.known.get(phone)
        if customer is None or missed:
            found = await self._send("GET", "telephony/manager",
                                     params={"phone": phone, "details": "1"})
            customer = (found.get("customer") or {}).get("id")
        if customer is None:
            ref = f"bl-{call['call_id']}"
            made = await self._send("POST", "customers/create", data={"site": "main",
                                    "customer": json.dumps({"externalId": ref,
                                                            "phones": [{"number": phone}],
                                                            "managerId": self.manager})})
            customer = int(made["id"])
            await self._send("POST", "orders/create", data={"site": "main", "order": json.dumps({
                "externalId": ref, "orderMethod": "phone", "phone": phone,
                "customer": {"id": customer}, "managerId": self.manager})})
        self.known[phone] = int(customer)
        if missed:
            await self._send("POST", "tasks/create", data={"site": "main", "task": json.dumps({
                "text": f"Missed call from {phone}", "performerId": self.manager,
                "customer": {"id": customer}, "phone": phone})})


async def run_baseline(job: dict[str, Any]) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(job["topic"], bootstrap_servers=job["bootstrap"],
                                group_id=job["group"], auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    done = 0
    started: float | None = None
    async with httpx.AsyncClient(timeout=30) as http:
        tenants = {name: _Tenant(http, spec) for name, spec in job["portals"].items()}
        try:
            while done < job["expected"]:
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
                by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
                for records in batch.values():
                    for record in records:
                        call = json.loads(record.value)
                        by_tenant[call["tenant_id"]].append(call)
                if not by_tenant:
                    continue
                if started is None:
                    started = time.monotonic()
                await asyncio.gather(*(tenants[t].deliver(calls)
                                       for t, calls in by_tenant.items()))
                await consumer.commit()
                done += sum(len(c) for c in by_tenant.values())
        finally:
            await consumer.stop()
    seconds = time.monotonic() - (started or time.monotonic())
    requests = sum(t.requests for t in tenants.values())
    return {"calls": done, "seconds": seconds, "requests": requests}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run_baseline(json.load(sys.stdin)))))
