"""API machinery: how an object changes on its way to the store, and how a refusal is worded.

Kubernetes keeps these in ``k8s.io/apimachinery``; they are pure functions of objects, shared by the API
server (which applies them inside a request) and the tests, and they know nothing of HTTP or of the store:

* :mod:`.patching`: JSON merge patch, JSON Patch (RFC 6902, from the ``jsonpatch`` library) and strategic
  merge patch;
* :mod:`.applying`: server-side apply and ``managedFields``;
* :mod:`.schemas`: the merge keys and status subresources of built-in kinds that patching and applying share;
* :mod:`.status`: the ``Status`` builders (``not_found``, ``invalid`` …) every layer raises through
  :class:`~labkit.errors.StatusError`.
"""

from __future__ import annotations

from .applying import (
    BEFORE_FIRST_APPLY,
    apply,
    fields_v1,
    managed_fields,
    parse_fields_v1,
    path_string,
    record_update,
)
from .patching import STRATEGIC_MERGE_UNSUPPORTED, json_equal, json_patch, merge_patch, strategic_merge_patch
from .schemas import BUILTIN_KINDS, STATUS_RESOURCES, KindInfo, KindKey, kind_key_of, schema_for

__all__ = [
    "BEFORE_FIRST_APPLY",
    "BUILTIN_KINDS",
    "STATUS_RESOURCES",
    "STRATEGIC_MERGE_UNSUPPORTED",
    "KindInfo",
    "KindKey",
    "apply",
    "fields_v1",
    "json_equal",
    "json_patch",
    "kind_key_of",
    "managed_fields",
    "merge_patch",
    "parse_fields_v1",
    "path_string",
    "record_update",
    "schema_for",
    "strategic_merge_patch",
]
