"""The in-memory object store of an emulated cluster: what etcd and the registry keep.

The API layer above turns HTTP requests into calls here; nothing in this package does I/O:

* :mod:`.objects`: the :class:`Store` (resourceVersions, uids, finalizers, watch events and their history);
* :mod:`.selectors`: label and field selectors (strings and ``LabelSelector`` objects).

What the store does *not* know is how an object is transformed before it is written (patches, server-side
apply, the merge keys of built-in kinds): that is :mod:`labkit.emulator.apimachinery`, pure functions the API
layer applies and then hands the result here. Failures are
:class:`~labkit.emulator.apimachinery.status.StatusError` with the code and reason a real API server would send.
"""

from __future__ import annotations

from .objects import (
    ADDED,
    DEFAULT_HISTORY,
    DELETED,
    MODIFIED,
    MODIFIED_MESSAGE,
    ListResult,
    ObjectKey,
    Store,
    WatchEvent,
    WatchFilter,
    rfc3339_now,
)
from .selectors import (
    ALL_FIELDS,
    EVERYTHING,
    NOTHING,
    FieldRequirement,
    FieldSelector,
    LabelSelector,
    Requirement,
    field_value,
    label_selector_from_dict,
    matches_label_selector,
    parse_field_selector,
    parse_label_selector,
    selector_from_labels,
)

__all__ = [
    "ADDED",
    "ALL_FIELDS",
    "DEFAULT_HISTORY",
    "DELETED",
    "EVERYTHING",
    "MODIFIED",
    "MODIFIED_MESSAGE",
    "NOTHING",
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "ListResult",
    "ObjectKey",
    "Requirement",
    "Store",
    "WatchEvent",
    "WatchFilter",
    "field_value",
    "label_selector_from_dict",
    "matches_label_selector",
    "parse_field_selector",
    "parse_label_selector",
    "rfc3339_now",
    "selector_from_labels",
]
