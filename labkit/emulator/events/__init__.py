"""Events: what the cluster's components say about the objects they act on.

``kubectl describe`` ends with them and they are where a cluster explains itself (``FailedCreate …
failed calling webhook``, ``ErrImagePull``, ``BackOff``), so the emulator's components report them as the
real ones do:

* :mod:`.recording`: an :class:`EventRecorder` per component (``replicaset-controller``, ``kubelet``,
  ``default-scheduler`` …) that writes core/v1 Events and folds repeats into one object, counted up,
  as client-go's event correlator and the events.k8s.io series do;
* :mod:`.views`: the ``events.k8s.io/v1`` face of the same objects (one storage, two API groups, as on a
  real server), field selectors included;
* :mod:`.expiry`: Events live for an hour after their last occurrence (kube-apiserver's ``--event-ttl``),
  so a long lab never accumulates them.
"""

from __future__ import annotations

from .expiry import EVENT_TTL, EventExpiry, expired_events
from .recording import NORMAL, WARNING, EventRecorder, EventSink, object_reference
from .views import EventsView, core_to_events_v1, events_v1_to_core

__all__ = [
    "EVENT_TTL",
    "NORMAL",
    "WARNING",
    "EventExpiry",
    "EventRecorder",
    "EventSink",
    "EventsView",
    "core_to_events_v1",
    "events_v1_to_core",
    "expired_events",
    "object_reference",
]
