"""How an API server stores a Secret's ``stringData``: folded into ``data``, base64, never kept itself.

The embedded API server does it when a Secret is written; ``labkit.kube.apply`` does it before sending one, so
applying the same manifest again is a no-op (``stringData`` is write-only: sent as is, it always differs from
what is stored).
"""

from __future__ import annotations

import base64

from labkit.core.wire import Obj


def fold_string_data(secret: Obj) -> Obj:
    """Move ``secret``'s ``stringData`` into its ``data`` in place (and return it): each value base64, winning over
    the same key of ``data``, as a real server merges them.

    Args:
        secret: a core/v1 Secret as it is on the wire.
    """
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = dict(secret.get("data") or {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        secret["data"] = data
    return secret
