"""Admission on DELETE: the request's propagation policy becomes finalizers, before the store deletes.

The store knows finalizers, not propagation policies. On DELETE the API server calls
:func:`finalizers_for_delete` with the stored object and the request's ``propagationPolicy`` (or legacy
``orphanDependents``); when it returns an object, the server writes it and then calls ``Store.delete``,
exactly as the real registry adds the finalizers inside the delete. The garbage collector
(:mod:`labkit.emulator.controllers.garbage`) then carries them out. The same function adds ``kubernetes``
to a Namespace's ``metadata.finalizers`` so that the namespace controller can empty it first.
"""

from __future__ import annotations

import copy

from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.controllers.framework import is_deleting
from labkit.emulator.controllers.garbage import (
    BACKGROUND_POLICY,
    FOREGROUND,
    FOREGROUND_POLICY,
    ORPHAN,
    ORPHAN_POLICY,
)


def finalizers_for_delete(
    obj: Obj,
    propagation_policy: str | None = None,
    *,
    orphan_dependents: bool | None = None,
) -> Obj | None:
    """The object with the finalizers a DELETE must add before ``Store.delete``, or ``None``.

    Args:
        obj: the stored object about to be deleted.
        propagation_policy: ``Background`` (default), ``Foreground`` or ``Orphan`` from DeleteOptions.
        orphan_dependents: the deprecated DeleteOptions field (``true`` means Orphan).

    Returns:
        A copy with finalizers added, for ``Store.update``; ``None`` when nothing needs adding
        (Background, or the object is already being deleted: new finalizers are refused then).

    Raises:
        StatusError: 400 for an unknown policy.
    """
    if propagation_policy not in (None, "", BACKGROUND_POLICY, FOREGROUND_POLICY, ORPHAN_POLICY):
        raise StatusError(
            400, "BadRequest",
            f'propagationPolicy: Unsupported value: "{propagation_policy}": supported values: '
            '"Orphan", "Background", "Foreground"',
        )
    if is_deleting(obj):
        return None
    wanted: list[str] = []
    if propagation_policy == FOREGROUND_POLICY:
        wanted.append(FOREGROUND)
    elif propagation_policy == ORPHAN_POLICY or (not propagation_policy and orphan_dependents):
        wanted.append(ORPHAN)
    if obj.get("kind") == "Namespace" and "kubernetes" in ((obj.get("spec") or {}).get("finalizers") or []):
        wanted.append("kubernetes")
    current = list((obj.get("metadata") or {}).get("finalizers") or [])
    # Foreground and Orphan exclude each other: the request's policy replaces an earlier one.
    if FOREGROUND in wanted or ORPHAN in wanted:
        current = [f for f in current if f not in (FOREGROUND, ORPHAN)]
    missing = [f for f in wanted if f not in current]
    if not missing and current == list((obj.get("metadata") or {}).get("finalizers") or []):
        return None
    result = copy.deepcopy(obj)
    result.setdefault("metadata", {})["finalizers"] = current + missing
    return result
