"""istioctl proxy-status, parsed from the emulated istiod's /debug/syncz and from istioctl's own table."""

from __future__ import annotations

import json

from labkit.istio.proxy_status import format_table, parse_istioctl, parse_syncz

SYNCZ = json.dumps([
    {"proxy": "sleep-5b4c5d6888-f56s2.sample", "cluster_id": "cluster1", "istiod": "istiod-7d4f9c-abcde",
     "version": "1.24.0", "types": {"CDS": "SYNCED", "LDS": "SYNCED", "EDS": "SYNCED", "RDS": "SYNCED",
                                    "ECDS": "IGNORED", "NDS": "SYNCED"}, "errors": {}},
    {"proxy": "helloworld-v1-abc.sample", "cluster_id": "cluster1", "istiod": "istiod-7d4f9c-abcde",
     "version": "1.24.0", "types": {"CDS": "ERROR", "LDS": "SYNCED", "EDS": "STALE", "RDS": "NOT SENT"},
     "errors": {"CDS": "Error adding/updating cluster(s) bad: ..."}},
])


def test_rows_from_syncz_print_as_istioctl_does() -> None:
    rows = parse_syncz(SYNCZ, "istiod-7d4f9c-abcde")
    assert rows[0].synced and not rows[1].synced
    assert rows[1].errors["CDS"].startswith("Error adding/updating cluster(s) bad")
    assert format_table(rows).splitlines() == [
        "NAME                              CLUSTER      CDS        LDS        EDS        RDS          ECDS        "
        "ISTIOD                  VERSION",
        "sleep-5b4c5d6888-f56s2.sample     cluster1     SYNCED     SYNCED     SYNCED     SYNCED       IGNORED     "
        "istiod-7d4f9c-abcde     1.24.0",
        "helloworld-v1-abc.sample          cluster1     ERROR      SYNCED     STALE      NOT SENT     IGNORED     "
        "istiod-7d4f9c-abcde     1.24.0",
    ]


def test_istioctls_table_with_ages_parses_back() -> None:
    text = ("NAME                          CLUSTER      CDS             LDS             EDS             RDS          "
            "   ECDS         ISTIOD                     VERSION\n"
            "sleep-abc.sample              cluster1     SYNCED (2m)     SYNCED (2m)     SYNCED (2m)     NOT SENT     "
            "   IGNORED      istiod-5c8f7d4c6-xyz12     1.24.0\n")
    (row,) = parse_istioctl(text)
    assert (row.name, row.cluster, row.istiod, row.version) == ("sleep-abc.sample", "cluster1",
                                                                 "istiod-5c8f7d4c6-xyz12", "1.24.0")
    assert row.types == {"CDS": "SYNCED", "LDS": "SYNCED", "EDS": "SYNCED", "RDS": "NOT SENT", "ECDS": "IGNORED"}
