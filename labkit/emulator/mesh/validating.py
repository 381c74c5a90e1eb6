"""istiod's side of ``validation.istio.io``: the ``/validate`` endpoint and the controller that arms the webhook.

The API server POSTs an ``AdmissionReview`` for every create or update of an Istio object;
:func:`review` answers it with :func:`labkit.emulator.mesh.validation.validate`'s verdict, so a refused
object never reaches the store and ``kubectl apply`` prints ``admission webhook "validation.istio.io"
denied the request: …`` naming the object and the field.

The install registers the webhook with ``failurePolicy: Ignore``, as Istio's charts do, so that config
applied before istiod runs is not locked out. :class:`WebhookArming` then does what istiod's webhook
controller does: once a dry-run create of a known-bad Gateway is refused (proof that the webhook answers),
it switches every ``istio.io/rev=default`` ValidatingWebhookConfiguration to ``failurePolicy: Fail`` (and fills
in a missing ``caBundle`` with istiod's root) — and does so again if anyone reopens them.
"""

from __future__ import annotations

import base64
import copy
import logging

from labkit.core.wire import Obj
from labkit.emulator.mesh.kubeclient import Informer, KubeClient
from labkit.emulator.mesh.validation import ALWAYS_REJECT, denial, validate
from labkit.errors import KubeApiError

_log = logging.getLogger("istiod.validation")

WEBHOOK_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
REVISION = "default"


def review(body: Obj) -> Obj:
    """The ``AdmissionReview`` answer to one review request (pure).

    Args:
        body: the AdmissionReview the API server sent.
    """
    request = body.get("request") or {}
    response: Obj = {"uid": request.get("uid", ""), "allowed": True}
    if request.get("operation") in ("CREATE", "UPDATE"):
        obj = request.get("object") or {}
        if not (obj.get("metadata") or {}).get("namespace") and request.get("namespace"):
            obj = {**obj, "metadata": {**(obj.get("metadata") or {}), "namespace": request["namespace"]}}
        verdict = validate(obj)
        if not verdict.ok:
            message = denial(verdict)
            if ALWAYS_REJECT not in ((obj.get("metadata") or {}).get("annotations") or {}):
                _log.info("%s%s", message, " (dry run)" if request.get("dryRun") else "")
            response = {"uid": response["uid"], "allowed": False, "status": {"message": message}}
    return {"apiVersion": body.get("apiVersion") or "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": response}


class WebhookArming:
    """Keeps the validating webhooks of this revision fail-closed and trusting istiod's root.

    Args:
        client: istiod's own API server.
        namespace: istiod's namespace (where the probe Gateway is dry-run).
        informer: a started informer over ValidatingWebhookConfigurations.
    """

    def __init__(self, client: KubeClient, namespace: str, informer: Informer):
        self.client = client
        self.namespace = namespace
        self.informer = informer
        self.ready_for_fail_close = False
        self._waiting_for = ""

    async def reconcile(self, root_pem: str) -> bool:
        """Bring every configuration of this revision up to date; ``False`` when it should be retried."""
        bundle = base64.b64encode(root_pem.encode()).decode() if root_pem else ""
        done = True
        for configuration in self.informer.values():
            labels = (configuration.get("metadata") or {}).get("labels") or {}
            if labels.get("istio.io/rev") != REVISION or labels.get("app") != "istiod":
                continue
            hooks = configuration.get("webhooks") or []
            fail_open = any(h.get("failurePolicy", "Fail") != "Fail" for h in hooks)
            # The install writes the mesh root; istiod fills in only a missing one, so the two never fight.
            stale_bundle = bool(bundle) and any(not (h.get("clientConfig") or {}).get("caBundle") for h in hooks)
            if not fail_open and not stale_bundle:
                continue
            close = fail_open and await self._ready()
            if fail_open and not close:
                done = False  # not answering yet: retried shortly
                if not stale_bundle:
                    continue
            updated = copy.deepcopy(configuration)
            for hook in updated.get("webhooks") or []:
                if bundle and not (hook.get("clientConfig") or {}).get("caBundle"):
                    hook.setdefault("clientConfig", {})["caBundle"] = bundle
                if close:
                    hook["failurePolicy"] = "Fail"
            name = configuration["metadata"]["name"]
            try:
                await self.client.request("PUT", f"{WEBHOOK_CONFIGURATIONS}/{name}", body=updated)
                changes = (["failurePolicy: Fail"] if close else []) + (["caBundle set"] if stale_bundle else [])
                _log.info("validatingwebhookconfiguration %s: %s", name, ", ".join(changes))
            except KubeApiError as exc:  # a conflict with another writer: the next change retries
                _log.warning("cannot update validatingwebhookconfiguration %s: %s", name, exc.message)
                done = False
        return done

    async def _ready(self) -> bool:
        """Whether the webhook already refuses bad config (istiod's check before it switches to fail-close)."""
        if self.ready_for_fail_close:
            return True
        probe = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                 "metadata": {"name": "invalid-gateway", "namespace": self.namespace,
                              "labels": {"istio.io/rev": REVISION}, "annotations": {ALWAYS_REJECT: "true"}},
                 "spec": {}}
        try:
            await self.client.request("POST", f"/apis/networking.istio.io/v1/namespaces/{self.namespace}/gateways",
                                      body=probe, params={"dryRun": "All"})
        except KubeApiError as exc:
            if "denied the request" in exc.message or "could not find the requested resource" in exc.message:
                _log.info("Endpoint successfully rejected invalid config. Switching to fail-close.")
                self.ready_for_fail_close = True
                return True
            self._not_ready(f"dummy invalid rejected for the wrong reason: {exc.message}")
            return False
        self._not_ready("dummy invalid config not rejected")
        return False

    def _not_ready(self, reason: str) -> None:
        if reason != self._waiting_for:  # once per reason: this is retried every second
            _log.info("Not ready to switch validation to fail-closed: %s", reason)
        self._waiting_for = reason


class Screen:
    """Keeps objects that fail validation out of istiod's pushes, logging each by name once per change.

    They reach the store only by going around the webhook (stored while istiod was down with the webhook
    failing open, or by removing the webhook); istiod then does what the real one does with config it cannot
    decode: leaves it out and keeps serving everything else.
    """

    def __init__(self) -> None:
        self.rejected: dict[str, str] = {}

    def admit(self, configs: list[Obj]) -> list[Obj]:
        """The configs that pass validation.

        Args:
            configs: Istio objects, each with ``kind`` set.
        """
        kept: list[Obj] = []
        rejected: dict[str, str] = {}
        for obj in configs:
            verdict = validate(obj)
            if verdict.ok:
                kept.append(obj)
                continue
            rejected[verdict.key] = denial(verdict)
            if self.rejected.get(verdict.key) != rejected[verdict.key]:
                _log.error("%s is invalid and left out of the push: %s", verdict.key, rejected[verdict.key])
        self.rejected = rejected
        return kept
