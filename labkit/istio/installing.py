"""``istioctl install -f`` for every backend: the one place where real and embedded clusters differ.

A notebook cell says ``install("cluster1", "cluster1.yaml")`` whatever runs behind the context
(DESIGN decision 1). On a real cluster that is ``istioctl install -y --context … -f …`` with its output
streamed into the cell. On an embedded cluster there is no istioctl image to run, so labkit renders
what istioctl would apply (:mod:`labkit.istio.rendering`) and applies it with ``labkit.kube.apply``,
after refusing, by name, every IstioOperator field the rendering does not implement.

The mesh CA follows istiod's own rule: the plugged-in ``cacerts`` Secret when there is one (seed 001's
labs create it first), else ``istio-ca-secret``, which istiod would create self-signed at start-up;
here ``install`` creates it, because the injector webhook needs the root in its ``caBundle`` before the
emulated istiod first serves it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from labkit import kube
from labkit.core.contract import ISTIOD_CA_PROBLEM as CA_PROBLEM
from labkit.core.wire import Obj
from labkit.errors import LabkitError, ManifestError, MeshError, ToolNotFoundError
from labkit.istio.operator import InstallSettings, check_operator, settings_of
from labkit.istio.rendering import (
    RenderedInstall,
    ca_secret_object,
    namespace_object,
    render,
    validating_webhook_names,
)
from labkit.pki import new_root

NETWORK_LABEL = "topology.istio.io/network"


@dataclass(frozen=True)
class InstallResult:
    """What one install did.

    Args:
        context: the kubeconfig context's name.
        embedded: whether it was rendered for an embedded cluster (else istioctl ran).
        components: the istioctl components installed (``Base``, ``Pilot``, ``IngressGateways`` …).
        objects: the objects applied, with what happened to each (embedded clusters only).
        output: what was printed (istioctl's output on real clusters).
    """

    context: str
    embedded: bool
    components: tuple[str, ...]
    objects: tuple[kube.AppliedObject, ...]
    output: str

    def __str__(self) -> str:
        return self.output


def load_operator(file: Path | str | Obj) -> tuple[Obj, str]:
    """The IstioOperator of a file, YAML text or dict, and a name for messages.

    Raises:
        ManifestError: not valid YAML, or not exactly one IstioOperator.
    """
    if isinstance(file, dict):
        return file, "IstioOperator"
    documents = kube.load_documents(file, require_names=False)
    origin = documents[0].origin if documents else str(file)
    operators = [d.body for d in documents if d.kind == "IstioOperator"]
    if len(operators) != 1 or len(documents) != 1:
        kinds = ", ".join(d.kind for d in documents) or "nothing"
        raise ManifestError(f"{origin}: expected exactly one IstioOperator (install.istio.io/v1alpha1), found "
                            f"{kinds}; give install() one IstioOperator file at a time, as istioctl install -f")
    return operators[0], origin


def install(
    context: kube.ContextRef,
    file: Path | str | Obj,
    *,
    wait: bool = True,
    timeout: float = 300.0,
    quiet: bool = False,
) -> InstallResult:
    """Install Istio from an IstioOperator, with istioctl on real clusters and rendered on embedded ones.

    Args:
        context: the kubeconfig context (a name, or a :class:`~labkit.kube.Context` with its kubeconfig).
        file: an IstioOperator file, its YAML text, or the object.
        wait: wait until istiod and the gateways are ready (as istioctl does).
        timeout: seconds to wait for readiness (embedded) or for istioctl to finish (real).
        quiet: print nothing (the result's ``output`` still has it).

    Raises:
        ManifestError: the file is not one IstioOperator, or (embedded) uses fields that cannot be installed
            there; every such field is listed.
        ToolNotFoundError: (real) istioctl is not installed.
        WaitTimeoutError: istiod or a gateway did not become ready within ``timeout``.
        MeshError: istiod runs but cannot become ready because its plugged-in CA is unusable (raised as soon as
            its log says so, quoting the file and the reason).
        KubeApiError: the API server refused a write.
    """
    operator, origin = load_operator(file)
    if not kube.is_embedded(context):
        return _istioctl(context, file, operator, timeout=timeout, quiet=quiet)
    check_operator(operator, origin)
    settings = _with_injector_cluster(context, operator, settings_of(operator))
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if not quiet:
            print(line, flush=True)

    namespace, exists = _namespace_to_apply(context, settings)
    root_pem, ca_secret = _mesh_root(context, settings, exists)
    rendered = render(settings, ca_root_pem=root_pem, namespace=namespace, ca_secret=ca_secret,
                      failure_policies=_live_failure_policies(context, settings))
    applied = _apply_groups(context, settings, rendered, say, wait=wait, timeout=timeout)
    say("✔ Installation complete")
    return InstallResult(str(context), True, settings.components, tuple(applied), "\n".join(lines))


def _with_injector_cluster(context: kube.ContextRef, operator: Obj, settings: InstallSettings) -> InstallSettings:
    """A gateway-only install takes its cluster's name from the istiod already there, when it names none.

    Istio's gateways use the ``gateway`` injection template: the cluster's istiod injects their proxy, with
    its own ``values.global.multiCluster.clusterName`` as ``ISTIO_META_CLUSTER_ID``. labkit renders gateways
    whole, so it reads that value from the ``istio-sidecar-injector`` ConfigMap the control plane installed.
    """
    named = (((operator.get("spec") or {}).get("values") or {}).get("global") or {}).get("multiCluster") or {}
    if settings.pilot or named.get("clusterName"):
        return settings
    injector = kube.get_object(context, "v1", "ConfigMap", "istio-sidecar-injector", settings.namespace)
    try:
        values = json.loads(((injector or {}).get("data") or {}).get("values") or "{}")
    except ValueError:
        return settings
    cluster = ((values.get("global") or {}).get("multiCluster") or {}).get("clusterName")
    return dataclasses.replace(settings, cluster_name=str(cluster)) if cluster else settings


def render_operator(operator: Obj | Path | str, *, ca_root_pem: str = "") -> RenderedInstall:
    """The objects an install would apply on an embedded cluster, without a cluster (for tests and curiosity).

    Args:
        operator: an IstioOperator (object, file or YAML text).
        ca_root_pem: the mesh root for the webhook's caBundle.

    Raises:
        ManifestError: unsupported fields, all listed.
    """
    body, origin = load_operator(operator)
    check_operator(body, origin)
    settings = settings_of(body)
    # As on a cluster where the control-plane namespace does not exist yet.
    return render(settings, ca_root_pem=ca_root_pem, namespace=namespace_object(settings.namespace, settings.network))


def _apply_groups(context: kube.ContextRef, settings: InstallSettings, rendered: RenderedInstall,
                  say: Callable[[str], None], *, wait: bool, timeout: float) -> list[kube.AppliedObject]:
    applied: list[kube.AppliedObject] = []
    ns = settings.namespace
    if rendered.core:
        applied += kube.apply(context, list(rendered.core))
        say("✔ Istio core installed ⛵️")
    if rendered.istiod:
        applied += kube.apply(context, list(rendered.istiod))
        if wait and settings.pilot:
            _wait_for_istiod(context, ns, timeout=timeout)
        say("✔ Istiod installed 🧠" if settings.pilot else "✔ Istiod remote installed 🧠")
    if rendered.gateways:
        applied += kube.apply(context, list(rendered.gateways))
        if wait:
            for gateway in settings.gateways:
                kube.wait_ready(context, gateway.namespace, f"deploy/{gateway.name}", timeout=timeout)
        say("✔ Ingress gateways installed 🛬")
    return applied


def _live_failure_policies(context: kube.ContextRef, settings: InstallSettings) -> dict[str, str | None]:
    """For each validating webhook configuration that exists: its ``failurePolicy`` to keep on a second install,
    or None once istiod owns it (it switched the policy to ``Fail``; server-side apply then leaves the field to
    its owner, as Helm's upgrade leaves istiod's patch alone)."""
    if not settings.pilot:
        return {}
    policies: dict[str, str | None] = {}
    for name in validating_webhook_names(settings):
        live = kube.get_object(context, "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", name)
        hooks = (live or {}).get("webhooks") or []
        if not hooks:
            continue
        owners = {entry.get("manager") for entry in (live or {}).get("metadata", {}).get("managedFields") or []
                  if '"f:failurePolicy"' in json.dumps(entry.get("fieldsV1") or {})}
        policies[name] = None if owners - {kube.FIELD_MANAGER} else hooks[0].get("failurePolicy") or "Fail"
    return policies


_LOOK_EVERY = 2.0  # seconds between looks at istiod's log while it is not ready


def _wait_for_istiod(context: kube.ContextRef, namespace: str, *, timeout: float) -> None:
    """Wait for istiod; when it is running but not Ready because of its CA, fail at once quoting its log."""
    waiting: list[str] = []
    look_at = time.monotonic() + _LOOK_EVERY

    def ready() -> bool:
        nonlocal look_at
        waiting[:] = kube.not_ready(context, namespace, "deploy/istiod")
        if waiting and time.monotonic() >= look_at:
            reason = _istiod_ca_problem(context, namespace)
            if reason:
                raise MeshError(f"istiod in {context} is not ready: {reason} Replace the cacerts "
                                f"Secret (kubectl delete secret cacerts -n {namespace}, then labkit.istio.plug_in_ca "
                                f"with a good folder) and restart istiod (kubectl delete pod -n {namespace} "
                                f"-l app=istiod).")
            look_at = time.monotonic() + _LOOK_EVERY
        return not waiting

    kube.poll(ready, timeout=timeout, what=f"deploy/istiod in {context}/{namespace}", max_interval=0.25,
              explain=lambda _: [*waiting, f"look closer: kubectl -n {namespace} logs deploy/istiod"])


def _istiod_ca_problem(context: kube.ContextRef, namespace: str) -> str:
    for pod in kube.pods(context, namespace, "app=istiod"):
        if pod.phase != "Running":
            continue
        try:
            text = kube.logs(context, namespace, pod.name, container="discovery", tail=200)
        except LabkitError:
            continue
        lines = [line for line in text.splitlines() if CA_PROBLEM in line]
        if lines:
            return lines[-1][lines[-1].index(CA_PROBLEM):]
    return ""


def _namespace_to_apply(context: kube.ContextRef, settings: InstallSettings) -> tuple[Obj | None, bool]:
    """The Namespace object to apply (None: leave it alone), and whether the namespace exists already."""
    # Label the namespace with the network only where nobody did (the labs label it by hand first), and
    # never re-apply a namespace labkit did not label: a server-side apply that omits a label its
    # manager owns removes it.
    live = kube.get_object(context, "v1", "Namespace", settings.namespace)
    if live is None:
        return namespace_object(settings.namespace, settings.network), False
    labels = (live.get("metadata") or {}).get("labels") or {}
    if settings.network and NETWORK_LABEL not in labels:
        return namespace_object(settings.namespace, settings.network), True
    return None, True


def _mesh_root(context: kube.ContextRef, settings: InstallSettings, namespace_exists: bool) -> tuple[str, Obj | None]:
    """The mesh root PEM for the webhook, and the ``istio-ca-secret`` to create (None if one exists)."""
    if not (settings.pilot or settings.remote):
        return "", None
    ns = settings.namespace
    if namespace_exists:
        for name, key in (("cacerts", "root-cert.pem"), ("istio-ca-secret", "ca-cert.pem")):
            secret = kube.get_object(context, "v1", "Secret", name, ns)
            data = (secret or {}).get("data") or {}
            if data.get(key):
                return base64.b64decode(data[key]).decode(), None
    if settings.remote:
        # A remote cluster's injector is served by the primary's istiod, which patches the caBundle with
        # its own root; a CA made here would be a different mesh.
        return "", None
    root = new_root(organization=settings.trust_domain, common_name="istiod self-signed root", key="rsa-2048")
    return root.cert_pem, ca_secret_object(ns, root.cert_pem, root.key_pem)


def _istioctl(context: kube.ContextRef, file: Path | str | Obj, operator: Obj, *, timeout: float,
              quiet: bool) -> InstallResult:
    context, kubeconfig = kube.resolve(context)
    istioctl = shutil.which("istioctl")
    if istioctl is None:
        raise ToolNotFoundError("istioctl", f"Context {context!r} is a real cluster, where labkit installs Istio with "
                                            f"istioctl: install it (curl -L https://istio.io/downloadIstio | sh -, "
                                            f"then put istio-*/bin on PATH) and run the cell again.")
    with tempfile.TemporaryDirectory(prefix="labkit-iop-") as folder:
        if isinstance(file, Path) or (isinstance(file, str) and "\n" not in file and Path(file).is_file()):
            path = Path(file)
        else:
            path = Path(folder) / "istio-operator.yaml"
            path.write_text(yaml.safe_dump(operator, sort_keys=False))
        command = [istioctl, "install", "-y", "--context", context, "-f", str(path)]
        if kubeconfig:
            command += ["--kubeconfig", str(kubeconfig)]
        output = _stream(command, timeout=timeout, quiet=quiet)
    components = tuple(line.split("✔", 1)[1].strip() for line in output.splitlines() if "✔" in line)
    return InstallResult(context, False, components, (), output)


def _stream(command: list[str], *, timeout: float, quiet: bool) -> str:
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if not quiet:
                sys.stdout.write(line)
                sys.stdout.flush()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            raise LabkitError(f"{' '.join(command)} did not finish within {timeout:.0f} s") from exc
    if code != 0:
        tail = "\n".join(lines[-15:])
        raise LabkitError(f"{' '.join(command)} failed with exit code {code}:\n{tail}")
    return "\n".join(lines)
