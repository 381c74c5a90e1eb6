"""What a container sees: its environment (the Downward API included), its command line, its ``PATH`` shims.

Every container gets what a kubelet gives (``HOSTNAME``, ``KUBERNETES_SERVICE_HOST``/``_PORT``, the variables of
its ``envFrom`` ConfigMaps and Secrets, the ``env`` of its spec with the Downward API's ``fieldRef`` and
``resourceFieldRef``, ``secretKeyRef`` and ``configMapKeyRef`` resolved and ``$(VAR)`` expanded) plus what the
emulated node adds for the programs that read the pod's files from its folder, sandboxed or not: ``POD_IP``,
``LABKIT_POD_UID``, ``LABKIT_SERVICEACCOUNT_DIR`` (the projected token, unless ``automountServiceAccountToken: false``),
``LABKIT_KUBERNETES_CA_FILE`` and ``LABKIT_LISTEN`` (``<address>:<port>`` a labkit program binds), and the
pod's ``resolv.conf`` as ``LABKIT_DNS_SERVER`` (the cluster DNS, ``ip:port``) and ``LABKIT_DNS_SEARCH``.

A pod that declares a sidecar (:class:`~.pods.SidecarDeclaration`) has an *app address* besides its pod IP:
the proxy container gets ``LABKIT_APP_ADDRESS`` (where its inbound listeners forward); the other containers
listen on that address and get ``http_proxy``/``HTTP_PROXY`` = ``http://<pod IP>:<declared port>`` and
``no_proxy``/``NO_PROXY`` for the pod's own addresses, since no iptables rule redirects their traffic (DESIGN
decision 5). The pod's ``bin/`` comes first on ``PATH``: the curl shim and ``nslookup`` resolve names through the
pod's resolver, and images whose programs are also commands (``pilot-agent``) get a shim of that name. The
pod's resolver is the cluster DNS, or the sidecar's DNS proxy on the pod IP when the sidecar declaration names
one (``dnsPort``): that replaces the iptables rule that sends a real pod's port-53 traffic to Istio's agent, so,
as there, ``resolv.conf`` (and ``nslookup``'s ``Server:`` line) still names the cluster DNS.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from labkit.emulator.node import images
from labkit.emulator.node.pods import ContainerRecord, PodRecord

CLUSTER_DOMAIN = "cluster.local"
PROGRAMS_DIR = images.PROGRAMS_DIR

RefResolver = Callable[[str, str, str, str], "str | None"]
DataReader = Callable[[str, str, str], "dict[str, str] | None"]

# Kubernetes' resource.Quantity suffixes (binary and decimal SI).
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


class ContainerConfigError(Exception):
    """What a container's environment names is missing: the kubelet holds it in ``CreateContainerConfigError``."""


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")  # an escaped $, or a $(VAR)


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known variables are replaced, ``$$`` escapes, the rest stays.

    Args:
        value: an ``env`` value, a command or an argument.
        env: the variables defined so far.
    """
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))
    return _REFERENCE.sub(replace, value)


def unset_references(value: str, env: dict[str, str]) -> list[str]:
    """The variables ``value`` refers to (``$(VAR)``, not ``$$(VAR)``) that have no value in ``env``, sorted."""
    return sorted({m.group(1) for m in _REFERENCE.finditer(value) if m.group(1) and not env.get(m.group(1))})


@dataclass(frozen=True)
class NodeEnvironment:
    """What every container of one node is given, and how the rest is computed from its pod.

    Args:
        node_name: the node (``spec.nodeName`` fieldRef when the pod names none).
        host_ip: the node's address (``status.hostIP``).
        host_path: the machine's ``PATH``, after the pod's ``bin/``.
        kubernetes_service: ``(host, port)`` of the ``kubernetes`` Service, or None.
        ca_file: the cluster CA certificate (PEM file), or None.
        resolve_ref: ``(namespace, kind, name, key) -> value`` for ``secretKeyRef``/``configMapKeyRef``.
        python: the interpreter for labkit programs.
        read_data: ``(namespace, kind, name) -> data`` (Secrets decoded) for ``envFrom``; ``None`` for a missing
            object.
    """

    node_name: str
    host_ip: str
    host_path: str
    kubernetes_service: tuple[str, int] | None = None
    ca_file: Path | None = None
    resolve_ref: RefResolver | None = None
    python: str = ""
    read_data: DataReader | None = None

    def container_env(self, pod: PodRecord, container: ContainerRecord, app_address: str,
                      dns: tuple[str, int] | None = None) -> dict[str, str]:
        """The environment of one container (without ``LABKIT_LISTEN``, which needs the port).

        Args:
            pod: the pod's record.
            container: the container's record.
            app_address: where the pod's apps listen (the pod IP unless a sidecar moved them).
            dns: the cluster DNS as ``(ip, port)``: the pod's ``resolv.conf``, as ``LABKIT_DNS_SERVER`` and
                ``LABKIT_DNS_SEARCH`` (a DNS proxy forwards there).
        """
        env: dict[str, str] = {
            "PATH": f"{pod.bin_dir}{os.pathsep}{self.host_path}",
            "HOSTNAME": pod.name,
            "HOME": str(pod.dir),
            "POD_IP": pod.ip,
            "LABKIT_POD_UID": pod.uid,
        }
        if self.kubernetes_service is not None:
            host, port = self.kubernetes_service
            env.update({
                "KUBERNETES_SERVICE_HOST": host,
                "KUBERNETES_SERVICE_PORT": str(port),
                "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
                "KUBERNETES_PORT": f"tcp://{host}:{port}",
            })
        if self.ca_file is not None:
            env["LABKIT_KUBERNETES_CA_FILE"] = str(self.ca_file)
        if pod.account_dir is not None:
            env["LABKIT_SERVICEACCOUNT_DIR"] = str(pod.account_dir)
        if dns is not None:
            env["LABKIT_DNS_SERVER"] = f"{dns[0]}:{dns[1]}"
            env["LABKIT_DNS_SEARCH"] = search_list(pod.namespace)
        if pod.sidecar is not None:
            if pod.is_proxy(container):
                env["LABKIT_APP_ADDRESS"] = app_address
            elif pod.sidecar.http_proxy_port:
                proxy = f"http://{pod.ip}:{pod.sidecar.http_proxy_port}"
                bypass = ",".join(dict.fromkeys(["localhost", "127.0.0.1", pod.ip, app_address]))
                env.update({"http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": bypass, "NO_PROXY": bypass})
        if container.launch is not None:
            if container.launch.program.site:
                env["PYTHONPATH"] = str(images.SOURCE_ROOT)
            env.update(dict(container.launch.program.env))
        env.update(self.env_from(pod, container))
        for item in container.spec.get("env") or []:
            value = self.env_value(pod, item, container.name)
            if value is not None and item["name"] != "PATH":  # the shims must stay first on PATH
                env[item["name"]] = expand(value, env)
        return env

    def env_from(self, pod: PodRecord, container: ContainerRecord) -> dict[str, str]:
        """The variables of the container's ``envFrom``: every key of each ConfigMap or Secret, after its ``prefix``.

        Later sources win over earlier ones, and ``env`` over all of them, as on a kubelet. A missing source that
        is ``optional`` gives nothing.

        Args:
            pod: the pod's record.
            container: the container's record.

        Raises:
            ContainerConfigError: a source that is not ``optional`` does not exist.
        """
        env: dict[str, str] = {}
        for source in container.spec.get("envFrom") or []:
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = source.get(field)
                if ref is None or self.read_data is None:
                    continue
                data = self.read_data(pod.namespace, kind, ref.get("name", ""))
                if data is None and not ref.get("optional"):
                    raise ContainerConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
                data = data or {}
                prefix = source.get("prefix") or ""
                env.update({f"{prefix}{key}": value for key, value in data.items() if "=" not in key})
        return env

    def env_value(self, pod: PodRecord, item: dict[str, Any], container: str = "") -> str | None:
        """One ``env`` entry's value: literal, Downward API ``fieldRef`` or ``resourceFieldRef``, or a
        Secret/ConfigMap key.

        Args:
            pod: the pod's record.
            item: the ``env`` entry.
            container: the container the entry belongs to (``resourceFieldRef`` without ``containerName``).

        Raises:
            ContainerConfigError: a Secret or ConfigMap (or its key) it names is missing and not ``optional``.
        """
        if "value" in item:
            return str(item["value"])
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            path = source["fieldRef"].get("fieldPath", "")
            fields = {
                "metadata.name": pod.name,
                "metadata.namespace": pod.namespace,
                "metadata.uid": pod.uid,
                "status.podIP": pod.ip,
                "status.podIPs": pod.ip,
                "status.hostIP": self.host_ip,
                "status.hostIPs": self.host_ip,
                "spec.serviceAccountName": pod.spec.get("serviceAccountName") or "default",
                "spec.nodeName": pod.spec.get("nodeName") or self.node_name,
            }
            match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            if match:
                return (pod.annotations if match.group(1) == "annotations" else pod.labels).get(match.group(2), "")
            return fields.get(path, "")
        if "resourceFieldRef" in source:
            return resource_value(pod, source["resourceFieldRef"], container)
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if key in source and self.resolve_ref is not None:
                ref = source[key]
                name, wanted = ref.get("name", ""), ref.get("key", "")
                value = self.resolve_ref(pod.namespace, kind, name, wanted)
                if value is None and not ref.get("optional"):
                    # The kubelet's words for the two cases.
                    if self.read_data is not None and self.read_data(pod.namespace, kind, name) is None:
                        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
                    raise ContainerConfigError(f"couldn't find key {wanted} in {kind} {pod.namespace}/{name}")
                return value
        return None

    def argv(self, container: ContainerRecord) -> list[str]:
        """The command line of a container's program, ``$(VAR)`` expanded against its environment.

        Args:
            container: the container's record (its ``env`` already computed).

        Raises:
            FileNotFoundError: a host command that is not on the pod's ``PATH``.
        """
        launch = container.launch
        assert launch is not None
        if launch.host_argv is not None:
            argv = [expand(arg, container.env) for arg in launch.host_argv]
            program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=container.env.get("PATH"))
            if program is None:
                raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH')
            return [program, *argv[1:]]
        # Kubernetes expands $(VAR) in args too (Istio's sidecar passes --domain $(POD_NAMESPACE).svc.cluster.local).
        expanded = images.Launch(launch.program, tuple(expand(arg, container.env) for arg in launch.args))
        return images.python_argv(expanded, self.python)

    def write_shims(self, pod: PodRecord, dns: tuple[str, int] | None) -> None:
        """Write the pod's ``bin/``: a shim per program that is also an image's command, and the curl shim.

        Args:
            pod: the pod's record (its ``bin/`` exists).
            dns: the cluster DNS as ``(ip, port)``; without it the machine's curl is the pod's curl.
        """
        # The binaries of images whose programs are commands too, so `kubectl exec … -- pilot-agent request GET
        # clusters` works as in a real container.
        # By image, not by what runs: a container that overrides its command still carries its image's binaries.
        programs = {images.match_image(c.image) for c in pod.containers.values()}
        for program in sorted((p for p in programs if p is not None and p.site), key=lambda p: p.name):
            shim = pod.bin_dir / program.name
            shim.write_text(f"#!/bin/sh\n# Written by labkit's node: {program.name} of pod "
                            f"{pod.namespace}/{pod.name}.\n"
                            f"PYTHONPATH={shlex.quote(str(images.SOURCE_ROOT))} exec {shlex.quote(self.python)} "
                            f"-s -m {program.module} \"$@\"\n")
            shim.chmod(0o755)
        if dns is None:
            return  # without a cluster DNS the machine's curl is the pod's curl
        asked = resolver_address(pod, dns)
        search = search_list(pod.namespace)
        lookup = {"LABKIT_SHIM_NAMESERVER": f"{dns[0]}:{dns[1]}", "LABKIT_SHIM_DNS": f"{asked[0]}:{asked[1]}",
                  "LABKIT_SHIM_SEARCH": search, "LABKIT_SHIM_SOURCE": pod.ip}
        nslookup = " ".join(f"{key}={shlex.quote(value)}" for key, value in lookup.items())
        shim = pod.bin_dir / "nslookup"
        shim.write_text(f"#!/bin/sh\n# Written by labkit's node: nslookup as pod {pod.namespace}/{pod.name} runs it "
                        f"(through the pod's resolver).\n"
                        f"{nslookup} exec {shlex.quote(self.python)} -E -s -S "
                        f"{shlex.quote(str(PROGRAMS_DIR / 'nslookup.py'))} \"$@\"\n")
        shim.chmod(0o755)
        real_curl = shutil.which("curl", path=self.host_path)
        if real_curl is None:
            return  # without curl, exec says so
        settings = {
            "LABKIT_SHIM_DNS": f"{asked[0]}:{asked[1]}",
            "LABKIT_SHIM_SEARCH": search,
            "LABKIT_SHIM_SOURCE": pod.ip,
            "LABKIT_SHIM_CURL": real_curl,
        }
        assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in settings.items())
        script = (f"#!/bin/sh\n# Written by labkit's node: curl as pod {pod.namespace}/{pod.name} runs it "
                  f"(cluster names resolved through the cluster DNS), then the machine's curl.\n"
                  f"{assignments} exec {shlex.quote(self.python)} -I -S "
                  f"{shlex.quote(str(PROGRAMS_DIR / 'curl_shim.py'))} \"$@\"\n")
        shim = pod.bin_dir / "curl"
        shim.write_text(script)
        shim.chmod(0o755)


def quantity(text: str | int | float) -> Fraction:
    """A Kubernetes quantity (``100m``, ``128Mi``, ``1e3``, ``2``) as an exact number.

    Args:
        text: the quantity.

    Raises:
        ValueError: not a quantity.
    """
    match = re.fullmatch(r"([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)", str(text).strip())
    if match is None:
        raise ValueError(f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                         f": {text!r}")
    number, exponent, suffix = match.groups()
    value = Fraction(number)
    return value * 10 ** int(exponent[1:]) if exponent else value * _SUFFIXES[suffix or ""]


def resource_value(pod: PodRecord, ref: dict[str, Any], own: str) -> str:
    """The Downward API's ``resourceFieldRef``: a container's request or limit divided by ``divisor``, rounded up.

    A limit that is not set is the node's allocatable (this machine's CPUs and memory), as on a kubelet.

    Args:
        pod: the pod's record.
        ref: the ``resourceFieldRef`` (``resource``, ``divisor``, ``containerName``).
        own: the container the variable belongs to (when ``containerName`` is left out).
    """
    resource = ref.get("resource", "")
    name = ref.get("containerName") or own
    spec = next((c for c in pod.spec.get("containers") or [] if c.get("name") == name), {})
    kind, _, what = resource.partition(".")
    amounts = (spec.get("resources") or {}).get(kind) or {}
    if what not in amounts and kind == "requests":
        amounts = (spec.get("resources") or {}).get("limits") or {}  # a request defaults to the limit
    if what in amounts:
        value = quantity(amounts[what])
    elif what == "cpu":
        value = Fraction(os.cpu_count() or 1) if kind == "limits" else Fraction(0)
    elif what == "memory" and kind == "limits":
        value = Fraction(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    else:
        value = Fraction(0)
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(value / divisor)) if divisor else "0"


def search_list(namespace: str) -> str:
    """A pod's ``resolv.conf`` search domains, as the kubelet writes them (``ClusterFirst``)."""
    return f"{namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"


def resolver_address(pod: PodRecord, dns: tuple[str, int]) -> tuple[str, int]:
    """Where the pod's programs send their DNS queries: its sidecar's DNS proxy when the pod declares one
    (in place of Istio's iptables rule for port 53), else the cluster DNS.

    Args:
        pod: the pod's record.
        dns: the cluster DNS.
    """
    if pod.sidecar is not None and pod.sidecar.dns_port:
        return pod.ip, pod.sidecar.dns_port
    return dns


def listen_port(container: ContainerRecord, env: dict[str, str]) -> int | None:
    """The port a labkit program should bind, or None for host commands and programs that serve nothing.

    The image's own port, unless the program reads its port from the environment (``port_env``) and the spec
    set it, or the manifest declares exactly one other port (the app listens there: honour it rather than be
    unreachable).

    Args:
        container: the container's record.
        env: its environment.
    """
    launch = container.launch
    declared = [int(p["containerPort"]) for p in container.spec.get("ports") or []
                if (p.get("protocol") or "TCP") == "TCP" and "containerPort" in p]
    if launch is None or launch.host_argv is not None or not launch.program.default_ports:
        return None
    program = launch.program
    if program.port_env and env.get(program.port_env, "").isdigit():
        return int(env[program.port_env])
    default = program.default_ports[0]
    return declared[0] if len(declared) == 1 and default not in declared else default
