"""Offline checks of the Kubernetes manifests (deploy/k8s): render, validate, enforce policy.

Every overlay is rendered with kustomize (``kubectl kustomize`` if kubectl is on PATH, else a
``kustomize`` built once from the Go module proxy into the cache directory), every rendered
object is validated against the Kubernetes 1.30 schemas shipped by the ``kubernetes-validate``
package (no network), and :func:`policy_violations` reads each object for what the deployment
promises: limits, probes, a non-root securityContext, no literal Secret, real ``tomstream``
subcommands. The negative tests break a rendered object on purpose and expect each rule to fire.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import IN_CI
from test_deploy_files import SERVICES, CommandLineError, resolve_tomstream_command

from tomstream.config import ENV_PREFIX, Settings
from tomstream.services.spectra_api.config import ApiSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "spin")
KUBERNETES_VERSION = "1.30.0"
KUSTOMIZE_VERSION = "v5.5.0"
KUSTOMIZE_MODULE = f"sigs.k8s.io/kustomize/kustomize/v5@{KUSTOMIZE_VERSION}"
IMAGE = "tomstream"  # the image's name in base/; overlays say where it comes from
METRICS_PORT = 9100

WORKLOADS = {"Deployment", "StatefulSet", "Job", "CronJob"}
LONG_RUNNING = {"Deployment", "StatefulSet"}
# Containers whose image must write to its own filesystem, and why (readOnlyRootFilesystem).
WRITABLE_ROOT = {"kafka": "apache/kafka writes its server.properties under /opt/kafka/config"}
DEPLOYMENTS = SERVICES  # the same services as docker-compose.yaml, the same subcommands
CONSUMERS = set(DEPLOYMENTS) - {"api"}


# ----------------------------------------------------------------------------------- rendering


def _cache_dir() -> Path:
    default = Path.home() / ".cache" / "tomstream"
    return Path(os.environ.get(f"{ENV_PREFIX}CACHE_DIR", default)).expanduser()


def _kubectl_renders() -> bool:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return False
    probe = subprocess.run(
        [kubectl, "kustomize", "--help"], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0


@cache
def renderer() -> list[str]:
    """The command that renders a kustomization directory (the directory is appended).

    ``kubectl kustomize`` when kubectl is there; else ``kustomize`` from the cache directory,
    built there with ``go install`` the first time (about a minute, from the Go module proxy).
    Under CI a machine with neither kubectl nor Go fails the run; elsewhere the tests skip.
    """
    if _kubectl_renders():
        return ["kubectl", "kustomize"]
    bin_dir = _cache_dir() / f"kustomize-{KUSTOMIZE_VERSION}"
    kustomize = bin_dir / "kustomize"
    if not kustomize.exists():
        go = shutil.which("go")
        if go is None:
            message = "no kustomize renderer: install kubectl, or Go to build kustomize"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        env = {**os.environ, "GOBIN": str(bin_dir), "GOFLAGS": "-mod=mod"}
        subprocess.run([go, "install", KUSTOMIZE_MODULE], env=env, check=True, timeout=900)
    return [str(kustomize), "build"]


@cache
def render(path: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [*renderer(), str(path)], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, f"kustomize {path}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The objects of an overlay, as fresh copies (tests may change them)."""
    return copy.deepcopy(list(render(K8S / "overlays" / overlay)))


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    if obj["kind"] in WORKLOADS:
        return obj["spec"]["template"]
    return None


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    template = pod_template(obj)
    if template is not None:
        spec = template["spec"]
        yield from spec.get("initContainers", [])
        yield from spec["containers"]


def is_tomstream(container: dict[str, Any]) -> bool:
    repository = container["image"].rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return repository == IMAGE


# -------------------------------------------------------------------------------------- policy


def policy_violations(obj: dict[str, Any]) -> list[str]:
    """What in one rendered object breaks the deployment's rules (empty: nothing)."""
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["kind"] == "Secret":
        literal = [key for key in ("data", "stringData") if obj.get(key)]
        return [f"{where}: literal {key} (reference Secrets, never ship them)" for key in literal]
    template = pod_template(obj)
    if template is None:
        return []
    problems = [f"{where}: {problem}" for problem in _pod_problems(template["spec"])]
    for container in containers(obj):
        at = f"{where} container {container['name']}"
        problems += [f"{at}: {p}" for p in _container_problems(container, obj["kind"])]
    return problems


def _pod_problems(spec: dict[str, Any]) -> list[str]:
    context = spec.get("securityContext") or {}
    problems = []
    if context.get("runAsNonRoot") is not True:
        problems.append("pod securityContext.runAsNonRoot is not true")
    if context.get("runAsUser") in (None, 0):
        problems.append("pod securityContext.runAsUser is not a non-root uid")
    return problems


def _container_problems(container: dict[str, Any], kind: str) -> list[str]:
    problems = []
    resources = container.get("resources") or {}
    for bound in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(bound) or {})
        if missing:
            problems.append(f"no {bound} for {sorted(missing)}")
    context = container.get("securityContext") or {}
    if context.get("runAsNonRoot") is not True:
        problems.append("securityContext.runAsNonRoot is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("securityContext.allowPrivilegeEscalation is not false")
    if context.get("privileged"):
        problems.append("privileged")
    if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities do not drop ALL")
    if context.get("readOnlyRootFilesystem") is not True and container["name"] not in WRITABLE_ROOT:
        problems.append("root filesystem is writable (readOnlyRootFilesystem)")
    if kind in LONG_RUNNING:
        for probe in ("livenessProbe", "readinessProbe"):
            if not container.get(probe):
                problems.append(f"no {probe}")
    if is_tomstream(container):
        problems += _tomstream_problems(container, kind)
    return problems


def _tomstream_problems(container: dict[str, Any], kind: str) -> list[str]:
    """A tomstream container runs a real subcommand, and serves the health endpoints."""
    problems = []
    if container.get("command") not in (None, ["tomstream"]):
        problems.append(f"command {container['command']} replaces the image's `tomstream`")
    try:
        resolve_tomstream_command([str(arg) for arg in container.get("args") or []])
    except CommandLineError as exc:
        problems.append(str(exc))
    if kind in LONG_RUNNING:
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
            if got != path:
                problems.append(f"{probe} asks {got!r}, not {path}")
    return problems


# ------------------------------------------------------------------------ render and validate


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_service(overlay: str) -> None:
    objects = rendered(overlay)
    for name, path in DEPLOYMENTS.items():
        (container,) = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert resolve_tomstream_command(container["args"]).path == path
    job = find(objects, "Job", "migrate")
    assert [c["args"] for c in containers(job)] == [["db", "migrate"]]
    crons = {
        resolve_tomstream_command(c["args"]).path: c["args"]
        for o in objects
        if o["kind"] == "CronJob"
        for c in containers(o)
    }
    assert "--added-days" in crons[("sim", "send")], "the daily alert stream"
    assert ("cadence", "sweep") in crons
    assert {o["kind"] for o in objects} >= {"ConfigMap", "Service", "Ingress"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_kubernetes_1_30(overlay: str) -> None:
    errors = []
    for obj in rendered(overlay):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.absolute_path))
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} {path}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_validator_uses_the_offline_1_30_schemas_and_rejects_bad_objects() -> None:
    deployment = find(rendered("dev"), "Deployment", "ingest")
    assert kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True) == "1.30"
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    typo = find(rendered("dev"), "Deployment", "ingest")
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


# ---------------------------------------------------------------------------------- policies


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_follows_the_policy(overlay: str) -> None:
    problems = [problem for obj in rendered(overlay) for problem in policy_violations(obj)]
    assert not problems, "\n".join(problems)


def _break_probe(container: dict[str, Any]) -> None:
    del container["livenessProbe"]


def _break_probe_path(container: dict[str, Any]) -> None:
    container["readinessProbe"]["httpGet"]["path"] = "/metrics"


def _break_limits(container: dict[str, Any]) -> None:
    del container["resources"]["limits"]


def _break_non_root(container: dict[str, Any]) -> None:
    container["securityContext"]["runAsNonRoot"] = False


def _break_escalation(container: dict[str, Any]) -> None:
    container["securityContext"]["allowPrivilegeEscalation"] = True


def _break_capabilities(container: dict[str, Any]) -> None:
    container["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def _break_read_only(container: dict[str, Any]) -> None:
    container["securityContext"]["readOnlyRootFilesystem"] = False


def _break_subcommand(container: dict[str, Any]) -> None:
    container["args"] = ["ingets"]


def _break_option(container: dict[str, Any]) -> None:
    container["args"] = ["ingest", "--batch-size", "0"]


def _break_command(container: dict[str, Any]) -> None:
    container["command"] = ["sh", "-c"]


@pytest.mark.parametrize(
    ("breaking", "expected"),
    [
        (_break_probe, "no livenessProbe"),
        (_break_probe_path, "readinessProbe asks '/metrics'"),
        (_break_limits, "no limits"),
        (_break_non_root, "runAsNonRoot is not true"),
        (_break_escalation, "allowPrivilegeEscalation is not false"),
        (_break_capabilities, "do not drop ALL"),
        (_break_read_only, "readOnlyRootFilesystem"),
        (_break_subcommand, "no subcommand 'ingets'"),
        (_break_option, "--batch-size"),
        (_break_command, "replaces the image's `tomstream`"),
    ],
)
def test_policy_catches_a_broken_container(breaking: Any, expected: str) -> None:
    deployment = find(rendered("dev"), "Deployment", "ingest")
    assert policy_violations(deployment) == []
    breaking(deployment["spec"]["template"]["spec"]["containers"][0])
    problems = policy_violations(deployment)
    assert any(expected in problem for problem in problems), problems


def test_policy_catches_a_root_pod_and_a_broken_cronjob() -> None:
    job = find(rendered("dev"), "Job", "migrate")
    job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    assert any("runAsUser" in problem for problem in policy_violations(job))
    cron = find(rendered("dev"), "CronJob", "sim-send")
    del next(containers(cron))["resources"]["requests"]
    assert any("no requests" in problem for problem in policy_violations(cron))


@pytest.mark.parametrize("field", ["data", "stringData"])
def test_policy_rejects_a_secret_with_literal_values(field: str) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tomstream-postgres"}}
    assert policy_violations(secret) == []
    secret[field] = {"dsn": "cG9zdGdyZXNxbDovL3g="}
    assert policy_violations(secret) == [
        f"Secret/tomstream-postgres: literal {field} (reference Secrets, never ship them)"
    ]


# ------------------------------------------------------------------- what the manifests promise


def _referenced_secrets(objects: list[dict[str, Any]]) -> set[str]:
    """The Secrets named by any env, envFrom, volume, pull secret or Ingress TLS."""
    found: set[str] = set()
    for obj in objects:
        if obj["kind"] == "Ingress":
            found |= {tls["secretName"] for tls in obj["spec"].get("tls", [])}
        template = pod_template(obj)
        if template is None:
            continue
        found |= {pull["name"] for pull in template["spec"].get("imagePullSecrets", [])}
        volumes = template["spec"].get("volumes", [])
        found |= {v["secret"]["secretName"] for v in volumes if "secret" in v}
        for container in containers(obj):
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    found.add(ref["name"])
            found |= {
                s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s
            }
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_shipped_and_documented(overlay: str) -> None:
    objects = rendered(overlay)
    assert not [o for o in objects if o["kind"] == "Secret"], "Secrets are the operator's"
    readme = (K8S / "README.md").read_text()
    for name in _referenced_secrets(objects):
        created = (f"secret {kind} {name}" for kind in ("generic", "tls", "docker-registry"))
        assert any(line in readme for line in created), (
            f"deploy/k8s/README.md never shows how to create the Secret {name}"
        )
    assert {"tomstream-postgres", "tomstream-mongodb", "tomstream-kafka", "tomstream-api"} <= set(
        _referenced_secrets(objects)
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_maps_exist_and_name_real_settings(overlay: str) -> None:
    objects = rendered(overlay)
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    for obj in objects:
        for container in containers(obj):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
    known = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    known |= {f"{ENV_PREFIX}API_{field.upper()}" for field in ApiSettings.model_fields}
    known.add(f"{ENV_PREFIX}LOG_FORMAT")
    unknown = set(config_maps["tomstream-settings"]["data"]) - known
    assert not unknown, f"{sorted(unknown)} are not tomstream settings (typo?)"
    assert config_maps["tomstream-settings"]["data"]["TOMSTREAM_METRICS_PORT"] == str(METRICS_PORT)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_are_annotated_for_prometheus_on_a_served_port(overlay: str) -> None:
    for obj in rendered(overlay):
        if obj["kind"] != "Deployment":
            continue
        annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", obj["metadata"]["name"]
        assert annotations.get("prometheus.io/path") == "/metrics"
        ports = {p["containerPort"] for c in containers(obj) for p in c.get("ports", [])}
        assert int(annotations["prometheus.io/port"]) in ports, obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_have_disruption_budgets(overlay: str) -> None:
    objects = rendered(overlay)
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for name in CONSUMERS:
        labels = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert covering, f"no PodDisruptionBudget selects {name}"
        # maxUnavailable, not minAvailable: a one-replica consumer must not block a node drain.
        assert all("maxUnavailable" in b["spec"] for b in covering)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_is_reachable_through_service_and_ingress(overlay: str) -> None:
    objects = rendered(overlay)
    service = find(objects, "Service", "api")
    api = find(objects, "Deployment", "api")
    assert (
        service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    )
    port_names = {p["name"] for c in containers(api) for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    ingress = find(objects, "Ingress", "api")
    assert ingress["spec"]["ingressClassName"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] and rule["http"]["paths"][0]["backend"]["service"]["name"] == "api"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nothing_that_kubectl_delete_removes_holds_data(overlay: str) -> None:
    """`kubectl delete -k` deletes what the overlay renders: never a claim or a namespace."""
    objects = rendered(overlay)
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"PersistentVolumeClaim", "PersistentVolume", "Namespace"}, kinds
    for obj in objects:
        if obj["kind"] == "StatefulSet":
            retention = obj["spec"].get("persistentVolumeClaimRetentionPolicy", {})
            assert retention == {"whenDeleted": "Retain", "whenScaled": "Retain"}
            assert obj["spec"]["volumeClaimTemplates"], obj["metadata"]["name"]


def test_dev_runs_kafka_postgres_and_mongo_in_the_cluster() -> None:
    objects = rendered("dev")
    images = {
        find(objects, "StatefulSet", name)["spec"]["template"]["spec"]["containers"][0]["image"]
        for name in ("kafka", "postgres", "mongo")
    }
    assert "apache/kafka:3.9.1" in images
    kafka = find(objects, "StatefulSet", "kafka")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in kafka["env"]}
    assert "controller" in env["KAFKA_PROCESS_ROLES"], "KRaft: the node is its own controller"
    settings = find(objects, "ConfigMap", "tomstream-settings")["data"]
    host, _, port = settings["TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS"].partition(":")
    assert env["KAFKA_ADVERTISED_LISTENERS"].endswith(f"//{host}:{port}")
    assert find(objects, "Service", host)["spec"]["ports"][0]["port"] == int(port)


def test_spin_runs_as_the_nersc_user_from_the_named_registry() -> None:
    kustomization = yaml.safe_load((K8S / "overlays" / "spin" / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    registry = f"{image['newName']}:{image['newTag']}"
    assert image["name"] == IMAGE and "/" in image["newName"], "images from a named registry"
    objects = rendered("spin")
    templates = [(o, pod_template(o)) for o in objects if pod_template(o) is not None]
    assert templates
    for obj, template in templates:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        annotations = template["metadata"].get("annotations", {})
        context = template["spec"]["securityContext"]
        assert annotations.get("nersc.gov/uid") == str(context["runAsUser"]), where
        assert annotations.get("nersc.gov/gid") == str(context["runAsGroup"]), where
        assert annotations.get("nersc.gov/username"), where
        for container in containers(obj):
            assert container["image"] == registry, f"{where}: {container['image']}"
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    ingress = find(objects, "Ingress", "api")
    host = ingress["spec"]["rules"][0]["host"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert host.endswith(".svc.spin.nersc.org")
    assert ingress["spec"]["tls"][0]["hosts"] == [host]
