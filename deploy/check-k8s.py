#!/usr/bin/env python3
"""Checks the Kubernetes manifests under deploy/k8s/ without a cluster.

For every overlay in deploy/k8s/overlays/ it:
1. renders it with `kubectl kustomize` (the kubectl named by $KUBECTL, or on PATH);
2. validates every rendered document against its schema: built-in kinds against the Kubernetes
   OpenAPI schemas that the PyPI package kubernetes-validate bundles (strict: unknown fields are
   errors), for each Kubernetes version in K8S_VERSIONS; the operators' kinds (RabbitmqCluster,
   CloudNativePG's Cluster) against the CRD schemas vendored in deploy/schemas/crds/, made strict
   the same way (an object schema with `properties` rejects other fields unless it says
   `x-kubernetes-preserve-unknown-fields`); a kind with no schema is an error;
3. checks what schemas cannot see: every Deployment has liveness, readiness and startup probes,
   requests and limits, runs non-root with a read-only root filesystem, no privilege escalation
   and every capability dropped, and has a PodDisruptionBudget and a HorizontalPodAutoscaler that
   select it; every ConfigMap or Secret a pod refers to is rendered by the overlay or is in the
   overlay's list of those created outside it (by an operator or by hand, EXTERNAL_SECRETS and
   EXTERNAL_CONFIGMAPS);
   every `ICON_*` variable set is one ICON reads (the README's configuration table, plus
   EXTRA_SETTINGS); production images carry a release tag, not `latest`.

    python3 deploy/check-k8s.py        # deploy/check.sh sets up the tools and runs this

Prints one line per overlay and document kind, and one line per problem; exits 1 on any.
"""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"check-k8s: {e.name} is missing; run deploy/check.sh, which installs it")

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
OVERLAYS = DEPLOY / "k8s" / "overlays"
CRD_SCHEMAS = DEPLOY / "schemas" / "crds"

# The oldest Kubernetes the manifests are meant for and the newest kubernetes-validate knows.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# Custom resources and their vendored schemas (deploy/schemas/README.md says where from).
CRDS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmq.com-v1beta1-RabbitmqCluster.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io-v1-Cluster.json",
}

# Secrets a pod refers to that the overlay does not render: written by an operator, or created
# by hand before the first apply (the overlay's kustomization.yaml lists the commands).
OPERATOR_SECRETS = {"icon-rabbitmq-default-user"}
EXTERNAL_SECRETS = {
    "dev": OPERATOR_SECRETS | {"icon-db-app", "icon-smtp"},
    "production": OPERATOR_SECRETS | {"icon-secrets", "icon-database", "icon-fcm", "icon-smtp"},
}
EXTERNAL_CONFIGMAPS = {
    "production": {"icon-database-ca"},
}

# Settings ICON reads that the README's table does not list yet: issue 9's (auth, secrets,
# rate limit, callback policy) and issue 10's (logs, traces).
EXTRA_SETTINGS = {
    "ICON_SECRETS_KEY",
    "ICON_WEBHOOK_SECRET_GRACE",
    "ICON_JWT_JWKS_URL",
    "ICON_JWT_ISSUER",
    "ICON_JWT_AUDIENCE",
    "ICON_JWT_JWKS_MIN_REFRESH",
    "ICON_RATE_LIMIT",
    "ICON_CALLBACK_ALLOW_HTTP",
    "ICON_LOG_FORMAT",
    "ICON_OTLP_ENDPOINT",
}

# Variables that only build another one through $(VAR) expansion.
HELPER_VARS = {"AMQP_USERNAME", "AMQP_PASSWORD"}


def known_settings() -> set[str]:
    """`ICON_*` names from the README's "## Configuration" table, plus EXTRA_SETTINGS."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"^\| `(ICON_[A-Z0-9_]+)`", section, re.MULTILINE))
    if len(names) < 10:
        sys.exit("check-k8s: could not read the README's configuration table")
    return names | EXTRA_SETTINGS


def strict(schema):
    """A copy of a CRD's openAPIV3Schema in which objects reject fields they do not declare, as
    the API server's pruning would silently drop them (kubeconform's -strict does the same)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # The API server fills in metadata's fields; the CRD schema only says it is an object.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def kustomize(overlay: Path) -> list[dict]:
    kubectl = os.environ.get("KUBECTL", "kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed:\n{out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate_schemas(docs: list[dict], crd_validators: dict) -> list[str]:
    problems = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in crd_validators:
            for err in crd_validators[key].iter_errors(doc):
                path = ".".join(str(p) for p in err.absolute_path)
                problems.append(f"{name}: {path}: {err.message}")
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{name}: no schema for {key[0]} {key[1]} (Kubernetes {version})")
                break
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(p) for p in err.absolute_path)
                problems.append(f"{name}: Kubernetes {version}: {path}: {err.message}")
    return problems


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_policy(overlay: str, docs: list[dict], settings: set[str]) -> list[str]:
    problems = []
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    rendered = {
        (d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in ("ConfigMap", "Secret")
    }
    external = EXTERNAL_SECRETS.get(overlay, OPERATOR_SECRETS)

    def pod_specs():
        for kind in ("Deployment", "Job"):
            for d in by_kind.get(kind, []):
                yield kind, d, d["spec"]["template"]["spec"]

    for kind, d, spec in pod_specs():
        name = f"{kind}/{d['metadata']['name']}"
        pod_sc = spec.get("securityContext", {})
        if not pod_sc.get("runAsNonRoot"):
            problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
        refs = []
        for c in spec.get("initContainers", []) + spec["containers"]:
            cname = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem"):
                problems.append(f"{cname}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation", True):
                problems.append(f"{cname}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{cname}: capabilities.drop is not [ALL]")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        problems.append(f"{cname}: no resources.{part}.{r}")
            if kind == "Deployment":
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    if probe not in c:
                        problems.append(f"{cname}: no {probe}")
            image = c.get("image", "")
            if overlay == "production" and (":" not in image or image.endswith(":latest")):
                problems.append(f"{cname}: image {image} has no release tag")
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    refs.append(("ConfigMap", src["configMapRef"]["name"], False))
                if "secretRef" in src:
                    refs.append(("Secret", src["secretRef"]["name"], False))
            for env in c.get("env", []):
                var = env["name"]
                if var not in settings and var not in HELPER_VARS:
                    problems.append(f"{cname}: {var} is not a setting ICON reads")
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    refs.append(("Secret", ref["name"], ref.get("optional", False)))
                if "configMapKeyRef" in source:
                    refs.append(("ConfigMap", source["configMapKeyRef"]["name"], False))
        for vol in spec.get("volumes", []):
            if "secret" in vol:
                refs.append(("Secret", vol["secret"]["secretName"], False))
            if "configMap" in vol:
                refs.append(("ConfigMap", vol["configMap"]["name"], False))
        for ref_kind, ref_name, optional in refs:
            if (ref_kind, ref_name) in rendered:
                continue
            if ref_kind == "Secret" and ref_name in external:
                continue
            if ref_kind == "ConfigMap" and ref_name in EXTERNAL_CONFIGMAPS.get(overlay, set()):
                continue
            hint = " (optional)" if optional else ""
            problems.append(
                f"{name}: refers to {ref_kind} {ref_name}{hint}, which the overlay neither "
                f"renders nor lists as created outside it"
            )

    for d in by_kind.get("ConfigMap", []):
        for var in d.get("data", {}):
            if var.startswith("ICON_") and var not in settings:
                problems.append(f"ConfigMap/{d['metadata']['name']}: {var} is not a setting ICON reads")

    for d in by_kind.get("Deployment", []):
        name = d["metadata"]["name"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/component") == "demo":
            # The retailer simulator of the dev overlay: one throwaway replica, no budget.
            if overlay == "production":
                problems.append(f"Deployment/{name}: a demo component in production")
            continue
        if not any(selects(p["spec"]["selector"], labels) for p in by_kind.get("PodDisruptionBudget", [])):
            problems.append(f"Deployment/{name}: no PodDisruptionBudget selects its pods")
        hpas = [
            h for h in by_kind.get("HorizontalPodAutoscaler", [])
            if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            and h["spec"]["scaleTargetRef"]["name"] == name
        ]
        if not hpas:
            problems.append(f"Deployment/{name}: no HorizontalPodAutoscaler scales it")
        services = [
            s for s in by_kind.get("Service", [])
            if s["spec"].get("selector") and selects({"matchLabels": s["spec"]["selector"]}, labels)
        ]
        if not services:
            problems.append(f"Deployment/{name}: no Service selects its pods")

    for s in by_kind.get("Service", []):
        sel = s["spec"].get("selector")
        if sel and not any(
            selects({"matchLabels": sel}, d["spec"]["template"]["metadata"]["labels"])
            for d in by_kind.get("Deployment", [])
        ) and not s["metadata"]["name"].startswith("icon-rabbitmq"):
            problems.append(f"Service/{s['metadata']['name']}: selects no Deployment's pods")

    if len(by_kind.get("Job", [])) != 1:
        problems.append("expected exactly one Job (the migrations)")
    rabbit = by_kind.get("RabbitmqCluster", [])
    if len(rabbit) != 1:
        problems.append("expected exactly one RabbitmqCluster")
    elif overlay == "production" and rabbit[0]["spec"].get("replicas") != 3:
        problems.append("RabbitmqCluster: production runs three nodes")
    return problems


def main() -> int:
    settings = known_settings()
    crd_validators = {}
    for key, file in CRDS.items():
        schema = strict(json.loads((CRD_SCHEMAS / file).read_text(encoding="utf-8")))
        jsonschema.Draft4Validator.check_schema(schema)
        crd_validators[key] = jsonschema.Draft4Validator(schema)
    overlays = sorted(p for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())
    if not overlays:
        print("check-k8s: no overlays found")
        return 1
    failed = False
    for overlay in overlays:
        print(f"overlay {overlay.name}: rendering with kubectl kustomize", flush=True)
        try:
            docs = kustomize(overlay)
        except RuntimeError as e:
            print(f"  FAIL {e}")
            failed = True
            continue
        kinds: dict[str, int] = {}
        for d in docs:
            kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
        print("  " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), flush=True)
        problems = validate_schemas(docs, crd_validators)
        print(
            f"  schemas: {len(docs)} documents against Kubernetes "
            f"{', '.join(K8S_VERSIONS)} and the vendored CRDs: "
            + ("OK" if not problems else f"{len(problems)} problem(s)"),
            flush=True,
        )
        policy = check_policy(overlay.name, docs, settings)
        print("  policy: " + ("OK" if not policy else f"{len(policy)} problem(s)"), flush=True)
        for p in problems + policy:
            print(f"  FAIL {p}")
        failed |= bool(problems or policy)
    print("k8s manifests: " + ("FAILED" if failed else f"OK ({len(overlays)} overlays)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
