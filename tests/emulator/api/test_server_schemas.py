"""The API server's field validation and CRD versions over HTTP: status codes, Warning headers, apiVersions."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from labkit.emulator.api.admission import AdmissionChain
from labkit.emulator.api.auth import Authenticator
from labkit.emulator.api.resources import Registry
from labkit.emulator.api.server import ApiServer
from labkit.emulator.network.addresses import IpPool, LoadBalancerPool
from labkit.emulator.store import Store

TOKEN = "admin-token"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "pets.zoo.example.com"},
    "spec": {"group": "zoo.example.com", "scope": "Namespaced", "names": {"plural": "pets", "kind": "Pet"},
             "versions": [{"name": name, "served": True, "storage": name == "v1", "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "legs": {"type": "integer"}, "tail": {"type": "boolean", "default": True}}}}}}}
                          for name in ("v1", "v1beta1")]},
}


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    store = Store()
    store.create("", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sample"}})
    admission = AdmissionChain(store, node_name="n", cluster_ips=IpPool(ipaddress.IPv4Network("127.9.101.0/24")),
                               load_balancers=LoadBalancerPool(IpPool(ipaddress.IPv4Network("127.9.200.0/24"))),
                               cluster="t")
    api = ApiServer(cluster="t", store=store, registry=Registry(), authenticator=Authenticator(store, TOKEN),
                    admission=admission, server_address="127.0.0.1:6443")
    api.register_crd(json.loads(json.dumps(CRD)))
    runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}", http
    finally:
        await runner.cleanup()


def run(test: Any) -> None:
    asyncio.run(test())


def test_warn_answers_with_one_warning_header_per_field_and_strict_refuses() -> None:
    async def main() -> None:
        async with serving() as (base, http):
            url = f"{base}/api/v1/namespaces/sample/configmaps"
            body = b'{"metadata": {"name": "one"}, "data": {"a": "1"}, "datta": {"b": "2"}, "data": {"a": "3"}}'
            json_type = {"Content-Type": "application/json"}
            async with http.post(f"{url}?fieldValidation=Strict", data=body, headers=json_type) as reply:
                assert reply.status == 400
                assert (await reply.json())["message"] == (
                    'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: duplicate '
                    'field "data", unknown field "datta"')
            async with http.post(url, data=body, headers=json_type) as reply:  # no directive: Warn
                assert reply.status == 201
                assert reply.headers.getall("Warning") == ['299 - "duplicate field \\"data\\""',
                                                           '299 - "unknown field \\"datta\\""']
                assert (await reply.json())["data"] == {"a": "3"}
            async with http.put(f"{url}/one?fieldValidation=Ignore", headers=json_type,
                                data=body.replace(b'"3"', b'"4"')) as reply:
                assert reply.status == 200 and "Warning" not in reply.headers
                assert (await reply.json())["data"] == {"a": "4"}
            async with http.post(f"{url}?fieldValidation=strict", data=body, headers=json_type) as reply:
                assert reply.status == 400
                assert 'fieldValidation: Unsupported value: "strict"' in (await reply.json())["message"]
    run(main)


def test_a_custom_resource_is_served_at_the_version_asked_for_in_get_list_and_watch() -> None:
    async def main() -> None:
        async with serving() as (base, http):
            v1 = f"{base}/apis/zoo.example.com/v1/namespaces/sample/pets"
            v1beta1 = f"{base}/apis/zoo.example.com/v1beta1/namespaces/sample/pets"
            pet = {"apiVersion": "zoo.example.com/v1beta1", "kind": "Pet", "metadata": {"name": "tom"},
                   "spec": {"legs": 4}}
            async with http.post(v1beta1, json=pet) as reply:
                assert reply.status == 201 and (await reply.json())["apiVersion"] == "zoo.example.com/v1beta1"
            async with http.get(f"{v1}/tom") as reply:
                got = await reply.json()
                assert got["apiVersion"] == "zoo.example.com/v1"
                assert got["spec"] == {"legs": 4, "tail": True}  # the schema's default, filled on create
            async with http.get(v1) as reply:
                assert [item["apiVersion"] for item in (await reply.json())["items"]] == ["zoo.example.com/v1"]
            async with http.get(f"{v1}?watch=true&timeoutSeconds=1") as reply:
                event = json.loads(await reply.content.readline())
                assert event["type"] == "ADDED" and event["object"]["apiVersion"] == "zoo.example.com/v1"
            async with http.post(v1, json={**pet, "apiVersion": "zoo.example.com/v1", "metadata": {"name": "x"},
                                           "spec": {"legs": "four"}}) as reply:
                assert reply.status == 422
                assert (await reply.json())["message"] == ('Pet "x" is invalid: spec.legs: Invalid value: "string": '
                                                           'spec.legs in body must be of type integer: "string"')
    run(main)
