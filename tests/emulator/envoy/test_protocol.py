"""Istio's own messages built in code, and builders' JSON resources packed for the wire."""

from __future__ import annotations

from labkit.emulator.envoy import protocol


def test_name_table_round_trips_as_istio_declares_it():
    table = protocol.NameTable()
    table.table["helloworld.sample.svc.cluster.local"].ips.append("10.96.0.12")
    table.table["helloworld.sample.svc.cluster.local"].shortname = "helloworld"
    parsed = protocol.NameTable.FromString(table.SerializeToString())
    assert protocol.to_dict(parsed) == {"table": {"helloworld.sample.svc.cluster.local": {
        "ips": ["10.96.0.12"], "shortname": "helloworld"}}}


def test_certificate_request_carries_csr_ttl_and_metadata():
    request = protocol.IstioCertificateRequest(csr="PEM", validity_duration=120,
                                               metadata=protocol.struct({"ClusterID": "cluster1"}))
    again = protocol.IstioCertificateRequest.FromString(request.SerializeToString())
    assert (again.csr, again.validity_duration, again.metadata["ClusterID"]) == ("PEM", 120, "cluster1")


def test_a_resource_with_typed_extensions_packs_without_importing_them_first():
    cluster = {"name": "outbound|5000||helloworld.sample.svc.cluster.local", "type": "EDS",
               "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                   "sni": "outbound_.5000_._.helloworld.sample.svc.cluster.local"}}}
    packed = protocol.to_any(cluster, protocol.CLUSTER)
    assert packed.type_url == protocol.CLUSTER
    assert protocol.to_dict(protocol.to_message(cluster, protocol.CLUSTER))["transport_socket"]["typed_config"][
        "sni"] == "outbound_.5000_._.helloworld.sample.svc.cluster.local"
