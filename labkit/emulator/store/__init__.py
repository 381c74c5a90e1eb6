"""The in-memory object store of an emulated cluster, and the pure semantics around it.

The API layer above turns HTTP requests into calls here; nothing in this package does I/O:

* label and field selectors, re-exported from :mod:`labkit.core.selectors` for the store's callers;
* :mod:`.patching`: JSON merge patch, JSON patch and strategic merge patch;
* :mod:`.applying`: server-side apply and ``managedFields``;
* :mod:`.objects`: the :class:`Store` (resourceVersions, finalizers, watch events);
* :mod:`.schemas`: the merge keys of built-in kinds that patching and applying share.

Failures are :class:`labkit.emulator.status.StatusError` with the code and reason a real API
server would send.
"""

from __future__ import annotations

from labkit.core.selectors import (
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

from .applying import (
    BEFORE_FIRST_APPLY,
    apply,
    fields_v1,
    managed_fields,
    parse_fields_v1,
    path_string,
    record_update,
)
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
from .patching import STRATEGIC_MERGE_UNSUPPORTED, json_equal, json_patch, merge_patch, strategic_merge_patch
from .schemas import BUILTIN_KINDS, STATUS_RESOURCES, KindInfo, KindKey, kind_key_of, schema_for

__all__ = [
    "ADDED",
    "ALL_FIELDS",
    "BEFORE_FIRST_APPLY",
    "BUILTIN_KINDS",
    "DEFAULT_HISTORY",
    "DELETED",
    "EVERYTHING",
    "MODIFIED",
    "MODIFIED_MESSAGE",
    "NOTHING",
    "STATUS_RESOURCES",
    "STRATEGIC_MERGE_UNSUPPORTED",
    "FieldRequirement",
    "FieldSelector",
    "KindInfo",
    "KindKey",
    "LabelSelector",
    "ListResult",
    "ObjectKey",
    "Requirement",
    "Store",
    "WatchEvent",
    "WatchFilter",
    "apply",
    "field_value",
    "fields_v1",
    "json_equal",
    "json_patch",
    "kind_key_of",
    "label_selector_from_dict",
    "managed_fields",
    "matches_label_selector",
    "merge_patch",
    "parse_field_selector",
    "parse_fields_v1",
    "parse_label_selector",
    "path_string",
    "record_update",
    "rfc3339_now",
    "schema_for",
    "selector_from_labels",
    "strategic_merge_patch",
]
