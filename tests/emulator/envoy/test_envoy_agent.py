"""The agent with a real Envoy and a stand-in istiod over gRPC: readiness, node identity, pilot-agent request,
signals, dying together, the DNS proxy."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from envoy_kit import Agent, StandInIstiod, alive, first_push, get, pod_ips, poll, run, running_agent, wait_ready

from labkit.emulator.envoy import admin
from labkit.emulator.envoy.agent import drain_seconds, envoy_argv, main

pytestmark = pytest.mark.slow


def test_envoy_agent_ready_only_once_envoy_applied_lds_and_cds(tmp_path: Path, istiod: StandInIstiod) -> None:
    ip = pod_ips(1)[0]
    with pytest.raises(ConnectionRefusedError):
        get(ip, 15021, "/healthz/ready")
    with running_agent(tmp_path / "pod", ip, tmp_path / "log", istiod=istiod, configured=False) as agent:
        # Envoy runs and its stream is open, but until istiod answers it waits: nothing answers on 15021.
        poll(lambda: istiod.connection(agent.node_id), "the proxy's ADS stream through its agent")
        status, state = poll(lambda: get(ip, 15000, "/ready"), "Envoy's admin")
        assert (status, state.strip()) in ((503, "PRE_INITIALIZING"), (503, "INITIALIZING"))
        with pytest.raises(ConnectionRefusedError):
            get(ip, 15021, "/healthz/ready")
        first_push(agent)
        wait_ready(agent)
        assert get(ip, 15021, "/healthz/ready") == (200, "LIVE\n")
        counters = run(admin.stats(agent.admin, r"\.update_success$"))
        assert counters["listener_manager.lds.update_success"] >= 1
        assert counters["cluster_manager.cds.update_success"] >= 1
        assert run(admin.ready(agent.admin))
        # Only the status path is served there; the admin itself is not exposed on 15021.
        assert get(ip, 15021, "/stats")[0] == 404


def test_envoy_agent_bootstrap_names_the_pod_istio_style(agent: Agent) -> None:
    bootstrap = json.loads((agent.directory / "etc/istio/proxy/envoy-rev.json").read_text())
    node = bootstrap["node"]
    assert node["id"] == f"sidecar~{agent.ip}~helloworld-v1-abc.sample~sample.svc.cluster.local"
    assert node["cluster"] == "helloworld.sample"
    assert node["metadata"]["CLUSTER_ID"] == "cluster1"
    assert node["metadata"]["NETWORK"] == "network1"
    assert node["metadata"]["LABELS"] == {"app": "helloworld", "version": "v1"}
    assert node["metadata"]["INSTANCE_IPS"] == agent.ip
    # Configuration and secrets come from the agent's sockets in the pod's folder, as in Istio's bootstrap.
    pipes = {c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"]
             for c in bootstrap["static_resources"]["clusters"] if c["name"] in ("xds-grpc", "sds-grpc")}
    assert pipes == {"xds-grpc": "etc/istio/proxy/XDS", "sds-grpc": "var/run/secrets/workload-spiffe-uds/socket"}
    assert bootstrap["dynamic_resources"]["cds_config"]["ads"] == {}
    server_info = json.loads(get(agent.ip, 15000, "/server_info")[1])
    assert server_info["state"] == "LIVE"
    assert server_info["command_line_options"]["concurrency"] == 1
    assert server_info["command_line_options"]["reject_unknown_dynamic_fields"] is True


def test_envoy_agent_request_get_prints_envoys_answer(agent: Agent) -> None:
    def request(path: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "labkit.emulator.envoy.agent", "request", "GET", path],
                              env=agent.env, capture_output=True, timeout=10, check=False)

    clusters = request("clusters")
    assert clusters.returncode == 0, clusters.stderr
    direct = get(agent.ip, 15000, "/clusters")[1]
    # Envoy lists clusters in no fixed order, and counters move between the two asks: compare the other lines.
    static_lines = sorted(line for line in direct.splitlines() if "::cx_" not in line and "::rq_" not in line)
    assert sorted(line for line in clusters.stdout.decode().splitlines()
                  if "::cx_" not in line and "::rq_" not in line) == static_lines
    assert f"agent::{agent.ip}:15000::health_flags::healthy" in static_lines
    assert request("ready").stdout == b"LIVE\n"
    assert json.loads(request("config_dump").stdout)["configs"]
    missing = request("no_such_page")
    assert missing.returncode == 1


def test_envoy_agent_sigterm_stops_envoy(agent: Agent) -> None:
    envoy = agent.envoy_pid()
    assert "envoy" in Path(f"/proc/{envoy}/cmdline").read_bytes().decode()
    agent.process.send_signal(signal.SIGTERM)
    assert agent.process.wait(5) == 0
    poll(lambda: not alive(envoy), "Envoy to exit")
    assert not Path(f"/proc/{envoy}").exists() or not alive(envoy)


def test_envoy_agent_killed_takes_envoy_with_it(agent: Agent) -> None:
    envoy = agent.envoy_pid()
    agent.process.kill()
    agent.process.wait(5)
    poll(lambda: not alive(envoy), "Envoy to die with its agent (PR_SET_PDEATHSIG)")


def test_envoy_agent_refuses_to_start_without_its_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              ) -> None:
    assert main(["proxy", "sidecar"], {"POD_NAME": "p", "POD_NAMESPACE": "ns"}) == 1
    assert "INSTANCE_IP is not set" in capsys.readouterr().err
    assert main(["proxy", "waypoint"], {}) == 1
    assert "unknown proxy type" in capsys.readouterr().err
    assert main(["version"], {}) == 2


def test_envoy_agent_with_dns_capture_serves_the_pods_dns_on_its_ip(tmp_path: Path, istiod: StandInIstiod) -> None:
    class ClusterDns(BaseResolver):  # type: ignore[misc]
        def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
            reply = request.reply()
            if str(request.q.qname) == "kubernetes.default.svc.cluster.local.":
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("127.250.101.1"), ttl=5))
            else:
                reply.header.rcode = RCODE.NXDOMAIN
            return reply

    upstream = DNSServer(ClusterDns(), address="127.0.0.1", port=0, logger=DNSLogger("-recv,-send,-request,-reply",
                                                                                      prefix=False))
    upstream.start_thread()
    ip = pod_ips(1)[0]
    capture = {"ISTIO_META_DNS_CAPTURE": "true", "LABKIT_DNS_SERVER": f"127.0.0.1:{upstream.server.server_address[1]}",
               "LABKIT_DNS_SEARCH": "sample.svc.cluster.local svc.cluster.local cluster.local"}

    def ask(name: str) -> DNSRecord:
        return DNSRecord.parse(DNSRecord.question(name).send(ip, 15053, timeout=2))

    def answered() -> DNSRecord | None:
        try:
            return ask("kubernetes.default.svc.cluster.local")
        except OSError:
            return None  # not listening yet

    try:
        with running_agent(tmp_path / "pod", ip, tmp_path / "log", istiod=istiod, extra_env=capture) as agent:
            wait_ready(agent)
            # This istiod sends no name table: every name goes to the cluster DNS, answers unchanged.
            reply = poll(answered, "the DNS proxy on :15053")
            assert [str(rr.rdata) for rr in reply.rr] == ["127.250.101.1"]
            assert ask("nowhere.sample.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
            agent.stop()
            with pytest.raises(OSError):
                DNSRecord.question("kubernetes.default.svc.cluster.local").send(ip, 15053, tcp=True, timeout=1)
    finally:
        upstream.stop()
        upstream.server.server_close()



@pytest.mark.parametrize(("proxy_config", "seconds"), [
    ('{"drainDuration": "2s"}', 2), ('{"drainDuration": "1m30s"}', 90), ("", None), ("not json", None)])
def test_envoy_agent_drains_for_the_proxy_configs_drain_duration(proxy_config: str, seconds: int | None) -> None:
    """Envoy cuts a removed filter chain's connections after the proxy config's drainDuration, when it sets one."""
    argv = envoy_argv("envoy", Path("bootstrap.json"), drain_seconds({"PROXY_CONFIG": proxy_config}))
    if seconds is None:
        assert "--drain-time-s" not in argv
        return
    assert argv[argv.index("--drain-time-s") + 1] == str(seconds)
    assert argv[argv.index("--drain-strategy") + 1] == "immediate"
