"""The embedded mesh: istiod's job (watch, model, certificates, xDS) and the Envoy resources it builds.

- :mod:`.model`: the frozen snapshot of the mesh and the proxies it configures;
- :mod:`.xds`: pure builders, snapshot + proxy → Envoy clusters, listeners, routes, endpoints, secrets.
"""
