"""The Kubernetes manifests of deploy/kubernetes/, checked against the Kubernetes schema (strict:
no unknown field) and for what the serving design needs of them."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO

MANIFESTS = REPO / "deploy" / "kubernetes"
VERSION = "1.37"


def load(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / name).read_text())


@pytest.mark.parametrize("name", ["deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml"])
def test_each_manifest_is_valid_kubernetes(name):
    import kubernetes_validate

    kubernetes_validate.validate(load(name), VERSION, strict=True)   # raises on an invalid document


def test_the_manifests_fit_the_serving_design():
    deployment, service = load("deployment.yaml"), load("service.yaml")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["grpc"]["port"] == container["livenessProbe"]["grpc"]["port"] == 50051
    assert "--max-connection-age" in container["args"] and "--store" in container["args"]
    assert service["spec"]["clusterIP"] == "None"                     # headless: DNS lists every replica
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector == load("pdb.yaml")["spec"]["selector"]["matchLabels"]
    assert load("hpa.yaml")["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert load("pdb.yaml")["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_every_worker_s_metrics_are_reachable_from_the_cluster():
    container = load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--metrics-address") + 1] == "0.0.0.0"   # not loopback: Prometheus scrapes the pod IP
    workers = int(args[args.index("--workers") + 1])
    exposed = {port["containerPort"] for port in container["ports"]}
    assert {9100 + worker for worker in range(workers)} <= exposed
    assert {port["port"] for port in load("service.yaml")["spec"]["ports"]} >= exposed
