"""JSON merge patch, JSON patch and strategic merge patch on realistic manifests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labkit.emulator.apimachinery import STRATEGIC_MERGE_UNSUPPORTED, json_patch, merge_patch, strategic_merge_patch
from labkit.emulator.apimachinery.status import StatusError

DEPLOYMENT = ("apps", "Deployment")
SERVICE = ("", "Service")
POD = ("", "Pod")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "helloworld-v1",
            "namespace": "sample",
            "labels": {"app": "helloworld", "version": "v1"},
            "annotations": {"example.com/owner": "team-a"},
            "finalizers": ["example.com/protect"],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "helloworld", "version": "v1"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "helloworld", "version": "v1"}},
                "spec": {
                    "containers": [
                        {
                            "name": "helloworld",
                            "image": "docker.io/istio/examples-helloworld-v1:1.0",
                            "ports": [{"containerPort": 5000, "name": "http"}],
                            "env": [
                                {"name": "SERVICE_VERSION", "value": "v1"},
                                {"name": "LOG", "value": "info"},
                            ],
                        },
                        {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"},
                    ],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
        "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]},
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "helloworld", "namespace": "sample"},
        "spec": {
            "selector": {"app": "helloworld"},
            "ports": [{"name": "http", "port": 5000, "targetPort": 5000, "protocol": "TCP"}],
        },
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


# --- merge patch ---------------------------------------------------------------------------------


def test_merge_patch_sets_and_deletes_labels_like_kubectl_label() -> None:
    live = deployment()
    patched = merge_patch(live, {"metadata": {"labels": {"version": None, "tier": "frontend"}}})
    assert patched["metadata"]["labels"] == {"app": "helloworld", "tier": "frontend"}
    assert live == deployment()  # input untouched


def test_merge_patch_replaces_lists_and_scalars() -> None:
    patched = merge_patch(
        deployment(),
        {
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "only", "image": "x"}]}}},
        },
    )
    assert patched["spec"]["replicas"] == 3
    assert containers(patched) == [{"name": "only", "image": "x"}]
    assert patched["spec"]["template"]["spec"]["tolerations"] == [{"key": "a", "operator": "Exists"}]


def test_merge_patch_rfc7386_examples() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
    assert merge_patch({"a": "foo"}, "bar") == "bar"


def test_merge_patch_result_shares_nothing_with_the_patch() -> None:
    patch = {
        "metadata": {"annotations": {"note": "x"}},
        "spec": {"template": {"spec": {"volumes": [{"name": "v"}]}}},
    }
    patched = merge_patch(deployment(), patch)
    patched["spec"]["template"]["spec"]["volumes"][0]["name"] = "changed"
    assert patch["spec"]["template"]["spec"]["volumes"] == [{"name": "v"}]


# --- JSON patch ----------------------------------------------------------------------------------


def test_json_patch_all_operations_on_a_deployment() -> None:
    live = deployment()
    patched = json_patch(
        live,
        [
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {
                "op": "add",
                "path": "/spec/template/spec/containers/0/env/-",
                "value": {"name": "DEBUG", "value": "1"},
            },
            {
                "op": "add",
                "path": "/spec/template/spec/containers/0/env/0",
                "value": {"name": "FIRST", "value": "0"},
            },
            {"op": "remove", "path": "/metadata/annotations/example.com~1owner"},
            {"op": "add", "path": "/metadata/annotations/a~0b", "value": "tilde"},
            {"op": "copy", "from": "/metadata/labels/version", "path": "/metadata/labels/track"},
            {
                "op": "move",
                "from": "/spec/template/spec/tolerations",
                "path": "/spec/template/spec/savedTolerations",
            },
        ],
    )
    assert patched["spec"]["replicas"] == 3
    assert [e["name"] for e in containers(patched)[0]["env"]] == ["FIRST", "SERVICE_VERSION", "LOG", "DEBUG"]
    assert patched["metadata"]["annotations"] == {"a~b": "tilde"}
    assert patched["metadata"]["labels"]["track"] == "v1"
    assert "tolerations" not in patched["spec"]["template"]["spec"]
    assert patched["spec"]["template"]["spec"]["savedTolerations"] == [{"key": "a", "operator": "Exists"}]
    assert live == deployment()


def test_failed_json_patch_test_is_422_naming_the_path_and_applies_nothing() -> None:
    live = deployment()
    with pytest.raises(StatusError) as caught:
        json_patch(
            live,
            [
                {"op": "replace", "path": "/spec/replicas", "value": 5},
                {"op": "test", "path": "/metadata/labels/version", "value": "v2"},
            ],
        )
    assert caught.value.code == 422
    assert caught.value.reason == "Invalid"
    assert (
        caught.value.message
        == 'Deployment "helloworld-v1" is invalid: /metadata/labels/version: '
        'test failed: expected "v2", found "v1"'
    )
    assert live == deployment()


def test_json_patch_test_distinguishes_true_from_one() -> None:
    obj = {"spec": {"paused": True, "replicas": 1}}
    assert json_patch(obj, [{"op": "test", "path": "/spec/replicas", "value": 1.0}]) == obj
    with pytest.raises(StatusError):
        json_patch(obj, [{"op": "test", "path": "/spec/paused", "value": 1}])


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        (
            [{"op": "replace", "path": "/spec/paused", "value": True}],
            "/spec/paused: doc is missing path: /spec/paused",
        ),
        ([{"op": "remove", "path": "/spec/template/spec/containers/5"}], "array index 5 out of bounds"),
        ([{"op": "add", "path": "/spec/missing/field", "value": 1}], "doc is missing path: /spec/missing"),
        (
            [{"op": "add", "path": "/spec/template/spec/containers/01", "value": {}}],
            "invalid array index '01'",
        ),
        ([{"op": "move", "from": "/spec", "path": "/spec/inner"}], "cannot move /spec into its own child"),
    ],
)
def test_json_patch_that_does_not_apply_is_422(ops: list, fragment: str) -> None:
    with pytest.raises(StatusError) as caught:
        json_patch(deployment(), ops)
    assert caught.value.code == 422
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        ({"op": "add"}, "must be a JSON array"),
        ([{"op": "frobnicate", "path": "/spec"}], 'unknown op "frobnicate"'),
        ([{"op": "add", "path": "/spec/x"}], 'has no "value"'),
        ([{"op": "replace", "path": "spec/replicas", "value": 1}], 'invalid JSON pointer "spec/replicas"'),
        ([{"op": "copy", "path": "/spec/x"}], 'has no "from"'),
        ([{"path": "/spec"}], 'has no "op"'),
    ],
)
def test_malformed_json_patch_is_400(ops: Any, fragment: str) -> None:
    with pytest.raises(StatusError) as caught:
        json_patch(deployment(), ops)
    assert caught.value.code == 400
    assert fragment in caught.value.message


def test_json_patch_on_the_whole_document() -> None:
    assert json_patch({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}]) == {"b": 2}


# --- strategic merge patch -----------------------------------------------------------------------


def test_set_image_patch_merges_containers_by_name() -> None:
    # What `kubectl set image deployment/helloworld-v1 helloworld=…:2.0` sends.
    patched = strategic_merge_patch(
        deployment(),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "helloworld", "image": "docker.io/istio/examples-helloworld-v1:2.0"},
                        ]
                    }
                }
            },
        },
        DEPLOYMENT,
    )
    expected = deployment()
    containers(expected)[0]["image"] = "docker.io/istio/examples-helloworld-v1:2.0"
    assert patched == expected


def test_client_side_apply_patch_with_directives() -> None:
    # The patch `kubectl apply` computes after the manifest dropped env LOG, changed the port name and
    # added a sidecar-less init container; order directives come with it.
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "helloworld"}, {"name": "istio-proxy"}],
                    "$setElementOrder/initContainers": [{"name": "init"}],
                    "containers": [
                        {
                            "name": "helloworld",
                            "$setElementOrder/env": [{"name": "SERVICE_VERSION"}],
                            "env": [{"$patch": "delete", "name": "LOG"}],
                            "ports": [{"containerPort": 5000, "name": "web"}],
                        }
                    ],
                    "initContainers": [{"name": "init", "image": "busybox"}],
                }
            }
        },
    }
    patched = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    hello = containers(patched)[0]
    assert hello["env"] == [{"name": "SERVICE_VERSION", "value": "v1"}]
    assert hello["ports"] == [{"containerPort": 5000, "name": "web"}]
    assert [c["name"] for c in containers(patched)] == ["helloworld", "istio-proxy"]
    assert patched["spec"]["template"]["spec"]["initContainers"] == [{"name": "init", "image": "busybox"}]
    assert "$setElementOrder/env" not in str(patched)


def test_new_container_without_element_order_goes_first_as_on_a_real_server() -> None:
    patched = strategic_merge_patch(
        deployment(),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "debug", "image": "curlimages/curl"},
                        ]
                    }
                }
            }
        },
        DEPLOYMENT,
    )
    assert [c["name"] for c in containers(patched)] == ["debug", "helloworld", "istio-proxy"]


def test_set_element_order_alone_reorders() -> None:
    patched = strategic_merge_patch(
        deployment(),
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "istio-proxy"}, {"name": "helloworld"}],
                    }
                }
            }
        },
        DEPLOYMENT,
    )
    assert [c["name"] for c in containers(patched)] == ["istio-proxy", "helloworld"]
    assert containers(patched)[1]["env"][0]["name"] == "SERVICE_VERSION"


def test_env_merges_by_name_and_null_removes_a_field() -> None:
    patched = strategic_merge_patch(
        deployment(),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "helloworld", "env": [{"name": "LOG", "value": "debug"}], "ports": None},
                        ]
                    }
                }
            }
        },
        DEPLOYMENT,
    )
    hello = containers(patched)[0]
    assert hello["env"] == [{"name": "SERVICE_VERSION", "value": "v1"}, {"name": "LOG", "value": "debug"}]
    assert "ports" not in hello


def test_delete_a_container_and_replace_a_list() -> None:
    patched = strategic_merge_patch(
        deployment(),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "istio-proxy", "$patch": "delete"},
                            {
                                "name": "helloworld",
                                "env": [{"$patch": "replace"}, {"name": "ONLY", "value": "1"}],
                            },
                        ]
                    }
                }
            }
        },
        DEPLOYMENT,
    )
    assert [c["name"] for c in containers(patched)] == ["helloworld"]
    assert containers(patched)[0]["env"] == [{"name": "ONLY", "value": "1"}]


def test_map_patch_directive_replace_and_retain_keys() -> None:
    live = deployment()
    replaced = strategic_merge_patch(
        live, {"metadata": {"labels": {"$patch": "replace", "app": "hw"}}}, DEPLOYMENT
    )
    assert replaced["metadata"]["labels"] == {"app": "hw"}

    # `kubectl apply` switching the strategy to Recreate: rollingUpdate must go with it.
    recreate = strategic_merge_patch(
        live, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, DEPLOYMENT
    )
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}

    with pytest.raises(StatusError) as caught:
        strategic_merge_patch(
            live, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, DEPLOYMENT
        )
    assert caught.value.code == 400


def test_tolerations_are_atomic_and_replaced() -> None:
    patched = strategic_merge_patch(
        deployment(),
        {
            "spec": {
                "template": {
                    "spec": {
                        "tolerations": [{"key": "b", "operator": "Exists"}],
                    }
                }
            }
        },
        DEPLOYMENT,
    )
    assert patched["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    live = deployment()
    added = strategic_merge_patch(
        live,
        {
            "metadata": {
                "$setElementOrder/finalizers": ["example.com/protect", "example.com/backup"],
                "finalizers": ["example.com/backup", "example.com/protect"],
            }
        },
        DEPLOYMENT,
    )
    assert added["metadata"]["finalizers"] == ["example.com/protect", "example.com/backup"]

    removed = strategic_merge_patch(
        added,
        {
            "metadata": {
                "$deleteFromPrimitiveList/finalizers": ["example.com/protect"],
            }
        },
        DEPLOYMENT,
    )
    assert removed["metadata"]["finalizers"] == ["example.com/backup"]


def test_owner_references_merge_by_uid() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "rs",
                    "uid": "u1",
                    "controller": True,
                },
            ],
        },
    }
    patched = strategic_merge_patch(
        pod,
        {
            "metadata": {
                "ownerReferences": [
                    {"uid": "u1", "blockOwnerDeletion": True},
                ]
            }
        },
        POD,
    )
    assert patched["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "rs",
            "uid": "u1",
            "controller": True,
            "blockOwnerDeletion": True,
        },
    ]


def test_pod_conditions_merge_by_type() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False"},
            ]
        },
    }
    patched = strategic_merge_patch(
        pod,
        {
            "status": {
                "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        },
        POD,
    )
    assert patched["status"]["conditions"] == [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True"},
    ]


def test_service_ports_merge_by_port() -> None:
    patched = strategic_merge_patch(
        service(),
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 5000}, {"port": 15443}],
                "ports": [{"port": 5000, "targetPort": 8080}, {"port": 15443, "name": "tls"}],
            }
        },
        SERVICE,
    )
    assert patched["spec"]["ports"] == [
        {"name": "http", "port": 5000, "targetPort": 8080, "protocol": "TCP"},
        {"port": 15443, "name": "tls"},
    ]


def test_endpoints_subsets_are_atomic() -> None:
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "hw"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 5000}]}],
    }
    patched = strategic_merge_patch(
        endpoints, {"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}, ("", "Endpoints")
    )
    assert patched["subsets"] == [{"addresses": [{"ip": "10.0.0.2"}]}]


def test_strategic_merge_patch_on_a_custom_resource_is_415() -> None:
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "vs"},
    }
    with pytest.raises(StatusError) as caught:
        strategic_merge_patch(
            virtual_service, {"spec": {"hosts": ["a"]}}, ("networking.istio.io", "VirtualService")
        )
    assert caught.value.code == 415
    assert caught.value.reason == "UnsupportedMediaType"
    assert caught.value.message == STRATEGIC_MERGE_UNSUPPORTED
    assert STRATEGIC_MERGE_UNSUPPORTED == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            "does not contain declared merge key: name",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "x", "$patch": "explode"}]}}}},
            'unknown patch type "explode"',
        ),
        ({"spec": {"template": {"spec": {"containers": ["helloworld"]}}}}, "expected a list of objects"),
        ({"metadata": {"$patch": "frob"}}, 'unknown patch type "frob"'),
    ],
)
def test_malformed_strategic_merge_patch_is_400(patch: dict, fragment: str) -> None:
    with pytest.raises(StatusError) as caught:
        strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert caught.value.code == 400
    assert fragment in caught.value.message


def test_strategic_merge_patch_mutates_neither_input() -> None:
    live = deployment()
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "helloworld", "env": [{"name": "NEW", "value": "1"}]},
                        {"name": "added", "image": "x", "env": [{"name": "E", "value": "1"}]},
                    ]
                }
            }
        }
    }
    frozen_patch = copy.deepcopy(patch)
    patched = strategic_merge_patch(live, patch, DEPLOYMENT)
    containers(patched)[0]["env"].append({"name": "MORE"})
    assert live == deployment()
    assert patch == frozen_patch


def test_cronjob_reaches_the_pod_spec_through_the_job_template() -> None:
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "a", "image": "1"},
                                {"name": "b", "image": "1"},
                            ]
                        }
                    }
                }
            }
        },
    }
    patched = strategic_merge_patch(
        cron,
        {
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [{"name": "b", "image": "2"}],
                            }
                        }
                    }
                }
            }
        },
        ("batch", "CronJob"),
    )
    assert patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "1"},
        {"name": "b", "image": "2"},
    ]
