"""Real Envoy processes for every sidecar and gateway of the embedded clusters.

- :mod:`.binary`: finding Envoy;
- :mod:`.files`: the on-disk xDS contract, and :class:`XdsWriter`, which istiod publishes with;
- :mod:`.bootstrap`: the bootstrap a proxy starts from;
- :mod:`.agent`: ``pilot-agent``, the program of the ``istio-proxy`` container (runs Envoy, records NACKs);
- :mod:`.admin`: Envoy's admin API and :func:`~.admin.confirm` (ACK/NACK); imports aiohttp, so it is not
  re-exported here, where the agent's start would pay for it;
"""

from labkit.emulator.envoy.binary import EnvoyBinary, find_envoy
from labkit.emulator.envoy.files import Published, Rejection, WrittenFile, XdsWriter, config_source, xds_dir

__all__ = [
    "EnvoyBinary",
    "Published",
    "Rejection",
    "WrittenFile",
    "XdsWriter",
    "config_source",
    "find_envoy",
    "xds_dir",
]
