"""A pod's volume mounts are refused at apply time as a real server refuses them, each bad field named."""

from __future__ import annotations

import pytest

from labkit.emulator.api.admission.validation import validate
from labkit.emulator.apimachinery.status import StatusError


def _causes(error: StatusError) -> list[tuple[str, str]]:
    return [(cause["field"], cause["message"]) for cause in error.details["causes"]]


def _pod(*mounts: dict, init: tuple[dict, ...] = ()) -> dict:
    volumes = [{"name": "config", "configMap": {"name": "settings"}}, {"name": "scratch", "emptyDir": {}}]
    spec: dict = {"containers": [{"name": "app", "image": "busybox", "volumeMounts": list(mounts)}],
                  "volumes": volumes}
    if init:
        spec["initContainers"] = [{"name": "prepare", "image": "busybox", "volumeMounts": list(init)}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec}


def test_mounts_by_sub_path_of_the_pods_volumes_are_accepted() -> None:
    validate("", "Pod", _pod({"name": "config", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf"},
                             {"name": "scratch", "mountPath": "/data"},
                             {"name": "scratch", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/logs"}))


def test_a_mount_of_a_volume_the_pod_lacks_is_refused_by_name() -> None:
    with pytest.raises(StatusError) as caught:
        validate("", "Pod", _pod({"name": "confg", "mountPath": "/etc/app"}))
    assert caught.value.code == 422
    assert _causes(caught.value) == [("spec.containers[0].volumeMounts[0].name", 'Not found: "confg"')]
    assert 'Pod "web" is invalid' in caught.value.message


def test_a_sub_path_may_not_leave_its_volume_and_excludes_sub_path_expr() -> None:
    pod = _pod({"name": "config", "mountPath": "/a", "subPath": "/etc/passwd"},
               {"name": "config", "mountPath": "/b", "subPath": "../../secrets"},
               {"name": "scratch", "mountPath": "/c", "subPath": "x", "subPathExpr": "$(HOME)"})
    with pytest.raises(StatusError) as caught:
        validate("", "Pod", pod)
    # A real server names subPath without the mount's index (and subPathExpr's exclusion with it).
    assert _causes(caught.value) == [
        ("spec.containers[0].volumeMounts.subPath", 'Invalid value: "/etc/passwd": must be a relative path'),
        ("spec.containers[0].volumeMounts.subPath", "Invalid value: \"../../secrets\": must not contain '..'"),
        ("spec.containers[0].volumeMounts[2].subPathExpr",
         'Invalid value: "$(HOME)": subPathExpr and subPath are mutually exclusive'),
    ]


def test_two_mounts_at_one_path_and_a_mount_without_a_path_are_refused() -> None:
    with pytest.raises(StatusError) as caught:
        validate("", "Pod", _pod({"name": "config", "mountPath": "/etc/app"},
                                 {"name": "scratch", "mountPath": "/etc/app"}, init=({"name": "scratch"},)))
    assert _causes(caught.value) == [
        ("spec.initContainers[0].volumeMounts[0].mountPath", "Required value"),
        ("spec.containers[0].volumeMounts[1].mountPath", 'Invalid value: "/etc/app": must be unique'),
    ]


def test_a_deployments_template_is_checked_and_a_statefulsets_may_mount_its_claims() -> None:
    spec = _pod({"name": "www", "mountPath": "/usr/share/www"})["spec"]
    template = {"metadata": {"labels": {"app": "web"}}, "spec": spec}
    workload = {"metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}
    with pytest.raises(StatusError) as caught:
        validate("apps", "Deployment", workload)
    assert _causes(caught.value) == [("spec.template.spec.containers[0].volumeMounts[0].name", 'Not found: "www"')]
    claims = {"volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}
    validate("apps", "StatefulSet", {**workload, "spec": {**workload["spec"], **claims}})
