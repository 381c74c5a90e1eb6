"""Legacy discovery documents, compared with what a v1.32 API server returns."""

from __future__ import annotations

from labkit.emulator.api.discovery import (
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
    storage_version_hash,
    version_info,
)
from labkit.emulator.api.resources import Registry


def crd(group: str, plural: str, kind: str, versions: list[dict], **names: object) -> dict:
    return {"metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced" if not names.pop("cluster", False) else "Cluster",
                     "names": {"plural": plural, "kind": kind, **names}, "versions": versions}}


def virtual_service_crd() -> dict:
    versions = [{"name": name, "served": served, "storage": name == "v1", "subresources": {"status": {}}}
                for name, served in (("v1alpha3", False), ("v1beta1", True), ("v1", True))]
    return crd("networking.istio.io", "virtualservices", "VirtualService", versions, shortNames=["vs"],
               categories=["istio-io", "networking-istio-io"])


def widget_crd() -> dict:
    versions = [{"name": "v1", "served": True, "storage": True,
                 "subresources": {"scale": {"specReplicasPath": ".spec.replicas",
                                            "statusReplicasPath": ".status.replicas"}}}]
    return crd("example.com", "widgets", "Widget", versions, cluster=True)


def entries_by_name(document: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in document["resources"]}


def test_version_document() -> None:
    info = version_info()
    assert (info["major"], info["minor"], info["gitVersion"]) == ("1", "32", "v1.32.0")
    assert info["platform"] == "linux/amd64" and info["compiler"] == "gc"
    assert version_info(git_version="v1.31.4", platform="darwin/arm64")["minor"] == "31"


def test_api_versions_document_has_no_api_version_key() -> None:
    assert api_versions("127.0.0.2:6443") == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.2:6443"}],
    }


def test_group_list_has_every_group_but_core_with_preferred_versions() -> None:
    registry = Registry()
    registry.add_crd(virtual_service_crd())
    document = api_group_list(registry)
    assert (document["kind"], document["apiVersion"]) == ("APIGroupList", "v1")
    groups = {group["name"]: group for group in document["groups"]}
    assert "" not in groups
    assert groups["apps"] == {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                              "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}
    istio = groups["networking.istio.io"]
    assert [v["version"] for v in istio["versions"]] == ["v1", "v1beta1"]
    assert istio["preferredVersion"] == {"groupVersion": "networking.istio.io/v1", "version": "v1"}
    assert list(groups)[:2] == ["apps", "discovery.k8s.io"]


def test_api_group_document() -> None:
    registry = Registry()
    assert api_group(registry, "rbac.authorization.k8s.io")["preferredVersion"]["groupVersion"] == \
        "rbac.authorization.k8s.io/v1"
    assert api_group(registry, "rbac.authorization.k8s.io")["kind"] == "APIGroup"
    assert api_group(registry, "networking.istio.io") is None
    assert api_group(registry, "") is None


def test_core_resource_list() -> None:
    document = api_resource_list(Registry(), "", "v1")
    assert document["kind"] == "APIResourceList" and document["groupVersion"] == "v1"
    assert "apiVersion" not in document
    names = [entry["name"] for entry in document["resources"]]
    assert names == sorted(names)
    entries = entries_by_name(document)
    assert entries["pods"] == {
        "name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        "shortNames": ["po"], "categories": ["all"], "storageVersionHash": "xPOwRZ+Yhw8=",
    }
    assert entries["pods/exec"] == {"name": "pods/exec", "singularName": "", "namespaced": True,
                                    "kind": "PodExecOptions", "verbs": ["create", "get"]}
    assert entries["pods/log"] == {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                                   "verbs": ["get"]}
    assert entries["services/status"]["verbs"] == ["get", "patch", "update"]
    assert entries["serviceaccounts/token"] == {
        "name": "serviceaccounts/token", "singularName": "", "namespaced": True,
        "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}
    assert entries["namespaces"]["namespaced"] is False
    assert entries["namespaces"]["shortNames"] == ["ns"]
    assert "categories" not in entries["secrets"] and "shortNames" not in entries["secrets"]
    assert entries["endpoints"]["singularName"] == "endpoints"


def test_apps_resource_list_with_scale_as_autoscaling_v1() -> None:
    document = api_resource_list(Registry(), "apps", "v1")
    assert (document["apiVersion"], document["groupVersion"]) == ("v1", "apps/v1")
    entries = entries_by_name(document)
    assert entries["deployments/scale"] == {
        "name": "deployments/scale", "singularName": "", "namespaced": True,
        "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}
    assert entries["deployments/status"] == {"name": "deployments/status", "singularName": "",
                                             "namespaced": True, "kind": "Deployment",
                                             "verbs": ["get", "patch", "update"]}
    assert entries["deployments"]["shortNames"] == ["deploy"]
    assert entries["deployments"]["storageVersionHash"] == "8aSe+NMegvE="
    assert entries["daemonsets"]["storageVersionHash"] == "dd7pWHUlMKQ="


def test_create_only_reviews() -> None:
    entries = entries_by_name(api_resource_list(Registry(), "authorization.k8s.io", "v1"))
    assert entries["selfsubjectaccessreviews"]["verbs"] == ["create"]
    assert entries["subjectaccessreviews"]["namespaced"] is False


def test_crd_resource_list_uses_the_apiextensions_verb_order_and_subresources() -> None:
    registry = Registry()
    registry.add_crd(widget_crd())
    registry.add_crd(virtual_service_crd())
    widgets = entries_by_name(api_resource_list(registry, "example.com", "v1"))
    assert widgets["widgets"] == {
        "name": "widgets", "singularName": "widget", "namespaced": False, "kind": "Widget",
        "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
        "storageVersionHash": storage_version_hash("example.com", "v1", "Widget"),
    }
    assert widgets["widgets/scale"]["group"] == "autoscaling"
    beta = entries_by_name(api_resource_list(registry, "networking.istio.io", "v1beta1"))
    assert beta["virtualservices"]["shortNames"] == ["vs"]
    assert beta["virtualservices"]["categories"] == ["istio-io", "networking-istio-io"]
    # Every served version advertises the hash of the storage version, as apiextensions does.
    assert beta["virtualservices"]["storageVersionHash"] == storage_version_hash(
        "networking.istio.io", "v1", "VirtualService")
    assert beta["virtualservices/status"]["kind"] == "VirtualService"


def test_unserved_group_versions_have_no_document() -> None:
    registry = Registry()
    assert api_resource_list(registry, "apps", "v1beta1") is None
    registry.add_crd(virtual_service_crd())
    assert api_resource_list(registry, "networking.istio.io", "v1alpha3") is None
