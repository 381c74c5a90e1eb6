"""Istio's access-log lines, parsed into what a learner needs: code, flags and the TLS reason."""

from __future__ import annotations

from labkit.istio import parse_access_log

OK = ('[2026-11-21T12:29:26.054Z] "GET /hello HTTP/1.1" 200 - via_upstream - "-" 0 59 44 43 "-" "curl/7.88.1" '
      '"8fdbc105" "helloworld.sample:5000" "127.177.1.5:5000" outbound|5000||helloworld.sample.svc.cluster.local '
      '127.0.0.1:42070 127.177.1.7:15080 127.0.0.1:43052 - default')
FAILED = ('[2026-11-21T12:30:01.000Z] "GET /hello HTTP/1.1" 503 UF,URX upstream_reset_before_response_started'
          '{remote_connection_failure} - "TLS_error:|268435581:SSL_routines:OPENSSL_internal:'
          'CERTIFICATE_VERIFY_FAILED:TLS_error_end" 0 190 12 - "-" "curl/7.88.1" "1a2b" "helloworld.sample:5000" '
          '"127.177.200.6:15443" outbound|5000||helloworld.sample.svc.cluster.local - 127.177.1.7:15080 '
          '127.0.0.1:43066 - default')


def test_parses_success_and_failure_and_skips_envoys_own_lines() -> None:
    text = "\n".join([OK, "2026-11-21T12:26:11Z\twarning\tenvoy config\tsomething else", FAILED])
    ok, failed = parse_access_log(text)
    assert (ok.code, ok.flags, ok.upstream_host, ok.failed) == (200, "-", "127.177.1.5:5000", False)
    assert (failed.code, failed.flags, failed.failed) == (503, "UF,URX", True)
    assert "CERTIFICATE_VERIFY_FAILED" in failed.transport_failure
    assert failed.upstream_host == "127.177.200.6:15443" and failed.path == "/hello"
    assert failed.upstream_cluster == "outbound|5000||helloworld.sample.svc.cluster.local"
