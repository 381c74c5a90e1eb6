"""The emulator's HTTP API layer: the Kubernetes REST API one cluster serves, as kubectl and clients speak it.

A request's path through this folder: :mod:`.server` authenticates (:mod:`.auth`), routes (discovery and
OpenAPI from :mod:`.discovery`, :mod:`.openapi` and :mod:`.resources`, or a resource URL), authorizes (RBAC),
decodes the body (JSON, YAML, or protobuf from kubectl: :mod:`.protobuf`), applies a patch if it is one
(:mod:`labkit.emulator.apimachinery`), passes writes through the admission chain (:mod:`.admission`), writes
the store once and encodes the answer (JSON, or a server-side Table: :mod:`.tables`). Exec, attach and logs
stream from the node (:mod:`.streams`), port-forward too (:mod:`.forwarding`, SPDY/3.1 from :mod:`.spdy`), and
``services/proxy``/``pods/proxy`` reach workloads over HTTP (:mod:`.proxying`).
"""
