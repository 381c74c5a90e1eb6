"""Pictures a learner looks at after each step: distributions, latency, the mesh graph, who holds whose keys.

Everything here renders data it is given — a calls DataFrame from ``labkit.traffic.call``, frozen dataclasses
for topology and credentials, bytes and their kinds for a capture's byte map — and never
talks to a cluster, so every chart is unit-tested with the Agg backend.
Functions return :class:`matplotlib.figure.Figure` objects made without pyplot; a notebook cell ends with the
figure (``fig``) so nbval sees its ``<Figure size … with N Axes>``. :class:`LiveDistribution` is the one widget:
an asyncio task on the kernel's loop with a Stop button.
"""

from labkit.viz.credentials import READER_RESOURCES, Grant, credentials_chart, remote_secret_grants
from labkit.viz.distribution import ERRORS, distribution_chart, failed, latency_histogram
from labkit.viz.live import LiveDistribution
from labkit.viz.style import PALETTE, colours_for, to_png
from labkit.viz.topology import Cluster, Edge, Topology, Workload, topology_chart
from labkit.viz.wire import WirePanel, WireStream, wire_chart

__all__ = [
    "ERRORS",
    "PALETTE",
    "READER_RESOURCES",
    "Cluster",
    "Edge",
    "Grant",
    "LiveDistribution",
    "Topology",
    "WirePanel",
    "WireStream",
    "Workload",
    "colours_for",
    "credentials_chart",
    "distribution_chart",
    "failed",
    "latency_histogram",
    "remote_secret_grants",
    "to_png",
    "topology_chart",
    "wire_chart",
]
