"""Real Envoy processes for every sidecar and gateway of the embedded clusters.

- :mod:`.binary`: finding Envoy;
- :mod:`.bootstrap`: the bootstrap a proxy starts from (ADS and SDS from its agent's Unix sockets);
- :mod:`.agent`: ``pilot-agent``, the program of the ``istio-proxy`` container (runs Envoy and the agent);
- :mod:`.workload`: the agent's gRPC side: the workload certificate by CSR, SDS, the ADS proxy to istiod;
- :mod:`.protocol`: Istio's CA and NDS messages, and protobuf/JSON conversions;
- :mod:`.dnsproxy`, :mod:`.nds`, :mod:`.nametables`: the DNS proxy and its name table from istiod;
- :mod:`.admin`: Envoy's admin API; imports aiohttp, so it is not re-exported here, where the agent's start
  would pay for it.
"""

from labkit.emulator.envoy.binary import EnvoyBinary, find_envoy

__all__ = ["EnvoyBinary", "find_envoy"]
