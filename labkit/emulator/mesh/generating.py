"""Building each proxy's configuration for its ADS stream, without letting one bad object stop the mesh.

istiod builds a proxy's resources when its stream asks (:func:`~labkit.emulator.mesh.xds.generate`), once per
push and proxy. One object that cannot be translated never stops a push (as in istiod): when a proxy's build
fails, the Istio config object whose removal lets it succeed is found, logged by kind, namespace and name with
the reason, and left out — of this push and of every later one until it changes — while everything else flows.
A failure no single object explains is that proxy's alone: it gets nothing new, and the reason is kept for
``/debug/syncz``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable

from labkit.emulator.mesh.model import ConfigObject, MeshSnapshot, Proxy, ProxyConfig
from labkit.emulator.mesh.xds import ProxyCredential, generate
from labkit.errors import LabkitError

_log = logging.getLogger("istiod.push")

Build = Callable[[Proxy, MeshSnapshot, "ProxyCredential | None"], ProxyConfig]


def _build(proxy: Proxy, snapshot: MeshSnapshot, credential: ProxyCredential | None) -> ProxyConfig:
    return generate(proxy, snapshot, credential=credential)


class ConfigGenerator:
    """Builds proxies' configurations, isolating the config objects that cannot be translated.

    Args:
        build: the builder (tests count its calls); :func:`~labkit.emulator.mesh.xds.generate` by default.
    """

    def __init__(self, build: Build = _build):
        self.build = build
        # kind/namespace/name → (the spec that could not be translated, why): left out until the spec changes.
        self.untranslatable: dict[str, tuple[str, str]] = {}
        # proxy id → the configs with which its build failed though no single object was to blame: not searched
        # again until they change (the search builds the proxy once per object).
        self._blameless: dict[str, str] = {}
        # proxy id → why its last build failed (no single object to blame).
        self.errors: dict[str, str] = {}

    def screen(self, snapshot: MeshSnapshot) -> MeshSnapshot:
        """The snapshot without the objects known not to translate (those that changed get another chance)."""
        current = {c.key: c for c in snapshot.configs}
        for key in [k for k, (spec, _) in self.untranslatable.items()
                    if k not in current or _fingerprint(current[k]) != spec]:
            del self.untranslatable[key]
        if not self.untranslatable:
            return snapshot
        return dataclasses.replace(snapshot, configs=tuple(c for c in snapshot.configs
                                                           if c.key not in self.untranslatable))

    def generate(self, proxy: Proxy, snapshot: MeshSnapshot,
                 credential: ProxyCredential | None = None) -> ProxyConfig | None:
        """One proxy's configuration; ``None`` when it cannot be built even without any single object."""
        try:
            config = self.build(proxy, snapshot, credential)
        except Exception as exc:  # one object's failure is isolated below, whatever it raised
            snapshot = self.isolate(proxy, snapshot, credential, exc)
            try:
                config = self.build(proxy, snapshot, credential)
            except Exception as again:  # not caused by one config object: this proxy only
                _log.error("%s: %s", proxy.id, again)
                self.errors[proxy.id] = str(again)
                return None
        self.errors.pop(proxy.id, None)
        return config

    def isolate(self, proxy: Proxy, snapshot: MeshSnapshot, credential: ProxyCredential | None,
                error: Exception) -> MeshSnapshot:
        """The snapshot without the config objects that make this proxy's build fail (each logged once)."""
        configs = json.dumps([[c.key, _fingerprint(c)] for c in snapshot.configs])
        if self._blameless.get(proxy.id) == configs:
            return snapshot
        for _ in range(len(snapshot.configs)):
            culprit = self._culprit(proxy, snapshot, credential)
            if culprit is None:
                self._blameless[proxy.id] = configs
                break
            reason = f"{type(error).__name__}: {error}" if not isinstance(error, LabkitError) else str(error)
            _log.error("%s %s/%s cannot be translated and is left out of the push: %s", culprit.kind,
                       culprit.namespace, culprit.name, reason)
            self.untranslatable[culprit.key] = (_fingerprint(culprit), reason)
            snapshot = dataclasses.replace(snapshot, configs=tuple(c for c in snapshot.configs if c is not culprit))
            try:
                self.build(proxy, snapshot, credential)
                break
            except Exception as exc:  # a second culprit
                error = exc
        return snapshot

    def _culprit(self, proxy: Proxy, snapshot: MeshSnapshot,
                 credential: ProxyCredential | None) -> ConfigObject | None:
        """The first config object without which the build succeeds for ``proxy`` (``None``: no single one)."""
        for config in snapshot.configs:
            trial = dataclasses.replace(snapshot, configs=tuple(c for c in snapshot.configs if c is not config))
            try:
                self.build(proxy, trial, credential)
            except Exception:  # still failing: not this one
                continue
            return config
        return None

    def forget(self, proxy_ids: set[str]) -> None:
        """Drop what is kept about proxies that are gone."""
        for table in (self._blameless, self.errors):
            for gone in [key for key in table if key not in proxy_ids]:
                table.pop(gone)

    def untranslatable_configs(self) -> dict[str, str]:
        """kind/namespace/name → why it is left out of pushes, for ``/debug/configz``."""
        return {key: reason for key, (_, reason) in sorted(self.untranslatable.items())}


def _fingerprint(config: ConfigObject) -> str:
    return json.dumps(config.spec, sort_keys=True, default=str)
