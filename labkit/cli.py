"""The ``labkit`` command: check the machine, make and inspect certificates, run notebooks.

Every subcommand is a thin shell over a library function, so what a trainer types in a terminal and
what a notebook cell calls behave the same. Errors from labkit print as one ``error:`` line (they are
written to be read) and exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import labkit
from labkit.emulator import launching
from labkit.emulator.envoy.binary import TESTED_VERSION, find_envoy
from labkit.errors import LabkitError, PkiError, ToolNotFoundError
from labkit.pki import (
    CACERTS_FILES,
    SpiffeId,
    TrustBundle,
    check_folder,
    describe,
    make_mesh,
    read_cacerts,
    verify_certificate,
    write_workload,
)
from labkit.pki.pem import read_source

_REAL_CLUSTERS_ONLY = "optional: installs Istio on real clusters"
_OPTIONAL_TOOLS = {
    "kubectl": (["version", "--client", "-o", "yaml"], r"gitVersion: (\S+)", "optional: labs also work without it"),
    "istioctl": (["version", "--remote=false", "--short"], r"(\d+\.\d+\.\S+)", _REAL_CLUSTERS_ONLY),
    "helm": (["version", "--short"], r"(v\d+\.\d+\.\S+)", _REAL_CLUSTERS_ONLY),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``labkit`` command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except LabkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="Multi-cluster Istio workshop toolkit.")
    parser.add_argument("--version", action="version", version=f"labkit {labkit.__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    doctor = commands.add_parser("doctor", help="check this machine: Python, Envoy, Kubernetes tools, contexts")
    doctor.set_defaults(run=_doctor)

    up = commands.add_parser("up", help="start embedded clusters in the background and write their kubeconfig")
    up.add_argument("--clusters", type=_names, default=list(launching.DEFAULT_CLUSTERS),
                    help="comma-separated cluster names (default cluster1,cluster2,cluster3)")
    up.add_argument("--state-dir", type=Path,
                    help="where the kubeconfig and logs live (default $LABKIT_HOME or ~/.labkit)")
    up.add_argument("--networks", default="",
                    help="clusters that share a physical network, e.g. cluster1=east,cluster2=east "
                         "(default: each cluster is a network of its own)")
    up.set_defaults(run=_up)
    state = commands.add_parser("status", help="show the running embedded clusters")
    state.add_argument("--state-dir", type=Path)
    state.set_defaults(run=_status)
    down = commands.add_parser("down", help="stop the embedded clusters and everything they started")
    down.add_argument("--state-dir", type=Path)
    down.set_defaults(run=_down)

    certs = commands.add_parser("certs", help="make, verify and show certificates").add_subparsers(
        title="certs commands", metavar="COMMAND")
    mesh = certs.add_parser("mesh", help="a root and one cacerts folder per cluster (Istio's plug-in CA layout)")
    mesh.add_argument("--clusters", required=True, type=_names, help="comma-separated, e.g. cluster1,cluster2")
    mesh.add_argument("--out", type=Path, default=Path("certs"), help="mesh folder (default: certs)")
    mesh.add_argument("--key", choices=["rsa-4096", "rsa-2048", "ec-p256"], default="rsa-4096",
                      help="key kind for new CAs (default rsa-4096, as Istio's tools/certs)")
    mesh.set_defaults(run=_certs_mesh)

    workload = certs.add_parser("workload", help="issue a workload certificate from a cacerts folder")
    workload.add_argument("ca", type=Path, help="a cacerts folder, e.g. certs/cluster1")
    workload.add_argument("--namespace", "-n", default="default")
    workload.add_argument("--service-account", default="default")
    workload.add_argument("--trust-domain", default="cluster.local")
    workload.add_argument("--spiffe-id", help="the full ID instead of namespace/service account/trust domain")
    workload.add_argument("--hours", type=float, default=24.0, help="lifetime in hours (default 24, as istiod)")
    workload.add_argument("--out", type=Path, required=True, help="folder for cert-chain.pem, key.pem, root-cert.pem")
    workload.set_defaults(run=_certs_workload)

    verify = certs.add_parser("verify", help="verify a folder or a file, one openssl-style line per file")
    verify.add_argument("path", type=Path, help="a mesh, cacerts or workload folder, or a PEM file")
    verify.add_argument("--root", type=Path, help="trusted root (default: root-cert.pem beside the files)")
    verify.add_argument("--untrusted", type=Path, help="intermediates for a single file (like openssl -untrusted)")
    verify.set_defaults(run=_certs_verify)

    show = certs.add_parser("show", help="print the fields of each certificate in a PEM file")
    show.add_argument("file", type=Path)
    show.set_defaults(run=_certs_show)

    bundle = certs.add_parser("bundle", help="print a root as a SPIFFE trust bundle (JWK Set JSON)")
    bundle.add_argument("file", type=Path, help="PEM file with the trust domain's root(s)")
    bundle.add_argument("--trust-domain", required=True)
    bundle.set_defaults(run=_certs_bundle)

    run = commands.add_parser("run", help="execute a notebook headless; write it and its figures to a folder")
    run.add_argument("notebook", help="a path or a stem such as 01-multi-primary (looked up in notebooks/)")
    run.add_argument("--out", type=Path, help="output folder (default: out/<notebook stem>/)")
    run.add_argument("--kernel", default="python3",
                     help="python3 (this environment's Python, the default) or an installed kernelspec")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds per cell (default 600)")
    run.set_defaults(run=_run)
    return parser


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    bad = [n for n in names if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n)]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"cluster names must be lower-case DNS labels, got {bad or value!r}")
    return names


# -- doctor -------------------------------------------------------------------------------------------------

def _doctor(_: argparse.Namespace) -> int:
    rows: list[tuple[str, str, str, str]] = []
    failures: list[str] = []
    python_ok = sys.version_info >= (3, 11)
    rows.append(("python", platform.python_version(), sys.executable, "ok" if python_ok else "needs 3.11+"))
    if not python_ok:
        failures.append("labkit needs Python 3.11 or newer.")
    rows.append(("labkit", labkit.__version__, str(Path(labkit.__file__).parent), "ok"))
    try:
        envoy = find_envoy()
        version = envoy.version()
        note = "ok" if version.startswith(TESTED_VERSION + ".") else f"works; labkit is tested with {TESTED_VERSION}"
        rows.append(("envoy", version, f"{envoy.path} ({envoy.source})", note))
    except ToolNotFoundError as exc:
        rows.append(("envoy", "-", "not found", "REQUIRED for embedded clusters"))
        failures.append(str(exc))
    for tool, (arguments, pattern, note) in _OPTIONAL_TOOLS.items():
        rows.append(_optional_tool(tool, arguments, pattern, note))
    rows.append(_zygote_row())
    rows.append(_sandbox_row())
    rows.append(_network_row())
    _print_table(rows)

    # Imported here: the Kubernetes client takes ~0.25 s to import and only doctor needs it.
    from labkit.kube.contexts import kubeconfig_paths, list_contexts  # noqa: PLC0415

    contexts = list_contexts()
    files = ", ".join(str(p) for p in kubeconfig_paths())
    if contexts:
        print(f"\nkubeconfig contexts ({files}):")
        for context in contexts:
            print(f"  {'*' if context.current else ' '} {context.name}  (cluster {context.cluster})")
    else:
        print(f"\nkubeconfig contexts: none in {files}; labs run on embedded clusters.")
    for failure in failures:
        print(f"\nerror: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _zygote_row() -> tuple[str, str, str, str]:
    """How embedded clusters start labkit programs: forked from a warm interpreter per node, or afresh."""
    from labkit.emulator.node import forking  # noqa: PLC0415 - the node package is only needed here

    if forking.enabled():
        return ("zygote", "on", "proxy agents and istiod fork from one warm interpreter per cluster node", "ok")
    return ("zygote", "off", f"{forking.ENABLE_VARIABLE}=0: every labkit program starts a fresh interpreter",
            "slower pod start, more memory")


def _sandbox_row() -> tuple[str, str, str, str]:
    """What a pod of an embedded cluster has of its own here (hostname, /tmp, volumes), or why it has not."""
    from labkit.emulator.node import sandboxing  # noqa: PLC0415 - the node package is only needed here

    state, detail = sandboxing.describe()
    return ("sandbox", state, detail, "ok" if state == "on" else "pods are not isolated from this machine")


def _network_row() -> tuple[str, str, str, str]:
    """Whether pods of different networks are apart here (another network's pod IPs time out), or why not."""
    from labkit.emulator.network import separation  # noqa: PLC0415 - the emulator is only needed here

    state, detail = separation.describe()
    return ("networks", state, detail, "ok" if state == "on" else "a missing network label goes unnoticed")


def _optional_tool(tool: str, arguments: list[str], pattern: str, note: str) -> tuple[str, str, str, str]:
    path = shutil.which(tool)
    if not path:
        return (tool, "-", "not found", note)
    try:
        output = subprocess.run([path, *arguments], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        output = ""
    match = re.search(pattern, output)
    return (tool, match.group(1) if match else "?", path, "ok")


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# -- embedded clusters --------------------------------------------------------------------------------------

def _up(args: argparse.Namespace) -> int:
    emulator = launching.up(args.clusters, args.state_dir, networks=args.networks)
    print(f"embedded clusters up: {', '.join(emulator.clusters)} (pid {emulator.pid})")
    for name, url in emulator.clusters.items():
        print(f"  {name:<12} {url}")
    print(f"networks: {emulator.networks_detail}")
    print(f"kubeconfig: {emulator.kubeconfig}")
    print(f"export KUBECONFIG={emulator.kubeconfig}")
    return 0


def _status(args: argparse.Namespace) -> int:
    emulator = launching.status(args.state_dir)
    if emulator is None:
        print("no embedded clusters are running (start them with: labkit up)")
        return 1
    uptime = int(time.time() - emulator.started)
    print(f"embedded clusters running (pid {emulator.pid}, up {uptime // 60}m{uptime % 60:02d}s)")
    for name, url in emulator.clusters.items():
        print(f"  {name:<12} {url}")
    print(f"kubeconfig: {emulator.kubeconfig}")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = launching.down(args.state_dir)
    print("embedded clusters stopped" if stopped else "no embedded clusters were running")
    return 0


# -- certs --------------------------------------------------------------------------------------------------

def _certs_mesh(args: argparse.Namespace) -> int:
    mesh = make_mesh(args.out, args.clusters, key=args.key)
    for path in mesh.written:
        print(f"written  {path}")
    for path in mesh.kept:
        print(f"kept     {path}")
    print(f"\nOne root ({args.out / 'root-cert.pem'}), one intermediate per cluster. Plug them into Istio with:")
    for cluster in args.clusters:
        files = " ".join(f"--from-file={args.out / cluster / name}" for name in CACERTS_FILES)
        print(f"  kubectl --context {cluster} create secret generic cacerts -n istio-system {files}")
    return 0


def _certs_workload(args: argparse.Namespace) -> int:
    ca = read_cacerts(args.ca)
    trust_domain = args.trust_domain
    identity = (SpiffeId.parse(args.spiffe_id) if args.spiffe_id
                else SpiffeId.for_workload(trust_domain, args.namespace, args.service_account))
    credential = ca.issue_workload(identity, validity=dt.timedelta(hours=args.hours))
    for path in write_workload(args.out, credential):
        print(f"written  {path}")
    print(f"identity {identity}")
    return 0


def _certs_verify(args: argparse.Namespace) -> int:
    path: Path = args.path
    if path.is_dir():
        checks = check_folder(path, args.root)
        for check in checks:
            print(check)
        return 0 if all(check.ok for check in checks) else 1
    root = args.root or path.parent / "root-cert.pem"
    if not root.is_file():
        raise PkiError(f"no trusted root for {path}: pass --root FILE (for a mesh: certs/root-cert.pem).")
    untrusted = args.untrusted.read_bytes() if args.untrusted else b""
    try:
        chain = verify_certificate(path.read_bytes(), root.read_bytes(), untrusted=untrusted, source=path.name)
    except PkiError as exc:
        print(f"{path.name}: FAILED: {str(exc).removeprefix(path.name + ': ')}")
        return 1
    print(f"{path.name}: OK ({chain.spiffe_id or chain.path[0].subject})")
    return 0


def _certs_show(args: argparse.Namespace) -> int:
    infos = describe(_read(args.file), source=str(args.file))
    for index, info in enumerate(infos, 1):
        if len(infos) > 1:
            print(f"{'' if index == 1 else chr(10)}Certificate {index} of {len(infos)}")
        print(info.render())
    return 0


def _certs_bundle(args: argparse.Namespace) -> int:
    print(TrustBundle.from_pem(args.trust_domain, _read(args.file).decode()).to_json())
    return 0


def _read(path: Path) -> bytes:
    return read_source(path)


# -- run ----------------------------------------------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    # Imported here: nbclient comes with the `lab` extra, and starting a kernel is this command's business only.
    from labkit.running import find_notebook, run_notebook  # noqa: PLC0415

    source = find_notebook(args.notebook)
    print(f"running {source} (kernel {args.kernel})", flush=True)
    result = run_notebook(source, out_dir=args.out, kernel=args.kernel, cell_timeout=args.timeout,
                          progress=lambda line: print(line, flush=True))
    if not result.ok:
        print(result.error, file=sys.stderr)
    print(f"{'wrote' if result.ok else 'wrote the partial notebook'} {result.notebook}"
          + (f" and {len(result.images)} PNG file(s)" if result.images else ""))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
