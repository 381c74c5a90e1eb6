"""Admission webhooks: real HTTPS calls to a webhook server in the test, matching, patches, denials, failures."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from labkit.emulator.api.admission import AdmissionChain, Attributes, Webhooks
from labkit.emulator.api.auth import Authenticator, User
from labkit.emulator.api.resources import Registry, ResourceType
from labkit.emulator.api.server import ApiServer
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.network.addresses import IpPool, LoadBalancerPool
from labkit.emulator.store import Store
from labkit.pki import new_root

Obj = dict[str, Any]
Handler = Callable[[Obj], Awaitable[Obj]]
ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"))
REGISTRY = Registry()
PODS = REGISTRY.get("", "v1", "pods")
CONFIGMAPS = REGISTRY.get("", "v1", "configmaps")
NAMESPACES = REGISTRY.get("", "v1", "namespaces")
WEBHOOKS_GROUP = "admissionregistration.k8s.io"


class WebhookServer:
    """An HTTPS admission webhook on 127.0.0.1 whose answers the test chooses; it records every review."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.root = new_root(organization="test", common_name="webhook CA", key="ec-p256")
        credential = self.root.issue_server("webhook", dns_names=["hooks.webhooks.svc"], ip_addresses=["127.0.0.1"])
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory(prefix="webhook-") as folder:  # ssl loads keys from files only
            cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
            cert.write_text(credential.cert_chain_pem)
            key.write_text(credential.key_pem)
            self.context.load_cert_chain(cert, key)
        self.reviews: list[Obj] = []
        self.paths: list[str] = []
        self.hosts: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.root.cert_pem.encode()).decode()

    def url(self, path: str = "/inject") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        self.paths.append(request.path_qs)
        self.hosts.append(request.headers.get("Host", ""))
        answer = await self.handler(review["request"])
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                  "response": {"uid": review["request"]["uid"], **answer}})

    async def __aenter__(self) -> WebhookServer:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def patch_answer(ops: list[Obj]) -> Obj:
    return {"allowed": True, "patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}


async def label_injected(request: Obj) -> Obj:
    return patch_answer([{"op": "add", "path": "/metadata/labels/injected", "value": "yes"}])


def webhook(name: str, client: Obj, **extra: Any) -> Obj:
    hook = {"name": name, "clientConfig": client, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}
    hook.update(extra)
    return hook


def configuration(store: Store, name: str, *hooks: Obj, mutating: bool = True) -> None:
    kind = "MutatingWebhookConfiguration" if mutating else "ValidatingWebhookConfiguration"
    store.create(WEBHOOKS_GROUP, "mutatingwebhookconfigurations" if mutating else "validatingwebhookconfigurations",
                 {"apiVersion": f"{WEBHOOKS_GROUP}/v1", "kind": kind, "metadata": {"name": name},
                  "webhooks": list(hooks)})


def namespace(store: Store, name: str, **labels: str) -> None:
    store.create("", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name, "labels": labels}})


def a_pod(name: str, namespace: str = "sample", **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


def creating(obj: Obj, rt: ResourceType | None = PODS, *, dry_run: bool = False) -> Attributes:
    assert rt is not None
    return Attributes(rt, "CREATE", obj, None, ADMIN, dry_run)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raises(call: Awaitable[Any]) -> Awaitable[StatusError]:
    async def run() -> StatusError:
        with pytest.raises(StatusError) as caught:
            await call
        return caught.value
    return run()


# --- matching and mutation ---------------------------------------------------------------------------------------


def test_mutating_webhook_patches_pods_only_in_selected_namespaces() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample", inject="enabled")
        namespace(store, "plain")
        async with WebhookServer(label_injected) as server:
            configuration(store, "injector", webhook(
                "inject.test.io", {"url": server.url(), "caBundle": server.ca_bundle},
                namespaceSelector={"matchLabels": {"inject": "enabled"}}))
            hooks = Webhooks(store)
            injected = await hooks.mutate(creating(a_pod("a", app="x")))
            untouched_pod = a_pod("b", "plain", app="x")
            untouched = await hooks.mutate(creating(untouched_pod))
        assert injected["metadata"]["labels"] == {"app": "x", "injected": "yes"}
        assert untouched is untouched_pod and len(server.reviews) == 1
        review = server.reviews[0]
        request = review["request"]
        assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
        assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
        assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
        assert (request["operation"], request["namespace"], request["name"]) == ("CREATE", "sample", "a")
        assert request["object"]["metadata"]["name"] == "a" and request["oldObject"] is None
        assert request["userInfo"]["username"] == "kubernetes-admin" and request["dryRun"] is False
        assert server.paths == ["/inject?timeout=10s"]
    asyncio.run(main())


def test_object_selector_matches_new_or_old_labels() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample")
        async with WebhookServer(label_injected) as server:
            configuration(store, "injector", webhook(
                "inject.test.io", {"url": server.url(), "caBundle": server.ca_bundle},
                objectSelector={"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn",
                                                      "values": ["false"]}]}))
            hooks = Webhooks(store)
            opted_out = await hooks.mutate(creating(a_pod("a", **{"sidecar.istio.io/inject": "false"})))
            injected = await hooks.mutate(creating(a_pod("b")))
        assert "injected" not in opted_out["metadata"]["labels"]
        assert injected["metadata"]["labels"] == {"injected": "yes"}
    asyncio.run(main())


def test_rules_match_operations_resources_subresources_and_scope() -> None:
    store = Store()
    namespace(store, "sample")
    hooks = Webhooks(store)

    def matches(rule: Obj, attributes: Attributes) -> bool:
        return hooks._matches({"name": "x", "rules": [rule]}, attributes)

    pod = creating(a_pod("a"))
    base = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"]}
    assert matches({**base, "resources": ["pods"]}, pod)
    assert matches({**base, "resources": ["*"]}, pod)
    assert matches({**base, "resources": ["*/*"]}, pod)
    assert not matches({**base, "resources": ["pods/status"]}, pod)
    assert matches({**base, "resources": ["pods/*"]}, Attributes(PODS, "CREATE", a_pod("a"), None, ADMIN, False,
                                                                   "status"))
    assert not matches({**base, "resources": ["pods"]}, Attributes(PODS, "UPDATE", a_pod("a"), a_pod("a"), ADMIN,
                                                                     False))
    assert matches({**base, "operations": ["*"], "resources": ["pods"]},
                   Attributes(PODS, "UPDATE", a_pod("a"), a_pod("a"), ADMIN, False))
    assert not matches({**base, "apiGroups": ["apps"], "resources": ["*"]}, pod)
    assert not matches({**base, "resources": ["*"], "scope": "Cluster"}, pod)
    assert matches({**base, "resources": ["*"], "scope": "Namespaced"}, pod)
    # A Namespace is matched by namespaceSelector on its own labels, including its name label.
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "new", "labels": {"team": "a"}}}
    assert NAMESPACES is not None
    selector = {"matchLabels": {"kubernetes.io/metadata.name": "new", "team": "a"}}
    assert hooks._matches({"name": "x", "namespaceSelector": selector,
                           "rules": [{**base, "resources": ["namespaces"]}]}, creating(ns, NAMESPACES))


def test_webhooks_run_in_configuration_name_order_and_see_earlier_patches() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample")
        seen: list[Obj] = []

        async def handler(request: Obj) -> Obj:
            seen.append(dict(request["object"]["metadata"].get("labels") or {}))
            step = str(len(seen))
            return patch_answer([{"op": "add", "path": f"/metadata/labels/step{step}", "value": step}])

        async with WebhookServer(handler) as server:
            client = {"url": server.url(), "caBundle": server.ca_bundle}
            configuration(store, "b-second", webhook("two.test.io", client))
            configuration(store, "a-first", webhook("one.test.io", client), webhook("one-more.test.io", client))
            result = await Webhooks(store).mutate(creating(a_pod("a")))
        assert seen == [{}, {"step1": "1"}, {"step1": "1", "step2": "2"}]
        assert result["metadata"]["labels"] == {"step1": "1", "step2": "2", "step3": "3"}
    asyncio.run(main())


# --- denials and failures ----------------------------------------------------------------------------------------


def test_denial_carries_the_webhook_message_as_a_real_server_words_it() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample")

        async def deny(request: Obj) -> Obj:
            return {"allowed": False, "status": {"message": "pods need an owner label", "code": 403,
                                                 "reason": "Forbidden"}}

        async def deny_plainly(request: Obj) -> Obj:
            return {"allowed": False}

        async with WebhookServer(deny) as strict, WebhookServer(deny_plainly) as plain:
            configuration(store, "policy", webhook("owner.test.io", {"url": strict.url(),
                                                                     "caBundle": strict.ca_bundle}), mutating=False)
            error = await raises(Webhooks(store).validate(creating(a_pod("a"))))
            store.delete(WEBHOOKS_GROUP, "validatingwebhookconfigurations", "policy")
            configuration(store, "policy", webhook("plain.test.io", {"url": plain.url(),
                                                                     "caBundle": plain.ca_bundle}), mutating=False)
            plain_error = await raises(Webhooks(store).validate(creating(a_pod("a"))))
        assert (error.code, error.reason) == (403, "Forbidden")
        assert error.message == 'admission webhook "owner.test.io" denied the request: pods need an owner label'
        assert plain_error.code == 400
        assert plain_error.message == 'admission webhook "plain.test.io" denied the request without explanation'
    asyncio.run(main())


def test_webhook_down_fails_the_request_or_is_ignored_by_failure_policy() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample")
        port = free_port()
        url = f"https://127.0.0.1:{port}/inject"
        configuration(store, "strict", webhook("strict.test.io", {"url": url}))
        error = await raises(Webhooks(store).mutate(creating(a_pod("a"))))
        assert (error.code, error.reason) == (500, "InternalError")
        assert error.message == (
            f'Internal error occurred: failed calling webhook "strict.test.io": failed to call webhook: '
            f'Post "https://127.0.0.1:{port}/inject?timeout=10s": dial tcp 127.0.0.1:{port}: connect: '
            f"connection refused")
        assert error.to_status()["details"]["causes"][0]["message"].startswith('failed calling webhook "strict')
        store.delete(WEBHOOKS_GROUP, "mutatingwebhookconfigurations", "strict")
        configuration(store, "lenient", webhook("lenient.test.io", {"url": url}, failurePolicy="Ignore"))
        pod = a_pod("a")
        assert await Webhooks(store).mutate(creating(pod)) is pod
    asyncio.run(main())


def test_service_reference_resolves_through_endpoints_and_verifies_the_service_name() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample")
        namespace(store, "webhooks")
        client = {"service": {"namespace": "webhooks", "name": "hooks", "path": "/inject"}}
        async with WebhookServer(label_injected) as server:
            configuration(store, "injector", webhook("inject.test.io", {**client, "caBundle": server.ca_bundle}))
            hooks = Webhooks(store)
            missing = await raises(hooks.mutate(creating(a_pod("a"))))
            store.create("", "services", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "hooks", "namespace": "webhooks"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 9443}]}})
            no_endpoints = await raises(hooks.mutate(creating(a_pod("a"))))
            store.create("", "endpoints", {
                "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "hooks", "namespace": "webhooks"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": server.port}]}]})
            injected = await hooks.mutate(creating(a_pod("a")))
        prefix = ('Internal error occurred: failed calling webhook "inject.test.io": failed to call webhook: '
                  'Post "https://hooks.webhooks.svc:443/inject?timeout=10s": ')
        assert missing.message == prefix + 'service "hooks" not found'
        assert no_endpoints.message == prefix + 'no endpoints available for service "hooks"'
        assert injected["metadata"]["labels"]["injected"] == "yes"
        assert server.hosts == ["hooks.webhooks.svc:443"]
    asyncio.run(main())


def test_a_certificate_from_another_root_is_a_tls_failure() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample")
        other = new_root(organization="test", common_name="someone else", key="ec-p256")
        async with WebhookServer(label_injected) as server:
            configuration(store, "injector", webhook("inject.test.io", {
                "url": server.url(), "caBundle": base64.b64encode(other.cert_pem.encode()).decode()}))
            error = await raises(Webhooks(store).mutate(creating(a_pod("a"))))
        assert error.code == 500
        assert error.message.endswith(f'Post "{server.url()}?timeout=10s": tls: failed to verify certificate: '
                                      f"x509: certificate signed by unknown authority")
        assert server.reviews == []
    asyncio.run(main())


def test_a_webhook_slower_than_its_timeout_fails_with_deadline_exceeded() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample")
        release = asyncio.Event()

        async def stall(request: Obj) -> Obj:
            await release.wait()
            return {"allowed": True}

        async with WebhookServer(stall) as server:
            configuration(store, "injector", webhook("slow.test.io", {"url": server.url(),
                                                                      "caBundle": server.ca_bundle},
                                                     timeoutSeconds=1))
            error = await raises(Webhooks(store).mutate(creating(a_pod("a"))))
            release.set()
        assert error.message.endswith(f'Post "{server.url()}?timeout=1s": context deadline exceeded')
    asyncio.run(main())


def test_dry_run_refuses_webhooks_with_side_effects() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample")
        configuration(store, "injector", webhook("effects.test.io", {"url": "https://127.0.0.1:1/"},
                                                 sideEffects="Some"))
        error = await raises(Webhooks(store).mutate(creating(a_pod("a"), dry_run=True)))
        assert (error.code, error.message) == (400, 'admission webhook "effects.test.io" does not support dry run')
    asyncio.run(main())


# --- through the API server --------------------------------------------------------------------------------------


class _MarkingChain(AdmissionChain):
    """The real chain whose defaulting only marks the object: the webhooks are what is under test."""

    def default(self, rt: ResourceType, obj: Obj) -> None:
        obj.setdefault("metadata", {}).setdefault("annotations", {})["defaulted"] = "true"


def test_api_server_runs_webhooks_on_create_update_patch_and_apply() -> None:
    async def main() -> None:
        store = Store()
        namespace(store, "sample", inject="enabled")
        operations: list[str] = []

        async def handler(request: Obj) -> Obj:
            operations.append(request["operation"])
            if request["object"]["metadata"].get("labels", {}).get("deny") == "yes":
                return {"allowed": False, "status": {"message": "no"}}
            annotations = request["object"]["metadata"].get("annotations") or {}
            # Mutating webhooks see defaulted objects; their patches are defaulted again.
            assert annotations.get("defaulted") == "true"
            return patch_answer([{"op": "add", "path": "/data/seen", "value": request["operation"]}])

        token = "admin-token"
        admission = _MarkingChain(store, node_name="n", cluster_ips=IpPool(ipaddress.IPv4Network("127.9.101.0/24")),
                                  load_balancers=LoadBalancerPool(IpPool(ipaddress.IPv4Network("127.9.200.0/24"))),
                                  cluster="t")
        api = ApiServer(cluster="t", store=store, registry=Registry(), authenticator=Authenticator(store, token),
                        admission=admission, server_address="127.0.0.1:6443")
        runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/namespaces/sample/configmaps"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with WebhookServer(handler) as server, aiohttp.ClientSession(headers=headers) as http:
                rule = {"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                        "resources": ["configmaps"]}
                configuration(store, "cm", webhook("cm.test.io", {"url": server.url(), "caBundle": server.ca_bundle},
                                                   rules=[rule]))
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}, "data": {"a": "1"}}
                async with http.post(base, json=body) as reply:
                    assert reply.status == 201
                    assert (await reply.json())["data"] == {"a": "1", "seen": "CREATE"}
                live = store.get("", "configmaps", "one", "sample")
                async with http.put(f"{base}/one", json={**live, "data": {"a": "2"}}) as reply:
                    assert (await reply.json())["data"] == {"a": "2", "seen": "UPDATE"}
                async with http.patch(f"{base}/one", data=json.dumps({"data": {"b": "3"}}),
                                      headers={"Content-Type": "application/merge-patch+json"}) as reply:
                    assert (await reply.json())["data"] == {"a": "2", "b": "3", "seen": "UPDATE"}
                applied = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\ndata:\n  c: '4'\n"
                async with http.patch(f"{base}/two?fieldManager=test", data=applied,
                                      headers={"Content-Type": "application/apply-patch+yaml"}) as reply:
                    assert reply.status == 201
                    assert (await reply.json())["data"] == {"c": "4", "seen": "CREATE"}
                denied = {**body, "metadata": {"name": "three", "labels": {"deny": "yes"}}}
                async with http.post(base, json=denied) as reply:
                    status = await reply.json()
                    assert reply.status == 400
                    assert status["message"] == 'admission webhook "cm.test.io" denied the request: no'
                assert store.find("", "configmaps", "three", "sample") is None
        finally:
            await runner.cleanup()
        assert operations == ["CREATE", "UPDATE", "UPDATE", "CREATE", "CREATE"]
    asyncio.run(main())
