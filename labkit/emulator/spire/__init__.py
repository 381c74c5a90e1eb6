"""SPIRE as programs behind its images: the server, the agent and the Kubernetes workload registrar.

Lab 5 federates two trust domains with SPIRE. Its server, agent and registrar images run these programs on the
embedded node (DESIGN decision 7), talking to each other and to the mesh over the protocols the real ones use
where it matters to a learner: the SPIFFE Workload API and Envoy SDS over gRPC on a Unix socket, SPIFFE bundles
over ``https_spiffe``, node attestation with a projected service-account token reviewed by the API server.

- :mod:`.server`: the ``spire-server`` program: the server (:mod:`.serving`) or a CLI command (:mod:`.cli`)
- :mod:`.serving`: CA (cert-manager-style upstream root), datastore, private and node APIs, bundle endpoint
- :mod:`.cli`: ``spire-server entry|bundle|healthcheck`` as attendees type them
- :mod:`.federation`: the bundle endpoint and the refreshers of federated bundles
- :mod:`.registrar`: ``k8s-workload-registrar``, entries made from pods
- :mod:`.agent`: node attestation, sync, per-pod Workload API and SDS sockets
- :mod:`.workloadapi`: the ``SpiffeWorkloadAPI`` messages and the socket server
- :mod:`.entries`, :mod:`.config`, :mod:`.pods`, :mod:`.sockets`, :mod:`.health`: registration entries, HCL
  configs, the pod a program runs in, Unix socket names, the health-check listener
"""
