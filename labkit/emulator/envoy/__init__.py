"""Real Envoy processes for every sidecar and gateway of the embedded clusters."""

from labkit.emulator.envoy.binary import EnvoyBinary, find_envoy

__all__ = ["EnvoyBinary", "find_envoy"]
