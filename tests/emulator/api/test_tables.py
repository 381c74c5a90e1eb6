"""Server-side Tables: the cells ``kubectl get`` prints, from realistic objects."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from labkit.emulator.api.resources import Registry
from labkit.emulator.api.tables import (
    TABLE_V1,
    TABLE_V1BETA1,
    Filter,
    Wildcard,
    columns_for,
    human_duration,
    parse_json_path,
    render_row,
    render_table,
    table_version,
    table_watch_event,
    wants_table,
)
from labkit.emulator.apimachinery.status import StatusError

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
REGISTRY = Registry()
KUBECTL_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                  "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")


def ago(**delta: float) -> str:
    return (NOW - dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rt(plural: str, group: str = "", version: str = "v1"):
    found = REGISTRY.get(group, version, plural)
    assert found is not None
    return found


def headers(resource, wide: bool = False) -> list[str]:
    """The header line kubectl prints: upper-cased names of the columns it shows."""
    return [c.name.upper() for c in columns_for(resource) if wide or c.priority == 0]


def visible(resource, obj: dict, wide: bool = False) -> list[Any]:
    """The cells kubectl prints without ``-o wide`` (priority 0 columns only) or with it."""
    cells = render_row(resource, obj, NOW)
    return [cell for cell, column in zip(cells, columns_for(resource), strict=True) if wide or column.priority == 0]


# --------------------------------------------------------------------------------------------------
# HumanDuration


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-2, "<invalid>"), (-1.5, "0s"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"),
    (120, "2m"), (121, "2m1s"), (182, "3m2s"), (599, "9m59s"), (600, "10m"), (10_799, "179m"),
    (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"), (8 * 3600 - 60, "7h59m"), (8 * 3600, "8h"),
    (47 * 3600 + 3599, "47h"), (48 * 3600, "2d"), (51 * 3600, "2d3h"), (8 * 86400 - 1, "7d23h"),
    (8 * 86400, "8d"), (729 * 86400, "729d"), (730 * 86400, "2y"), (735 * 86400, "2y5d"),
    (8 * 365 * 86400, "8y"), (9 * 365 * 86400 + 40 * 86400, "9y"),
])
def test_human_duration_matches_kubectl(seconds: float, text: str) -> None:
    assert human_duration(dt.timedelta(seconds=seconds)) == text


# --------------------------------------------------------------------------------------------------
# Accept negotiation


def test_kubectl_accept_header_wants_a_v1_table() -> None:
    assert wants_table(KUBECTL_ACCEPT)
    assert table_version(KUBECTL_ACCEPT) == TABLE_V1


@pytest.mark.parametrize(("accept", "version"), [
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", TABLE_V1BETA1),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json;as=Table;v=v1;g=meta.k8s.io", TABLE_V1),
    ("application/json", None),
    ("", None),
    ("*/*", None),
    ("application/json, application/json;as=Table;v=v1;g=meta.k8s.io", None),
    ("application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io", TABLE_V1),
    ("application/json;as=Table;v=v1;g=meta.k8s.io;q=0, application/json", None),
    ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json", None),
    ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", None),
    ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json", None),
])
def test_table_negotiation(accept: str, version: str | None) -> None:
    assert table_version(accept) == version
    assert wants_table(accept) is (version is not None)


# --------------------------------------------------------------------------------------------------
# Pods


def pod(name: str = "helloworld-v1-7d9f8b6c5-x2x7q", *, phase: str = "Running", containers: int = 2,
        statuses: list[dict] | None = None, init: list[dict] | None = None,
        init_statuses: list[dict] | None = None, conditions: list[dict] | None = None,
        **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "sample", "creationTimestamp": ago(minutes=5),
                     "resourceVersion": "4242", **metadata},
        "spec": {"nodeName": "cluster1-node", "initContainers": init or [],
                 "containers": [{"name": f"c{i}", "image": "docker.io/istio/examples-helloworld-v1"}
                                for i in range(containers)]},
        "status": {"phase": phase, "podIP": "127.0.10.4", "podIPs": [{"ip": "127.0.10.4"}],
                   "conditions": conditions or [], "initContainerStatuses": init_statuses or [],
                   "containerStatuses": statuses or []},
    }


def running(name: str = "c0", ready: bool = True, restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {"name": name, "ready": ready, "restartCount": restarts, "started": True,
            "state": {"running": {"startedAt": ago(minutes=4)}}, **extra}


def waiting(reason: str, name: str = "c0", restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {"name": name, "ready": False, "restartCount": restarts, "state": {"waiting": {"reason": reason}},
            **extra}


def terminated(reason: str = "", exit_code: int = 0, name: str = "c0", signal: int = 0) -> dict[str, Any]:
    state = {"exitCode": exit_code, "finishedAt": ago(minutes=1)}
    if reason:
        state["reason"] = reason
    if signal:
        state["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": state}}


def test_pod_columns_match_kubectl() -> None:
    pods = rt("pods")
    assert headers(pods) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert headers(pods, wide=True) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                                        "NOMINATED NODE", "READINESS GATES"]


def test_running_pod_with_sidecar() -> None:
    obj = pod(statuses=[running("helloworld"), running("istio-proxy")])
    assert visible(rt("pods"), obj) == ["helloworld-v1-7d9f8b6c5-x2x7q", "2/2", "Running", "0", "5m"]
    assert visible(rt("pods"), obj, wide=True)[5:] == ["127.0.10.4", "cluster1-node", "<none>", "<none>"]


@pytest.mark.parametrize(("statuses", "ready", "status"), [
    ([waiting("ContainerCreating"), waiting("ContainerCreating", "c1")], "0/2", "ContainerCreating"),
    ([running(), waiting("ErrImagePull", "c1")], "1/2", "ErrImagePull"),
    ([waiting("ImagePullBackOff"), running("c1")], "1/2", "ImagePullBackOff"),
    ([running(ready=False), running("c1")], "1/2", "Running"),
    ([terminated("Error", 1), running("c1")], "1/2", "Error"),
    ([terminated(exit_code=137), running("c1")], "1/2", "ExitCode:137"),
    ([terminated(signal=9), running("c1")], "1/2", "Signal:9"),
    # Walking the statuses backwards leaves the first container's reason on top.
    ([waiting("CrashLoopBackOff"), waiting("ErrImagePull", "c1")], "0/2", "CrashLoopBackOff"),
])
def test_pod_status_reasons(statuses: list[dict], ready: str, status: str) -> None:
    phase = "Running" if status == "Running" else "Pending"
    cells = visible(rt("pods"), pod(phase=phase, statuses=statuses))
    assert cells[1:3] == [ready, status]


def test_pending_pod_without_statuses() -> None:
    cells = visible(rt("pods"), pod(phase="Pending", containers=1))
    assert cells[1:4] == ["0/1", "Pending", "0"]


def test_pod_without_a_phase_reads_pending() -> None:
    obj = pod(containers=1)
    del obj["status"]
    assert visible(rt("pods"), obj, wide=True)[1:] == ["0/1", "Pending", "0", "5m", "<none>", "cluster1-node",
                                                       "<none>", "<none>"]


def test_crash_looping_pod_shows_restarts_with_the_last_one_ago() -> None:
    crashing = waiting("CrashLoopBackOff", restarts=5,
                       lastState={"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(seconds=30)}})
    sidecar = running("istio-proxy", restarts=1,
                      lastState={"terminated": {"exitCode": 0, "finishedAt": ago(minutes=3)}})
    cells = visible(rt("pods"), pod(statuses=[crashing, sidecar]))
    assert cells[1:4] == ["1/2", "CrashLoopBackOff", "6 (30s ago)"]


def test_restarts_without_a_termination_time_are_a_bare_count() -> None:
    cells = visible(rt("pods"), pod(containers=1, statuses=[running(restarts=3)]))
    assert cells[3] == "3"


def test_completed_pod_and_its_row_condition() -> None:
    obj = pod(phase="Succeeded", containers=1, statuses=[terminated("Completed")])
    table = render_table(rt("pods"), [obj], now=NOW)
    row = table["rows"][0]
    assert row["cells"][1:3] == ["0/1", "Completed"]
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]


def test_failed_pod_row_condition() -> None:
    obj = pod(phase="Failed", containers=1, statuses=[terminated("Error", 2)])
    row = render_table(rt("pods"), obj, now=NOW)["rows"][0]
    assert row["cells"][2] == "Error"
    assert row["conditions"][0]["reason"] == "Failed"


@pytest.mark.parametrize(("ready_condition", "status"), [("True", "Running"), ("False", "NotReady")])
def test_completed_container_next_to_a_running_one(ready_condition: str, status: str) -> None:
    obj = pod(statuses=[terminated("Completed"), running("c1")],
              conditions=[{"type": "Ready", "status": ready_condition}])
    assert visible(rt("pods"), obj)[1:3] == ["1/2", status]


def test_terminating_pod() -> None:
    obj = pod(statuses=[running(), running("c1")], deletionTimestamp=ago(seconds=3))
    assert visible(rt("pods"), obj)[2] == "Terminating"
    finished = pod(phase="Succeeded", containers=1, statuses=[terminated("Completed")],
                   deletionTimestamp=ago(seconds=3))
    assert visible(rt("pods"), finished)[2] == "Completed"


def test_pod_on_a_lost_node_being_deleted_is_unknown() -> None:
    obj = pod(statuses=[running(), running("c1")], deletionTimestamp=ago(seconds=3))
    obj["status"]["reason"] = "NodeLost"
    assert visible(rt("pods"), obj)[2] == "Unknown"


@pytest.mark.parametrize(("init_statuses", "status"), [
    ([waiting("PodInitializing", "init")], "Init:0/1"),
    ([{"name": "init", "ready": False, "restartCount": 0, "state": {"running": {}}}], "Init:0/1"),
    ([waiting("ErrImagePull", "init")], "Init:ErrImagePull"),
    ([terminated("Error", 1, "init")], "Init:Error"),
    ([terminated(exit_code=2, name="init")], "Init:ExitCode:2"),
    ([terminated(signal=15, exit_code=143, name="init")], "Init:Signal:15"),
])
def test_initialising_pod(init_statuses: list[dict], status: str) -> None:
    obj = pod(phase="Pending", containers=1, init=[{"name": "init", "image": "busybox"}],
              init_statuses=init_statuses, statuses=[waiting("PodInitializing")])
    assert visible(rt("pods"), obj)[1:3] == ["0/1", status]


def test_second_init_container_running() -> None:
    obj = pod(phase="Pending", containers=1, init=[{"name": "a"}, {"name": "b"}],
              init_statuses=[terminated("Completed", 0, "a"), waiting("PodInitializing", "b")],
              statuses=[waiting("PodInitializing")])
    assert visible(rt("pods"), obj)[2] == "Init:1/2"


def test_native_sidecar_counts_as_a_container() -> None:
    sidecar = {"name": "istio-proxy", "restartPolicy": "Always"}
    obj = pod(containers=1, init=[sidecar],
              init_statuses=[running("istio-proxy", restarts=2,
                                     lastState={"terminated": {"finishedAt": ago(minutes=2)}})],
              statuses=[running("c0")], conditions=[{"type": "Initialized", "status": "True"}])
    assert visible(rt("pods"), obj)[1:4] == ["2/2", "Running", "2 (2m ago)"]


def test_readiness_gates_column() -> None:
    obj = pod(statuses=[running(), running("c1")],
              conditions=[{"type": "example.com/lb-ready", "status": "True"},
                          {"type": "example.com/dns", "status": "False"}])
    obj["spec"]["readinessGates"] = [{"conditionType": "example.com/lb-ready"},
                                     {"conditionType": "example.com/dns"}]
    assert render_row(rt("pods"), obj, NOW)[-1] == "1/2"


# --------------------------------------------------------------------------------------------------
# Services, endpoints


def service(name: str, service_type: str | None, ports: list[dict], *, cluster_ip: str = "10.96.0.10",
            ingress: list[dict] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports, **spec}
    if service_type:
        body["type"] = service_type
    status = {"loadBalancer": {"ingress": ingress}} if ingress is not None else {"loadBalancer": {}}
    return {"metadata": {"name": name, "creationTimestamp": ago(hours=2, minutes=30)}, "spec": body,
            "status": status}


EAST_WEST_PORTS = [
    {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021, "nodePort": 31234},
    {"name": "tls", "port": 15443, "protocol": "TCP", "targetPort": 15443, "nodePort": 30443},
]


def test_service_columns() -> None:
    assert headers(rt("services")) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert headers(rt("services"), wide=True)[-1] == "SELECTOR"


def test_cluster_ip_service() -> None:
    obj = service("helloworld", "ClusterIP", [{"name": "http", "port": 5000, "protocol": "TCP"}],
                  selector={"app": "helloworld", "tier": "web"})
    assert visible(rt("services"), obj, wide=True) == [
        "helloworld", "ClusterIP", "10.96.0.10", "<none>", "5000/TCP", "150m", "app=helloworld,tier=web"]


def test_load_balancer_without_an_address_is_pending() -> None:
    obj = service("istio-eastwestgateway", "LoadBalancer", EAST_WEST_PORTS)
    assert visible(rt("services"), obj, wide=True) == [
        "istio-eastwestgateway", "LoadBalancer", "10.96.0.10", "<pending>",
        "15021:31234/TCP,15443:30443/TCP", "150m", "<none>"]


def test_load_balancer_addresses_are_sorted_and_deduplicated() -> None:
    obj = service("istio-eastwestgateway", "LoadBalancer", EAST_WEST_PORTS,
                  ingress=[{"ip": "172.18.0.20"}, {"hostname": "gw.example.com"}, {"ip": "172.18.0.10"},
                           {"ip": "172.18.0.20"}])
    assert visible(rt("services"), obj)[3] == "172.18.0.10,172.18.0.20,gw.example.com"
    obj["spec"]["externalIPs"] = ["192.0.2.7"]
    assert visible(rt("services"), obj)[3] == "172.18.0.10,172.18.0.20,gw.example.com,192.0.2.7"


def test_other_service_shapes() -> None:
    headless = service("nginx", None, [{"port": 8443}], cluster_ip="None")
    assert visible(rt("services"), headless)[:5] == ["nginx", "ClusterIP", "None", "<none>", "8443/TCP"]
    node_port = service("web", "NodePort", [{"port": 80, "nodePort": 30080, "protocol": "UDP"}],
                        externalIPs=["192.0.2.1", "192.0.2.2"])
    assert visible(rt("services"), node_port)[3:5] == ["192.0.2.1,192.0.2.2", "80:30080/UDP"]
    external = service("db", "ExternalName", [], cluster_ip="", externalName="db.example.com")
    external["spec"].pop("clusterIPs")
    assert visible(rt("services"), external)[1:5] == ["ExternalName", "<none>", "db.example.com", "<none>"]


def endpoints(*subsets: dict) -> dict[str, Any]:
    return {"metadata": {"name": "helloworld", "creationTimestamp": ago(days=2, hours=3)},
            "subsets": list(subsets)}


def test_endpoints_shows_three_then_counts_the_rest() -> None:
    addresses = [{"ip": f"10.0.0.{i}"} for i in range(1, 6)]
    obj = endpoints({"addresses": addresses, "ports": [{"port": 5000, "protocol": "TCP"}]})
    assert headers(rt("endpoints")) == ["NAME", "ENDPOINTS", "AGE"]
    assert visible(rt("endpoints"), obj) == [
        "helloworld", "10.0.0.1:5000,10.0.0.2:5000,10.0.0.3:5000 + 2 more...", "2d3h"]


@pytest.mark.parametrize(("subsets", "text"), [
    ((), "<none>"),
    (({"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}], "ports": [{"port": 80}]},),
     "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80"),
    (({"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},),
     "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."),
    (({"addresses": [{"ip": "10.0.0.1"}]}, {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 15443}]}),
     "10.0.0.1,[fd00::1]:15443"),
    (({"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 80}]},), ""),
    (({"addresses": [{"ip": f"10.1.0.{i}"} for i in range(1, 6)]},), "10.1.0.1,10.1.0.2,10.1.0.3 + 2 more..."),
])
def test_endpoints_formatting(subsets: tuple, text: str) -> None:
    assert visible(rt("endpoints"), endpoints(*subsets))[1] == text


def test_endpoint_slices() -> None:
    slices = rt("endpointslices", "discovery.k8s.io")
    assert headers(slices) == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    obj = {"metadata": {"name": "helloworld-abcde", "creationTimestamp": ago(seconds=42)},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 5000}, {"name": "named"}, {}],
           "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 5)]}
    assert visible(slices, obj) == ["helloworld-abcde", "IPv4", "5000,named,*",
                                    "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...", "42s"]
    empty = {"metadata": {"name": "e"}, "addressType": "IPv4"}
    assert visible(slices, empty)[2:] == ["<unset>", "<unset>", "<unknown>"]


# --------------------------------------------------------------------------------------------------
# Workloads and the rest of the built-ins


TEMPLATE = {"metadata": {"labels": {"app": "helloworld", "version": "v1"}},
            "spec": {"containers": [{"name": "helloworld", "image": "docker.io/istio/examples-helloworld-v1"},
                                    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"}]}}


def test_deployment() -> None:
    deployments = rt("deployments", "apps")
    assert headers(deployments) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert headers(deployments, wide=True)[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    obj = {"metadata": {"name": "helloworld-v1", "creationTimestamp": ago(days=3)},
           "spec": {"replicas": 3, "template": TEMPLATE,
                    "selector": {"matchLabels": {"version": "v1", "app": "helloworld"},
                                 "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]},
                                                      {"key": "legacy", "operator": "DoesNotExist"}]}},
           "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 1, "availableReplicas": 1}}
    assert visible(deployments, obj, wide=True) == [
        "helloworld-v1", "1/3", 3, 1, "3d", "helloworld,istio-proxy",
        "docker.io/istio/examples-helloworld-v1,docker.io/istio/proxyv2:1.24.0",
        "app=helloworld,!legacy,tier in (api,web),version=v1"]


def test_fresh_deployment_defaults() -> None:
    obj = {"metadata": {"name": "sleep", "creationTimestamp": ago(seconds=1)},
           "spec": {"template": {"spec": {"containers": []}}, "selector": {"matchLabels": {"app": "sleep"}}}}
    assert visible(rt("deployments", "apps"), obj) == ["sleep", "0/1", 0, 0, "1s"]


def test_replica_set() -> None:
    replica_sets = rt("replicasets", "apps")
    assert headers(replica_sets) == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    obj = {"metadata": {"name": "helloworld-v1-7d9f8b6c5", "creationTimestamp": ago(hours=5, minutes=12)},
           "spec": {"replicas": 2, "template": TEMPLATE, "selector": {}},
           "status": {"replicas": 2, "readyReplicas": 1}}
    assert visible(replica_sets, obj, wide=True) == [
        "helloworld-v1-7d9f8b6c5", 2, 2, 1, "5h12m", "helloworld,istio-proxy",
        "docker.io/istio/examples-helloworld-v1,docker.io/istio/proxyv2:1.24.0", "<none>"]


def test_stateful_and_daemon_sets() -> None:
    sts = {"metadata": {"name": "db", "creationTimestamp": ago(minutes=20)},
           "spec": {"replicas": 3, "template": TEMPLATE}, "status": {"readyReplicas": 2}}
    assert visible(rt("statefulsets", "apps"), sts) == ["db", "2/3", "20m"]
    ds = {"metadata": {"name": "spire-agent", "creationTimestamp": ago(minutes=20)},
          "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}},
                   "selector": {"matchLabels": {"app": "spire-agent"}}},
          "status": {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1,
                     "updatedNumberScheduled": 1, "numberAvailable": 0}}
    assert headers(rt("daemonsets", "apps")) == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE",
                                                 "AVAILABLE", "NODE SELECTOR", "AGE"]
    assert visible(rt("daemonsets", "apps"), ds, wide=True) == [
        "spire-agent", 1, 1, 1, 1, 0, "kubernetes.io/os=linux", "20m", "", "", "app=spire-agent"]


def test_namespaces_secrets_config_maps_service_accounts() -> None:
    assert visible(rt("namespaces"), {"metadata": {"name": "sample", "creationTimestamp": ago(days=10)},
                                      "status": {"phase": "Active"}}) == ["sample", "Active", "10d"]
    assert visible(rt("namespaces"), {"metadata": {"name": "old", "deletionTimestamp": ago(seconds=1)}})[1] == \
        "Terminating"
    assert headers(rt("secrets")) == ["NAME", "TYPE", "DATA", "AGE"]
    cacerts = {"metadata": {"name": "cacerts", "creationTimestamp": ago(seconds=90)}, "type": "Opaque",
               "data": {"ca-cert.pem": "", "ca-key.pem": "", "root-cert.pem": "", "cert-chain.pem": ""}}
    assert visible(rt("secrets"), cacerts) == ["cacerts", "Opaque", 4, "90s"]
    assert visible(rt("secrets"), {"metadata": {"name": "empty"}})[1:3] == ["Opaque", 0]
    config_map = {"metadata": {"name": "istio-ca-root-cert", "creationTimestamp": ago(minutes=7, seconds=3)},
                  "data": {"root-cert.pem": "..."}, "binaryData": {"blob": ""}}
    assert headers(rt("configmaps")) == ["NAME", "DATA", "AGE"]
    assert visible(rt("configmaps"), config_map) == ["istio-ca-root-cert", 2, "7m3s"]
    account = {"metadata": {"name": "default", "creationTimestamp": ago(days=400)}}
    assert headers(rt("serviceaccounts")) == ["NAME", "SECRETS", "AGE"]
    assert visible(rt("serviceaccounts"), account) == ["default", 0, "400d"]


def test_nodes() -> None:
    nodes = rt("nodes")
    assert headers(nodes) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    node = {"metadata": {"name": "cluster1-control-plane", "creationTimestamp": ago(hours=1),
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master",
                                    "node-role.kubernetes.io/": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "labkit"}}}
    assert visible(nodes, node, wide=True) == [
        "cluster1-control-plane", "Ready,SchedulingDisabled", "control-plane,master", "60m", "v1.32.0",
        "127.0.0.2", "<none>", "labkit", "<unknown>", "<unknown>"]
    assert visible(nodes, {"metadata": {"name": "n"}, "status": {}})[1:3] == ["Unknown", "<none>"]
    not_ready = {"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert visible(nodes, not_ready)[1] == "NotReady"


def test_events_core_and_events_k8s_io() -> None:
    assert headers(rt("events")) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    core = {"metadata": {"name": "helloworld.17a", "namespace": "sample"},
            "involvedObject": {"kind": "Pod", "name": "helloworld-v1-x", "fieldPath": "spec.containers{helloworld}"},
            "reason": "BackOff", "message": "Back-off restarting failed container\n", "type": "Warning",
            "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(seconds=45), "count": 7,
            "source": {"component": "kubelet", "host": "cluster1-node"}}
    assert visible(rt("events"), core) == ["45s", "Warning", "BackOff", "pod/helloworld-v1-x",
                                           "Back-off restarting failed container"]
    assert render_row(rt("events"), core, NOW)[4:] == [
        "spec.containers{helloworld}", "kubelet, cluster1-node", "Back-off restarting failed container", "10m",
        7, "helloworld.17a"]
    new_api = {"metadata": {"name": "e2"}, "regarding": {"kind": "Deployment", "name": "helloworld-v1"},
               "reason": "ScalingReplicaSet", "note": "Scaled up replica set helloworld-v1-7d9 to 1",
               "type": "Normal", "eventTime": ago(minutes=3), "reportingController": "deployment-controller"}
    assert render_row(rt("events", "events.k8s.io"), new_api, NOW) == [
        "3m", "Normal", "ScalingReplicaSet", "deployment/helloworld-v1", "", "deployment-controller",
        "Scaled up replica set helloworld-v1-7d9 to 1", "3m", 1, "e2"]
    series = dict(core, series={"count": 12, "lastObservedTime": ago(seconds=5)})
    assert render_row(rt("events"), series, NOW)[0] == "5s"
    assert render_row(rt("events"), series, NOW)[8] == 12


def test_rbac_and_crd_tables() -> None:
    role = {"metadata": {"name": "pod-reader", "creationTimestamp": "2024-04-30T08:15:00Z"}}
    roles = rt("roles", "rbac.authorization.k8s.io")
    assert headers(roles) == ["NAME", "CREATED AT"]
    assert render_row(roles, role, NOW) == ["pod-reader", "2024-04-30T08:15:00Z"]
    assert render_row(rt("clusterroles", "rbac.authorization.k8s.io"), {"metadata": {"name": "x"}}, NOW) == [
        "x", "0001-01-01T00:00:00Z"]
    crds = rt("customresourcedefinitions", "apiextensions.k8s.io")
    assert headers(crds) == ["NAME", "CREATED AT"]
    assert render_row(crds, {"metadata": {"name": "gateways.networking.istio.io",
                                          "creationTimestamp": "2024-05-01T11:00:00.123456+02:00"}}, NOW) == [
        "gateways.networking.istio.io", "2024-05-01T09:00:00Z"]
    binding = {"metadata": {"name": "read-pods", "creationTimestamp": ago(minutes=2)},
               "roleRef": {"kind": "Role", "name": "pod-reader", "apiGroup": "rbac.authorization.k8s.io"},
               "subjects": [{"kind": "User", "name": "jane"}, {"kind": "User", "name": "joe"},
                            {"kind": "ServiceAccount", "name": "istiod", "namespace": "istio-system"},
                            {"kind": "Group", "name": "admins"}]}
    bindings = rt("rolebindings", "rbac.authorization.k8s.io")
    assert headers(bindings) == ["NAME", "ROLE", "AGE"]
    assert render_row(bindings, binding, NOW) == ["read-pods", "Role/pod-reader", "2m", "jane, joe", "admins",
                                                  "istio-system/istiod"]
    cluster_bindings = rt("clusterrolebindings", "rbac.authorization.k8s.io")
    assert headers(cluster_bindings) == ["NAME", "ROLE", "AGE"]


def test_leases_and_webhooks() -> None:
    lease = {"metadata": {"name": "istio-leader", "creationTimestamp": ago(hours=30)},
             "spec": {"holderIdentity": "istiod-7f9c"}}
    assert visible(rt("leases", "coordination.k8s.io"), lease) == ["istio-leader", "istiod-7f9c", "30h"]
    hook = {"metadata": {"name": "istio-sidecar-injector", "creationTimestamp": ago(days=1)},
            "webhooks": [{"name": "a"}, {"name": "b"}]}
    webhooks = rt("mutatingwebhookconfigurations", "admissionregistration.k8s.io")
    assert headers(webhooks) == ["NAME", "WEBHOOKS", "AGE"]
    assert visible(webhooks, hook) == ["istio-sidecar-injector", 2, "24h"]


# --------------------------------------------------------------------------------------------------
# Custom resources


def crd_with_columns() -> dict[str, Any]:
    return {
        "metadata": {"name": "serviceentries.networking.istio.io"},
        "spec": {
            "group": "networking.istio.io", "scope": "Namespaced",
            "names": {"plural": "serviceentries", "kind": "ServiceEntry", "shortNames": ["se"]},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "additionalPrinterColumns": [
                    {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts"},
                    {"name": "Location", "type": "string", "jsonPath": ".spec.location"},
                    {"name": "Resolution", "type": "string", "jsonPath": ".spec.resolution"},
                    {"name": "First-Port", "type": "integer", "jsonPath": ".spec.ports[0].number"},
                    {"name": "Weight", "type": "number", "jsonPath": ".spec.endpoints[0].weight", "priority": 1},
                    {"name": "Exported", "type": "boolean", "jsonPath": ".spec.exported", "priority": 1},
                    {"name": "App", "type": "string", "jsonPath": ".metadata.labels['app.kubernetes.io/name']",
                     "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    {"name": "Synced", "type": "date", "jsonPath": ".status.conditions[-1].lastTransitionTime",
                     "description": "When the entry was last pushed", "format": "date-time", "priority": 1},
                ]},
            ],
        },
    }


def test_crd_printer_columns() -> None:
    registry = Registry()
    (entries,) = registry.add_crd(crd_with_columns())
    columns = columns_for(entries)
    assert [c.name.upper() for c in columns if c.priority == 0] == [
        "NAME", "HOSTS", "LOCATION", "RESOLUTION", "FIRST-PORT", "AGE"]
    assert columns[-1].to_wire() == {"name": "Synced", "type": "date", "format": "date-time",
                                     "description": "When the entry was last pushed", "priority": 1}
    assert columns[1].description == "Custom resource definition column (in JSONPath format): .spec.hosts"
    obj = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
           "metadata": {"name": "svc-2-bar-global", "creationTimestamp": ago(days=2, hours=3),
                        "labels": {"app.kubernetes.io/name": "federation"}},
           "spec": {"hosts": ["svc-2.bar.global"], "location": "MESH_INTERNAL", "resolution": "DNS",
                    "ports": [{"number": 8080.0, "name": "http"}], "endpoints": [{"weight": 3}], "exported": False},
           "status": {"conditions": [{"lastTransitionTime": ago(days=1)}, {"lastTransitionTime": ago(seconds=7)}]}}
    assert render_row(entries, obj, NOW) == [
        "svc-2-bar-global", '["svc-2.bar.global"]', "MESH_INTERNAL", "DNS", 8080, 3.0, False, "federation",
        "2d3h", "7s"]


def test_crd_cells_of_missing_or_mistyped_values_are_empty() -> None:
    registry = Registry()
    (entries,) = registry.add_crd(crd_with_columns())
    obj = {"metadata": {"name": "bare"}, "spec": {"location": 7, "ports": [{"number": "eighty"}],
                                                  "exported": "yes"},
           "status": {"conditions": [{"lastTransitionTime": "yesterday"}]}}
    assert render_row(entries, obj, NOW) == ["bare", None, "7", None, None, None, None, None, None, "<invalid>"]


def test_crd_without_columns_gets_the_age_column() -> None:
    registry = Registry()
    crd = crd_with_columns()
    del crd["spec"]["versions"][0]["additionalPrinterColumns"]
    (entries,) = registry.add_crd(crd)
    assert [c.to_wire()["name"] for c in columns_for(entries)] == ["Name", "Age"]
    assert columns_for(entries)[1].type == "date"
    assert render_row(entries, {"metadata": {"name": "x", "creationTimestamp": ago(seconds=150)}}, NOW) == [
        "x", "2m30s"]


def test_filters_and_wildcards_take_the_first_match() -> None:
    registry = Registry()
    crd = crd_with_columns()
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Ports", "type": "integer", "jsonPath": ".spec.ports[*].number"},
        {"name": "Secure", "type": "boolean", "jsonPath": ".spec.ports[?(@.tls==true)].tls"},
        {"name": "Weird", "type": "string", "jsonPath": ".spec.ports[0:1]"},
    ]
    (entries,) = registry.add_crd(crd)
    obj = {"metadata": {"name": "se"},
           "spec": {"ports": [{"number": 80, "tls": 1}, {"number": 443, "tls": True}]},
           "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert render_row(entries, obj, NOW) == ["se", "True", 80, True, None]
    assert render_row(entries, {"metadata": {"name": "bare"}}, NOW) == ["bare", None, None, None, None]


@pytest.mark.parametrize(("expression", "steps"), [
    (".spec.replicas", ("spec", "replicas")),
    ("{.status.x[0].y}", ("status", "x", 0, "y")),
    (".metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']",
     ("metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration")),
    ('.a["b c"][-1]', ("a", "b c", -1)),
    (".spec.ports[*].port", ("spec", "ports", Wildcard(), "port")),
    ('.status.conditions[?(@.type=="Ready")].status', ("status", "conditions", Filter(("type",), "Ready"), "status")),
    (".a[?(@.b.c == 80)]", ("a", Filter(("b", "c"), 80))),
])
def test_json_path_subset(expression: str, steps: tuple) -> None:
    assert parse_json_path(expression) == steps


@pytest.mark.parametrize("expression", ["spec.replicas", ".a[?(@.x>1)]", "", ".a..b", "{}", ".a[1:2]"])
def test_json_path_outside_the_subset_is_rejected(expression: str) -> None:
    with pytest.raises(StatusError) as caught:
        parse_json_path(expression)
    assert caught.value.code == 400


# --------------------------------------------------------------------------------------------------
# Table objects and watch events


def test_table_object_with_partial_metadata_by_default() -> None:
    objects = [pod("a", statuses=[running(), running("c1")]), pod("b", phase="Pending")]
    table = render_table(rt("pods"), objects, now=NOW, resource_version="9001")
    assert (table["kind"], table["apiVersion"], table["metadata"]) == ("Table", TABLE_V1, {"resourceVersion": "9001"})
    assert table["columnDefinitions"][0] == {"name": "Name", "type": "string", "format": "name",
                                             "description": "Name of the object, unique within its namespace.",
                                             "priority": 0}
    assert [row["cells"][0] for row in table["rows"]] == ["a", "b"]
    partial = table["rows"][0]["object"]
    assert partial["kind"] == "PartialObjectMetadata" and partial["apiVersion"] == TABLE_V1
    assert partial["metadata"]["name"] == "a" and "spec" not in partial


def test_include_object_variants() -> None:
    obj = pod("a", statuses=[running(), running("c1")])
    whole = render_table(rt("pods"), obj, now=NOW, include_object="Object", api_version=TABLE_V1BETA1)
    assert whole["apiVersion"] == TABLE_V1BETA1
    assert whole["rows"][0]["object"] == obj
    assert whole["metadata"] == {"resourceVersion": "4242"}
    bare = {"metadata": {"name": "cfg"}, "data": {}}
    with_type = render_table(rt("configmaps"), bare, now=NOW, include_object="Object")["rows"][0]["object"]
    assert (with_type["apiVersion"], with_type["kind"]) == ("v1", "ConfigMap")
    assert "object" not in render_table(rt("pods"), obj, now=NOW, include_object="None")["rows"][0]
    with pytest.raises(StatusError) as caught:
        render_table(rt("pods"), obj, now=NOW, include_object="Everything")
    assert caught.value.code == 400


def test_paginated_list_and_naive_now() -> None:
    table = render_table(rt("configmaps"), [], now=NOW.replace(tzinfo=None), continue_token="abc",
                         resource_version="7", include_headers=False)
    assert table["metadata"] == {"resourceVersion": "7", "continue": "abc"}
    assert table["columnDefinitions"] == [] and table["rows"] == []
    naive = render_row(rt("configmaps"), {"metadata": {"name": "c", "creationTimestamp": ago(seconds=3)}},
                       NOW.replace(tzinfo=None))
    assert naive[-1] == "3s"


def test_watch_events_in_table_form() -> None:
    obj = pod("a", statuses=[running(), running("c1")])
    event = table_watch_event("MODIFIED", obj, rt("pods"), now=NOW, include_object="Object")
    assert event["type"] == "MODIFIED"
    assert event["object"]["kind"] == "Table"
    assert len(event["object"]["rows"]) == 1
    assert event["object"]["rows"][0]["cells"][:3] == ["a", "2/2", "Running"]
    assert event["object"]["rows"][0]["object"] == obj
    later = table_watch_event("DELETED", obj, rt("pods"), now=NOW, include_headers=False)
    assert later["object"]["columnDefinitions"] == []
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired"}
    assert table_watch_event("ERROR", status, rt("pods"), now=NOW) == {"type": "ERROR", "object": status}
    bookmark = table_watch_event("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "77"}}, rt("pods"),
                                 now=NOW)
    assert bookmark["object"]["metadata"] == {"resourceVersion": "77"} and bookmark["object"]["rows"] == []


# --------------------------------------------------------------------------------------------------
# batch


def _job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "pi", "creationTimestamp": ago(minutes=5)},
            "spec": {"completions": 1, "parallelism": 1, "template": TEMPLATE,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}},
            "status": status}


def test_job_columns_and_a_completed_job() -> None:
    jobs = rt("jobs", "batch")
    assert headers(jobs) == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert headers(jobs, wide=True)[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    done = _job(succeeded=1, startTime=ago(minutes=4), completionTime=ago(minutes=3, seconds=48),
                conditions=[{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}])
    assert visible(jobs, done) == ["pi", "Complete", "1/1", "12s", "5m"]
    assert visible(jobs, done, wide=True)[-1] == "batch.kubernetes.io/controller-uid=u1"


@pytest.mark.parametrize(("conditions", "deleting", "status"), [
    ([], False, "Running"),
    ([{"type": "Failed", "status": "True"}], True, "Failed"),
    ([{"type": "Suspended", "status": "True"}], True, "Terminating"),
    ([{"type": "Suspended", "status": "True"}], False, "Suspended"),
    ([{"type": "FailureTarget", "status": "True"}], False, "FailureTarget"),
    ([{"type": "Complete", "status": "False"}], False, "Running"),
])
def test_job_status_follows_kubectls_order(conditions: list[dict], deleting: bool, status: str) -> None:
    obj = _job(conditions=conditions, active=1, startTime=ago(seconds=30))
    if deleting:
        obj["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert visible(rt("jobs", "batch"), obj)[1:4] == [status, "0/1", "30s"]


def test_work_queue_job_completions_and_an_unstarted_job() -> None:
    queue = _job(succeeded=2)
    queue["spec"] = {"parallelism": 3, "template": TEMPLATE}
    assert visible(rt("jobs", "batch"), queue)[2:4] == ["2/1 of 3", ""]


def test_cron_job() -> None:
    cron_jobs = rt("cronjobs", "batch")
    assert headers(cron_jobs) == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]
    obj = {"metadata": {"name": "hello", "creationTimestamp": ago(hours=2)},
           "spec": {"schedule": "*/5 * * * *", "suspend": False,
                    "jobTemplate": {"spec": {"template": TEMPLATE}}},
           "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(minutes=3)}}
    assert visible(cron_jobs, obj) == ["hello", "*/5 * * * *", "<none>", "False", 1, "3m", "120m"]
    fresh = {"metadata": {"name": "new", "creationTimestamp": ago(seconds=3)}, "spec": {"schedule": "@hourly"}}
    assert visible(cron_jobs, fresh) == ["new", "@hourly", "<none>", "<unset>", 0, "<none>", "3s"]
