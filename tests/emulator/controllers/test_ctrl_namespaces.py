"""Every namespace has a default ServiceAccount and kube-root-ca.crt; deleting one empties it first."""

from __future__ import annotations

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB-test-ca\n-----END CERTIFICATE-----\n"


def test_new_namespace_gets_default_service_account_and_root_ca(cluster) -> None:
    async def scenario() -> None:
        created = cluster.create(cluster.namespace("sample"))
        assert created["spec"]["finalizers"] == ["kubernetes"]
        assert created["metadata"]["labels"] == {"kubernetes.io/metadata.name": "sample"}
        await cluster.settle()
        assert cluster.get("", "namespaces", "sample")["status"]["phase"] == "Active"
        assert cluster.find("", "serviceaccounts", "default", "sample") is not None
        root_ca = cluster.get("", "configmaps", "kube-root-ca.crt", "sample")
        assert root_ca["data"] == {"ca.crt": CA_PEM}

        # Deleted or edited, both come back as they were.
        cluster.delete("", "serviceaccounts", "default", "sample")
        root_ca["data"] = {"ca.crt": "tampered"}
        cluster.update(root_ca)
        await cluster.settle()
        assert cluster.find("", "serviceaccounts", "default", "sample") is not None
        assert cluster.get("", "configmaps", "kube-root-ca.crt", "sample")["data"] == {"ca.crt": CA_PEM}

    cluster.run(scenario)


def test_namespace_deletion_cascades_and_the_namespace_disappears(cluster) -> None:
    async def scenario() -> None:
        cluster.create(cluster.namespace("sample"))
        cluster.create(cluster.deployment("web", replicas=2, namespace="sample"))
        cluster.create(cluster.service("web", {"app": "web"}, namespace="sample"))
        held = cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "held", "namespace": "sample",
                                            "finalizers": ["test.labkit.io/hold"]}})
        cluster.create(cluster.namespace("other"))
        cluster.create(cluster.deployment("web", replicas=1, namespace="other"))
        await cluster.settle()
        cluster.start_pods("sample")
        await cluster.settle()
        assert cluster.list("", "pods", "sample")

        cluster.delete("", "namespaces", "sample")
        await cluster.settle()
        # Held back by one finalizer: Terminating, and saying why.
        namespace = cluster.get("", "namespaces", "sample")
        assert namespace["status"]["phase"] == "Terminating"
        condition = next(c for c in namespace["status"]["conditions"] if c["type"] == "NamespaceContentRemaining")
        assert condition["status"] == "True" and "configmaps has 1 resource instances" in condition["message"]
        for group, resource in (("apps", "deployments"), ("apps", "replicasets"), ("", "pods"),
                                ("", "services"), ("", "endpoints"), ("discovery.k8s.io", "endpointslices"),
                                ("", "serviceaccounts")):
            assert cluster.list(group, resource, "sample") == [], resource

        held = cluster.get("", "configmaps", "held", "sample")
        held["metadata"]["finalizers"] = []
        cluster.store.update("", "configmaps", held)
        await cluster.settle()
        assert cluster.find("", "namespaces", "sample") is None
        assert cluster.list("", "configmaps", "sample") == []
        # Other namespaces are untouched.
        assert len(cluster.list("", "pods", "other")) == 1
        assert cluster.find("", "configmaps", "kube-root-ca.crt", "other") is not None

    cluster.run(scenario)
