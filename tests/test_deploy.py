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
