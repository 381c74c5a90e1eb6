"""Server-side ``Table`` rendering: the columns ``kubectl get`` shows.

kubectl does not know how to print a Pod. It asks the server for a ``meta.k8s.io/v1`` Table
(``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,…``) and prints the cells it gets back; a server
that ignores the request gets only NAME and AGE printed, and the labs lose READY, STATUS, IPs and the
EXTERNAL-IP of the east-west gateway. So this module reproduces the printers a v1.32 API server runs
(``pkg/printers/internalversion``) for the kinds the labs touch, computing each cell from the object the
same way: a pod's STATUS is the first waiting or terminated reason, ``Init:0/1`` while init containers
run, ``Terminating`` once a deletion timestamp is set; a LoadBalancer Service without an ingress address
shows ``<pending>``; an Endpoints list is cut after three addresses with `` + N more...``.

The parts, in the order a request meets them:

* :mod:`.negotiation`: does the ``Accept`` header ask for a Table, and which version;
* :mod:`.rendering`: the Table (or Table watch event) of one object or a list;
* :mod:`.core`, :mod:`.apps`, :mod:`.groups`: the printers, one module per API group (the small groups together);
* :mod:`.cells`: the Column type and the formatting every printer shares (ages, label maps, selectors);
* :mod:`.jsonpath`: the JSONPath subset of CRD printer columns.
"""

from __future__ import annotations

from .cells import Column, age, format_label_selector, format_labels, human_duration, parse_time, selector_string
from .core import endpoints_summary, node_status, pod_status, service_external_ip, service_ports
from .jsonpath import Filter, Step, Wildcard, evaluate_json_path, parse_json_path
from .negotiation import TABLE_V1, TABLE_V1BETA1, table_version, wants_table
from .rendering import (
    INCLUDE_METADATA,
    INCLUDE_NONE,
    INCLUDE_OBJECT,
    columns_for,
    render_row,
    render_table,
    table_watch_event,
)

__all__ = [
    "INCLUDE_METADATA",
    "INCLUDE_NONE",
    "INCLUDE_OBJECT",
    "TABLE_V1",
    "TABLE_V1BETA1",
    "Column",
    "Filter",
    "Step",
    "Wildcard",
    "age",
    "columns_for",
    "endpoints_summary",
    "evaluate_json_path",
    "format_label_selector",
    "format_labels",
    "human_duration",
    "node_status",
    "parse_json_path",
    "parse_time",
    "pod_status",
    "render_row",
    "render_table",
    "selector_string",
    "service_external_ip",
    "service_ports",
    "table_version",
    "table_watch_event",
    "wants_table",
]
