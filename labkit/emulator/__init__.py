"""Embedded clusters: Kubernetes-compatible API servers, pods as processes, real Envoy.

The emulator runs as a process of its own (``labkit up``); the client side of labkit talks to it
only through the Kubernetes API, exactly as it talks to a real cluster. It may import
``labkit.pki`` and ``labkit.errors``, never the client layers above them.
"""
