"""Which local program stands in for a container image (DESIGN decision 7: images are programs).

There is no container runtime here, so "pulling" an image means finding the labkit program that
behaves like it. Images are matched by *repository name* only: the registry, tag and digest are
ignored, because the samples move between registries (``docker.io/istio/…`` became
``registry.istio.io/release/…``) and tags while the program behind them stays the same.

An image nobody knows must fail loudly and usefully, the way a typo in an image name does on a
real cluster: the pod stays ``Pending`` with ``ErrImagePull`` and the message lists what *does*
work here, so a learner can fix the manifest rather than wonder why nothing happens.

Istio's own images are programs too: ``istio/proxyv2`` (every sidecar and gateway: ``pilot-agent proxy
sidecar|router …``) runs labkit's agent, which starts a real Envoy, and ``istio/pilot`` (``pilot-discovery
discovery …``) runs labkit's istiod. SPIRE's server, agent and registrar images run labkit's SPIRE programs
(:mod:`labkit.emulator.spire`). All of these are full programs with dependencies (aiohttp), so unlike the
small servers, which start in ~12 ms without site-packages, they run as ``python -m <module>`` with them.

A container ``command`` that only waits (``sleep infinity``, ``sleep 3650d``, ``tail -f /dev/null``; a sleep of an
hour or more) runs the idle program whatever the image: that is how the curl/sleep samples keep a client pod
alive for ``kubectl exec``.

The shell images (``busybox``, ``alpine``, ``ubuntu``, ``debian``, ``istio/base``) run any other ``command``/``args``
as their entrypoint would: with the machine's POSIX shell ``/bin/sh`` standing in for the image's ``sh``/``ash``/
``bash``, and other programs taken from the pod's ``PATH`` (its shims such as ``nslookup`` first, then the
machine's), in the pod's folder. That is what a Job (``sh -c 'echo done'``) needs to run and end. Without a command
they keep idling, as they always did here.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

PROGRAMS_PACKAGE = "labkit.emulator.node.programs"
PROGRAMS_DIR = Path(__file__).parent / "programs"
# Where ``labkit`` is imported from: put on PYTHONPATH for ``-m`` programs, so a source checkout works too.
SOURCE_ROOT = Path(__file__).resolve().parents[3]
AGENT_MODULE = "labkit.emulator.envoy.agent"
ISTIOD_MODULE = "labkit.emulator.mesh.istiod"
SPIRE_PACKAGE = "labkit.emulator.spire"


@dataclass(frozen=True)
class Program:
    """A local program that plays the part of a container image.

    Args:
        name: the program's short name, also its module under ``labkit.emulator.node.programs``.
        module: the module run as ``python -m <module>``; empty for host commands (the curl image's
            own entrypoint runs the machine's curl).
        default_ports: the ports the real image listens on, in order.
        image: the canonical image reference, as shown in the list of known images.
        env: environment the real image sets (its Dockerfile ``ENV``), as ``(name, value)`` pairs.
        site: whether it needs site-packages; such programs run as ``python -m <module>``, the others as
            a script with ``-S``. Their images also carry them as a command (``pilot-agent request …`` in
            ``kubectl exec``), so the node puts a shim of that name on the pod's ``PATH``.
        port_env: an environment variable that, set to a number, moves the program's port (helloworld's
            ``SERVICE_PORT``); empty when the port is fixed.
    """

    name: str
    module: str
    default_ports: tuple[int, ...] = ()
    image: str = ""
    env: tuple[tuple[str, str], ...] = ()
    site: bool = False
    port_env: str = ""

    @property
    def mesh_proxy(self) -> bool:
        """Whether this is Istio's proxy image (the agent and its Envoy), which listens on the pod IP itself."""
        return self.module == AGENT_MODULE


@dataclass(frozen=True)
class Launch:
    """What to start for one container.

    Args:
        program: the program that plays the image.
        args: arguments for a labkit program.
        host_argv: a command to run from the pod's ``PATH`` instead of a labkit program (the curl image
            runs the machine's curl); ``None`` for labkit programs.
    """

    program: Program
    args: tuple[str, ...] = ()
    host_argv: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Rule:
    """Repository names (the last path segments of an image) that map to one program."""

    repositories: tuple[str, ...]
    program: Program


def _program(name: str, ports: tuple[int, ...], image: str, port_env: str = "", **env: str) -> Program:
    module = f"{PROGRAMS_PACKAGE}.{name}" if name else ""
    return Program(name, module, ports, image, tuple(env.items()), port_env=port_env)


SLEEP = _program("sleep", (), "labkit/sleep")
SHELL = _program("sleep", (), "docker.io/istio/base")
POSIX_SHELL = "/bin/sh"
CURL = Program("curl", "", (), "curlimages/curl")
PROXY = Program("pilot-agent", AGENT_MODULE, (), "docker.io/istio/proxyv2", site=True)
ISTIOD = Program("pilot-discovery", ISTIOD_MODULE, (), "docker.io/istio/pilot", site=True)
# SPIRE's images (ghcr.io/spiffe/…, gcr.io/spiffe-io/… for 1.5): their entrypoints are `spire-server run` and
# `spire-agent run`, and the server's binary is also the CLI attendees exec (`spire-server entry show`).
SPIRE_SERVER = Program("spire-server", f"{SPIRE_PACKAGE}.server", (8081,), "ghcr.io/spiffe/spire-server", site=True)
SPIRE_AGENT = Program("spire-agent", f"{SPIRE_PACKAGE}.agent", (), "ghcr.io/spiffe/spire-agent", site=True)
SPIRE_REGISTRAR = Program("k8s-workload-registrar", f"{SPIRE_PACKAGE}.registrar", (),
                          "gcr.io/spiffe-io/k8s-workload-registrar", site=True)

_RULES: tuple[_Rule, ...] = (
    _Rule(("examples-helloworld-v1",),
          _program("helloworld", (5000,), "registry.istio.io/release/examples-helloworld-v1", "SERVICE_PORT",
                   SERVICE_VERSION="v1")),
    _Rule(("examples-helloworld-v2",),
          _program("helloworld", (5000,), "registry.istio.io/release/examples-helloworld-v2", "SERVICE_PORT",
                   SERVICE_VERSION="v2")),
    # Lab 2's demo application (labkit's own images: the article's app is not published as images).
    _Rule(("demo-dashboard",), _program("demoapp", (8080,), "labkit/demo-dashboard", "SERVICE_PORT",
                                        DEMO_ROLE="dashboard")),
    _Rule(("demo-profile",), _program("demoapp", (8080,), "labkit/demo-profile", "SERVICE_PORT", DEMO_ROLE="profile")),
    _Rule(("demo-accounts",), _program("demoapp", (8080,), "labkit/demo-accounts", "SERVICE_PORT",
                                       DEMO_ROLE="accounts")),
    _Rule(("curlimages/curl", "governmentpaas/curl-ssl", "appropriate/curl", "curl"), CURL),
    _Rule(("istio/base", "busybox", "alpine", "ubuntu", "debian"), SHELL),
    _Rule(("nginx", "library/nginx", "nginxinc/nginx-unprivileged"), _program("nginx", (80,), "nginx")),
    _Rule(("kennethreitz/httpbin",), _program("httpbin", (80,), "docker.io/kennethreitz/httpbin")),
    _Rule(("mccutchen/go-httpbin",), _program("httpbin", (8080,), "mccutchen/go-httpbin")),
    # Lab 4's svc-1/svc-2/svc-3: names itself, its cluster and the caller's SPIFFE identity.
    _Rule(("labkit/whoami",), _program("whoami", (8000,), "labkit/whoami", "PORT")),
    # Any registry and organisation: docker.io/istio/…, gcr.io/istio-release/…, a mirror of either.
    _Rule(("proxyv2",), PROXY),
    _Rule(("pilot",), ISTIOD),
    _Rule(("spire-server",), SPIRE_SERVER),
    _Rule(("spire-agent",), SPIRE_AGENT),
    _Rule(("k8s-workload-registrar",), SPIRE_REGISTRAR),
)

# Images a container may name to get the idle program (the sleep sample's own image among them).
_SLEEPING = re.compile(r"^(?:/(?:usr/)?bin/)?sleep$")


def repository(image: str) -> str:
    """The repository part of an image reference: no registry host, no tag, no digest.

    ``registry.istio.io/release/examples-helloworld-v1:1.0`` → ``release/examples-helloworld-v1``;
    ``nginx:alpine`` → ``nginx``; ``docker.io/library/nginx@sha256:…`` → ``library/nginx``.
    """
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    parts = name.split("/")
    # A first segment with a dot or a port, or "localhost", is a registry host (Docker's own rule).
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return "/".join(parts).lower()


def match_image(image: str) -> Program | None:
    """The program for ``image``, or ``None`` if labkit does not know it.

    A rule's repository matches the whole repository name or its trailing segments, so
    ``istio/examples-helloworld-v1`` and ``release/examples-helloworld-v1`` both match
    ``examples-helloworld-v1``.
    """
    repo = repository(image)
    for rule in _RULES:
        for known in rule.repositories:
            if repo == known or repo.endswith("/" + known):
                return rule.program
    return None


def known_images() -> list[str]:
    """The canonical image of every program, for messages."""
    seen: list[str] = []
    for rule in _RULES:
        if rule.program.image not in seen:
            seen.append(rule.program.image)
    return seen


def pull_error_message(image: str) -> str:
    """The ``ErrImagePull`` message for an image labkit does not know."""
    return (f'Failed to pull image "{image}": labkit\'s embedded node runs images as local programs and knows: '
            f"{', '.join(known_images())}")


def pull_backoff_message(image: str) -> str:
    """The ``ImagePullBackOff`` message: Kubernetes' words, and still the list of what works."""
    return (f'Back-off pulling image "{image}": labkit\'s embedded node runs images as local programs and knows: '
            f"{', '.join(known_images())}")


def _simple_commands(argv: list[str]) -> list[list[str]] | None:
    """The simple commands of ``argv``: ``sh -c '…'`` split at ``;``, ``&&``, ``||``, ``&`` (``exec`` dropped).

    ``None`` when the script cannot be parsed.
    """
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in {"sh", "bash", "ash"} and argv[1] == "-c":
        try:
            lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = [word for word in lexer if word != "exec"]
        except ValueError:
            return None
        commands: list[list[str]] = [[]]
        for word in words:
            if word in {";", "&&", "||", "&"}:
                commands.append([])
            else:
                commands[-1].append(word)
        return [command for command in commands if command]
    return [argv]


def _waits(command: list[str]) -> bool:
    """``sleep`` for an hour or more (or ``infinity``), or ``tail -f /dev/null``."""
    if _SLEEPING.match(command[0]):
        return _long_sleep(command[1:])
    return command[0].rsplit("/", 1)[-1] == "tail" and "/dev/null" in command and "-f" in command


def _long_sleep(args: list[str]) -> bool:
    """Whether ``sleep ARGS`` waits an hour or more: short sleeps are part of a command's work (a Job's)."""
    total = 0.0
    for arg in args or ["0"]:
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+|inf(?:inity)?)([smhd]?)", arg)
        if match is None:
            return True  # not a duration sleep understands: keep treating it as a long wait
        number, unit = match.groups()
        if number.startswith("inf"):
            return True
        total += float(number) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total >= 3600


def is_idle_command(argv: list[str]) -> bool:
    """Whether a container command only waits forever (or for a long time) and does nothing else.

    Recognised: ``sleep <an hour or more>``, ``tail -f /dev/null``, and either of those under ``sh -c``, where
    the last simple command decides (``trap … ; sleep infinity``).
    """
    commands = _simple_commands(argv) if argv else None
    return bool(commands) and _waits(commands[-1])  # type: ignore[index]


def only_waits(argv: list[str]) -> bool:
    """Whether a command does nothing but wait: :func:`is_idle_command`, with only ``trap`` before the wait.

    A shell image runs anything else in its shell, so ``sh -c 'echo ready; sleep 3600'`` prints its line.
    """
    commands = _simple_commands(argv) if argv else None
    return bool(commands) and _waits(commands[-1]) and all(  # type: ignore[index]
        command[0] == "trap" for command in commands[:-1])  # type: ignore[index]


def plan_launch(image: str, command: list[str] | None, args: list[str] | None) -> Launch | None:
    """What to run for a container, or ``None`` when the image is unknown (``ErrImagePull``).

    Args:
        image: the container's ``image``.
        command: the container's ``command`` (the image's entrypoint when absent).
        args: the container's ``args``.
    """
    program = match_image(image)
    if program is None:
        return None
    argv = list(command or []) + list(args or [])
    if program is SHELL and argv and not only_waits(argv):
        # busybox's image has no entrypoint, so `args` alone are the command, as with `docker run busybox echo hi`.
        return Launch(program, host_argv=shell_argv(argv))
    if command and is_idle_command(argv):
        return Launch(SLEEP)
    if program is CURL:
        # The curl image's entrypoint is curl itself: `args` are curl's arguments; a command replaces it.
        return Launch(CURL, host_argv=tuple(argv if command else ["curl", *(args or [])]))
    if program.name == "sleep":
        return Launch(program)
    # Server images run their program; a custom command for them is not interpreted (there is no shell image here).
    return Launch(program, tuple(args or ()) if not command else ())


def shell_argv(argv: list[str]) -> tuple[str, ...]:
    """A shell image's command line on this machine: its ``sh``, ``ash`` or ``bash`` is the machine's ``/bin/sh``.

    Args:
        argv: the container's ``command`` + ``args`` (not empty).
    """
    if argv[0].rsplit("/", 1)[-1] in {"sh", "ash", "bash"}:
        return (POSIX_SHELL, *argv[1:])
    return tuple(argv)


def python_argv(launch: Launch, python: str) -> list[str]:
    """The command line of a labkit program (not of a host command such as curl).

    Args:
        launch: what :func:`plan_launch` planned, with ``host_argv`` unset.
        python: the interpreter.
    """
    if launch.program.site:
        # -s: not the user's site-packages; PYTHON* variables stay honoured so PYTHONPATH can name SOURCE_ROOT.
        return [python, "-s", "-m", launch.program.module, *launch.args]
    script = PROGRAMS_DIR / f"{launch.program.name}.py"
    # -E -s -S: no site-packages (a third of the start time) and nothing from the pod's PYTHON* variables.
    return [python, "-E", "-s", "-S", str(script), *launch.args]
