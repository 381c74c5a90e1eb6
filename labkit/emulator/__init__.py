"""Embedded clusters: Kubernetes-compatible API servers, pods as processes, real Envoy.

The emulator runs as a process of its own (``labkit up``); the client side of labkit talks to it
only through the Kubernetes API, exactly as it talks to a real cluster. It may import ``labkit.pki``,
``labkit.errors`` and the shared core (``labkit.core``), never the client layers above them.

The three modules at the top are the process itself, so a newcomer starts reading here:

* :mod:`.launching`: what ``labkit up``/``down`` call in the *client's* process — start the emulator process
  in the background, find a running one, stop it (the only module the client imports);
* :mod:`.process`: ``python -m labkit.emulator`` — the address plan, one :class:`~.cluster.Cluster` per
  cluster, the kubeconfig and state files, and a clean shutdown that takes every child with it;
* :mod:`.cluster`: one cluster wired together — its API server, controllers, node, DNS and service proxy —
  and the two loops that carry store events to the node and the network.

Below them the folders follow a request down and its effects out (import-linter enforces the order):

* :mod:`.api`: the Kubernetes REST API; :mod:`.api.admission` is the chain every write passes through
  (defaulting → mutating webhooks → validation → allocation → validating webhooks);
* :mod:`.controllers`: what kube-controller-manager does (Deployments, ReplicaSets, Endpoints, garbage …);
* :mod:`.node` (pods as processes) and :mod:`.mesh` (istiod, the ``pilot`` image's program), independent of
  each other; :mod:`.envoy`: the ``proxyv2`` image's agent and its real Envoy;
* :mod:`.network`: addresses, cluster DNS, the service proxy and its packet captures;
* :mod:`.store`: objects, resourceVersions and watch history; :mod:`.apimachinery`: patches, server-side
  apply, schemas and ``Status`` builders, pure functions the API server applies before the store writes.
"""
