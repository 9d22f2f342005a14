"""What SREs run: alert rules (promtool), the dashboard, compose and Kubernetes manifests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import pipeline.observability.metrics  # noqa: F401 - registers every callsync metric
from pipeline.config import Settings
from pipeline.observability.metrics import INGEST_REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bcallsync_[a-z0-9_]+")


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: apt-get install prometheus docker-compose (deploy/dev does)"
    return found


def exported_names() -> set[str]:
    """What the worker's registry and the HTTP ingest's export."""
    names: set[str] = set()
    for family in [*REGISTRY.collect(), *INGEST_REGISTRY.collect()]:
        if family.name.startswith("callsync_"):
            names |= {family.name + suffix for suffix in
                      ("", "_total", "_bucket", "_count", "_sum", "_created")}
    return names


def setting_variables() -> set[str]:
    found: set[str] = set()

    def walk(model: Any, prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, f"{prefix}{name.upper()}__")
            else:
                found.add(f"{prefix}{name.upper()}")

    walk(Settings, "CALLSYNC_")
    return found


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    promtool = tool("promtool")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        run = subprocess.run([promtool, *args], cwd=DEPLOY / "prometheus",  # noqa: S603
                             capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_and_alerts_use_only_metrics_callsync_exports() -> None:
    exported = exported_names()
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "callsync.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert len(used) >= 12
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_compose_file_is_valid_and_names_real_settings() -> None:
    compose = tool("docker-compose")
    env = {**os.environ, "CALLSYNC_OPERATOR_KEY": "static-check",
           "CALLSYNC_SECRETS__KEYS": "k1:" + "A" * 43 + "="}
    run = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"),  # noqa: S603
                          "config", "-q"], capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"kafka", "worker-1", "worker-2", "prometheus", "grafana", "crm-double"} <= set(
        spec["services"])
    assert spec["services"]["crm-double"]["profiles"] == ["demo"]
    names = set(spec["services"]["worker-1"]["environment"])
    assert names <= setting_variables(), names - setting_variables()


def test_kubernetes_manifests_fit_the_worker() -> None:
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in (DEPLOY / "k8s").glob("*.yaml")}
    assert {"deployment", "configmap", "secret", "service", "servicemonitor", "pdb"} <= set(docs)
    assert set(docs["configmap"]["data"]) <= setting_variables()
    assert set(docs["secret"]["stringData"]) == {"CALLSYNC_OPERATOR_KEY",
                                                 "CALLSYNC_SECRETS__KEYS"}
    container = docs["deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert docs["deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    kustomized = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert {f"{name}.yaml" for name in docs if name != "kustomization"} == set(
        kustomized["resources"])


@pytest.mark.parametrize("name", ["CALLSYNC_KAFKA__BOOTSTRAP_SERVERS", "CALLSYNC_OPERATOR_KEY",
                                  "CALLSYNC_TOPICS__PARTITIONS", "CALLSYNC_SECRETS__KEYS"])
def test_setting_variables_are_derived_from_the_model(name: str) -> None:
    assert name in setting_variables()
