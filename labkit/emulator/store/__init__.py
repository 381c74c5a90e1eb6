"""The in-memory object store of an emulated cluster: what etcd and the registry keep.

The API layer above turns HTTP requests into calls here; nothing in this package does I/O.
:mod:`.objects` holds the :class:`Store`: objects by group, resource, namespace and name, their
resourceVersions, uids, finalizers and generations, and the watch events with the history a watch resumes from.
Selectors come from the shared core (:mod:`labkit.core.selectors`), as the client side filters with the same code.

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
)

__all__ = [
    "ADDED",
    "DEFAULT_HISTORY",
    "DELETED",
    "MODIFIED",
    "MODIFIED_MESSAGE",
    "ListResult",
    "ObjectKey",
    "Store",
    "WatchEvent",
    "WatchFilter",
]
