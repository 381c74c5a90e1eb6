"""SPIRE's manifests for the embedded-cluster tests, shaped as the article's (SPIRE 1.5) and trimmed to one node.

A StatefulSet server with the k8s-workload-registrar beside it, a DaemonSet agent with k8s_psat, the k8sbundle
notifier, health checks; a bundle endpoint behind a LoadBalancer; and a sleep pod that mounts the SPIFFE CSI volume.
Test modules import this by name (the folder's conftest puts it on ``sys.path``).
"""

from __future__ import annotations

from labkit import kube

SPIRE = """
apiVersion: v1
kind: Namespace
metadata: {name: spire}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: spire-server, namespace: spire}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: spire-agent, namespace: spire}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: spire-server-cluster-role}
rules:
- {apiGroups: [""], resources: [pods, nodes], verbs: [get, list, watch]}
- {apiGroups: [authentication.k8s.io], resources: [tokenreviews], verbs: [create]}
- {apiGroups: [""], resources: [configmaps], verbs: [get, list, create, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: spire-server-cluster-role-binding}
subjects: [{kind: ServiceAccount, name: spire-server, namespace: spire}]
roleRef: {kind: ClusterRole, name: spire-server-cluster-role, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: spire-agent-cluster-role}
rules:
- {apiGroups: [""], resources: [pods, nodes, nodes/proxy], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [configmaps], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: spire-agent-cluster-role-binding}
subjects: [{kind: ServiceAccount, name: spire-agent, namespace: spire}]
roleRef: {kind: ClusterRole, name: spire-agent-cluster-role, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: spire-server, namespace: spire}
data:
  server.conf: |
    server {
      bind_address = "0.0.0.0"
      bind_port = "8081"
      socket_path = "/tmp/spire-server/private/api.sock"
      trust_domain = "@DOMAIN@"
      data_dir = "/run/spire/data"
      log_level = "DEBUG"
      ca_subject = { country = ["US"], organization = ["SPIFFE"], common_name = "" }
      federation {
        bundle_endpoint { address = "0.0.0.0"  port = 8443 }
        federates_with "@PEER@" {
          bundle_endpoint_url = "@PEER_URL@"
          bundle_endpoint_profile "https_spiffe" { endpoint_spiffe_id = "spiffe://@PEER@/spire/server" }
        }
      }
    }
    plugins {
      DataStore "sql" {
        plugin_data { database_type = "sqlite3" connection_string = "/run/spire/data/datastore.sqlite3" }
      }
      NodeAttestor "k8s_psat" {
        plugin_data { clusters = { "@CLUSTER@" = { service_account_allow_list = ["spire:spire-agent"] } } }
      }
      KeyManager "disk" { plugin_data { keys_path = "/run/spire/data/keys.json" } }
      UpstreamAuthority "cert-manager" {
        plugin_data { issuer_name = "spire-ca" issuer_kind = "Issuer" namespace = "spire" }
      }
      Notifier "k8sbundle" { plugin_data { namespace = "spire" } }
    }
    health_checks {
      listener_enabled = true
      bind_address = "0.0.0.0"
      bind_port = "8080"
      live_path = "/live"
      ready_path = "/ready"
    }
  k8s-workload-registrar.conf: |
    trust_domain = "@DOMAIN@"
    server_socket_path = "/tmp/spire-server/private/api.sock"
    cluster = "@CLUSTER@"
    mode = "crd"
    pod_controller = true
    identity_template = "ns/{{.Pod.Namespace}}/sa/{{.Pod.ServiceAccount}}"
    identity_template_label = "spiffe.io/spire-managed-identity"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: spire-agent, namespace: spire}
data:
  agent.conf: |
    agent {
      data_dir = "/run/spire"
      server_address = "spire-server"
      server_port = "8081"
      socket_path = "/run/secrets/workload-spiffe-uds/socket"
      trust_bundle_path = "/run/spire/bundle/bundle.crt"
      trust_domain = "@DOMAIN@"
    }
    plugins {
      NodeAttestor "k8s_psat" { plugin_data { cluster = "@CLUSTER@" } }
      KeyManager "memory" { plugin_data { } }
      WorkloadAttestor "k8s" { plugin_data { skip_kubelet_verification = true } }
    }
    health_checks {
      listener_enabled = true
      bind_address = "0.0.0.0"
      bind_port = "8080"
      live_path = "/live"
      ready_path = "/ready"
    }
---
apiVersion: v1
kind: Service
metadata: {name: spire-server, namespace: spire}
spec:
  selector: {app: spire-server}
  ports: [{name: grpc, port: 8081, targetPort: 8081, protocol: TCP}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: spire-server, namespace: spire, labels: {app: spire-server}}
spec:
  replicas: 1
  serviceName: spire-server
  selector: {matchLabels: {app: spire-server}}
  template:
    metadata: {namespace: spire, labels: {app: spire-server}}
    spec:
      serviceAccountName: spire-server
      containers:
      - name: spire-server
        image: gcr.io/spiffe-io/spire-server:1.5.1
        args: [-config, /run/spire/config/server.conf]
        ports: [{containerPort: 8081}]
        livenessProbe: {httpGet: {path: /live, port: 8080}, periodSeconds: 60}
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}
        volumeMounts:
        - {name: spire-config, mountPath: /run/spire/config, readOnly: true}
      - name: k8s-workload-registrar
        image: gcr.io/spiffe-io/k8s-workload-registrar:1.5.1
        args: [-config, /run/spire/config/k8s-workload-registrar.conf]
        volumeMounts:
        - {name: spire-config, mountPath: /run/spire/config, readOnly: true}
      volumes:
      - {name: spire-config, configMap: {name: spire-server}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: spire-agent, namespace: spire, labels: {app: spire-agent}}
spec:
  selector: {matchLabels: {app: spire-agent}}
  template:
    metadata: {namespace: spire, labels: {app: spire-agent}}
    spec:
      serviceAccountName: spire-agent
      containers:
      - name: spire-agent
        image: gcr.io/spiffe-io/spire-agent:1.5.1
        args: [-config, /run/spire/config/agent.conf]
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}
        env:
        - name: MY_NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        volumeMounts:
        - {name: spire-config, mountPath: /run/spire/config, readOnly: true}
        - {name: spire-bundle, mountPath: /run/spire/bundle}
        - {name: spire-token, mountPath: /var/run/secrets/tokens}
      volumes:
      - {name: spire-config, configMap: {name: spire-agent}}
      - {name: spire-bundle, configMap: {name: spire-bundle}}
      - name: spire-token
        projected:
          sources:
          - serviceAccountToken: {path: spire-agent, expirationSeconds: 7200, audience: spire-server}
"""

SLEEP = """
apiVersion: v1
kind: Namespace
metadata: {name: sleep}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sleep, namespace: sleep}
---
apiVersion: v1
kind: Pod
metadata:
  name: sleep-7f9c
  namespace: sleep
  labels: {app: sleep}
  annotations: {spiffe.io/federatesWith: bar.com}
spec:
  serviceAccountName: sleep
  containers:
  - name: sleep
    image: curlimages/curl
    command: [/bin/sleep, "3650d"]
    volumeMounts:
    - {name: workload-socket, mountPath: /run/secrets/workload-spiffe-uds, readOnly: true}
  volumes:
  - name: workload-socket
    csi: {driver: csi.spiffe.io, readOnly: true}
"""


BUNDLE_ENDPOINT = """
apiVersion: v1
kind: Service
metadata: {name: spire-server-bundle-endpoint, namespace: spire}
spec:
  type: LoadBalancer
  selector: {app: spire-server}
  ports: [{name: https, port: 8443, targetPort: 8443, protocol: TCP}]
"""


def load_balancer_ip(cluster: str) -> str | None:
    service = kube.get_object(cluster, "v1", "Service", "spire-server-bundle-endpoint", "spire") or {}
    ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0].get("ip") if ingress else None


def spire_manifests(domain: str, cluster: str, peer: str, peer_url: str) -> str:
    """The SPIRE manifests of one trust domain."""
    text = SPIRE
    for key, value in (("@DOMAIN@", domain), ("@CLUSTER@", cluster), ("@PEER@", peer), ("@PEER_URL@", peer_url)):
        text = text.replace(key, value)
    return text
