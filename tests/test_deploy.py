"""deploy/: what a platform team applies.

What these protect: every YAML and JSON file in deploy/ parses; the alerting rules for the service fire
when they should and not otherwise (`promtool test rules`), and Prometheus' and Alertmanager's own
checkers accept their configs; every metric the rules and the dashboard use is one the service exposes
(a renamed metric would silently blind them); the detector configs shipped there pass `config check`;
the compose stack wires Kafka (KRaft), the detector, Prometheus, Alertmanager and Grafana to files that
exist; the Kubernetes objects agree with each other (selectors, ports, probes on /healthz and /readyz,
secrets the config names) and run non-root.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from detector.config import load_config, parse_config
from detector.metrics import DeliveryMetrics, Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _docs(path: Path) -> list[Any]:
    if path.suffix == ".json":
        return [json.loads(path.read_text(encoding="utf-8"))]
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _k8s() -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for d in _docs(p):
            out[d["kind"]] = d
    return out


def test_every_yaml_and_json_file_parses() -> None:
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    assert len(files) >= 12
    for p in files:
        assert _docs(p), f"{p.relative_to(DEPLOY)} is empty"


def _exposed() -> set[str]:
    reg = CollectorRegistry()
    Metrics(reg)
    DeliveryMetrics(reg, [])
    names = set()
    for fam in reg.collect():
        for s in fam.samples:
            names.add(s.name)
        names.add(fam.name + ("_total" if fam.type == "counter" else ""))
        if fam.type == "histogram":
            names |= {fam.name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(detector_[a-z_]+)\b", expr))


def test_rules_and_dashboard_use_only_metrics_the_service_exposes() -> None:
    exposed = _exposed()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text(encoding="utf-8"))
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "detector.json").read_text(encoding="utf-8"))
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used - exposed == set()
    # the alerts the issue names are there
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"DetectorConsumerLagGrowing", "DetectorDeadLettersRising", "DetectorNoEventsConsumed",
            "DetectorCheckpointsFailing", "DetectorDeliveryDropping"} <= alerts
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
def test_alerting_rules_pass_promtool_unit_tests() -> None:
    assert PROMTOOL is not None
    prom = DEPLOY / "prometheus"
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "rules.test.yml"],
                 ["check", "config", "prometheus.yml"]):
        out = subprocess.run([PROMTOOL, *args], cwd=prom, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool is not installed (prometheus-alertmanager)")
def test_alertmanager_config_passes_amtool() -> None:
    out = subprocess.run(["amtool", "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_shipped_detector_configs_are_valid() -> None:
    compose_cfg = load_config(DEPLOY / "compose" / "detector.toml")
    assert compose_cfg.kafka.bootstrap_servers == ["kafka:9092"]
    assert [r.kind for r in compose_cfg.receivers] == ["alertmanager"]
    k8s_cfg = parse_config(_k8s()["ConfigMap"]["data"]["config.toml"], "toml")
    assert k8s_cfg.kafka.security.sasl_password_env == "DETECTOR_KAFKA_PASSWORD"


def test_compose_wires_kafka_kraft_detector_prometheus_alertmanager_grafana() -> None:
    compose_dir = DEPLOY / "compose"
    (compose,) = _docs(compose_dir / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"kafka", "detector", "prometheus", "alertmanager", "grafana"}
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"] and "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka_env
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            assert (compose_dir / src).exists(), f"{name} mounts {src}, which is not in the repo"
    build = services["detector"]["build"]
    assert (compose_dir / build["context"] / build["dockerfile"]).is_file()
    cfg = tomllib.loads((compose_dir / "detector.toml").read_text(encoding="utf-8"))
    host = cfg["kafka"]["bootstrap_servers"][0].split(":")[0]
    assert host in services and cfg["receivers"][0]["url"].split("//")[1].split(":")[0] in services
    (prom,) = _docs(DEPLOY / "prometheus" / "prometheus.yml")
    target = prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == f"detector:{cfg['metrics']['port']}"


def test_dockerfile_is_slim_and_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert all("slim" in line for line in text.splitlines() if line.startswith("FROM"))
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER")]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^ENTRYPOINT \[\"detector\"\]", text, re.M)
    assert re.search(r"^COPY .*\bsetup\.py\b", text, re.M)  # without it the image runs the sources, uncompiled


def test_kubernetes_objects_agree() -> None:
    objs = _k8s()
    assert set(objs) == {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "Kustomization"}
    dep = objs["Deployment"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objs["Service"]["spec"]["selector"].items() <= labels.items()
    assert objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    cfg = parse_config(objs["ConfigMap"]["data"]["config.toml"], "toml")
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    assert port == cfg.metrics.port
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"]
    # every environment variable the config reads a secret from is set from the Secret
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    wanted = {cfg.kafka.security.sasl_password_env} | {r.secret_env for r in cfg.receivers if r.secret_env}
    assert wanted <= set(env)
    secret_keys = set(objs["Secret"]["stringData"])
    assert all(ref["name"] == objs["Secret"]["metadata"]["name"] and ref["key"] in secret_keys
               for ref in env.values())
    assert dep["spec"]["replicas"] <= cfg.kafka.partitions  # an instance without a partition is never ready
    files = set(objs["Kustomization"]["resources"])
    assert files == {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
