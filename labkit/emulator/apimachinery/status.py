"""Builders of the Kubernetes ``Status`` failures raised inside the emulator.

Every layer of the emulator (store, patching, admission, API handlers) reports a failure by raising
:class:`~labkit.errors.StatusError` (it lives in the one error tree, under ``KubeApiError``); the API layer turns
it into the ``meta/v1 Status`` body and HTTP code a real API server sends. Clients branch on ``reason``
(``AlreadyExists`` versus ``Conflict``, for example), so the constructors below keep reasons, codes and the
``details`` block exactly as Kubernetes does.
"""

from __future__ import annotations

from typing import Any

from labkit.errors import StatusError

__all__ = [
    "StatusError", "already_exists", "bad_request", "conflict", "expired", "forbidden", "internal", "invalid",
    "method_not_allowed", "not_found", "unauthorized", "unsupported_media_type",
]


def _details(resource: str, name: str, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    """``pods "x" not found`` (404)."""
    return StatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                       _details(resource, name, group))


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    """``pods "x" already exists`` (409, reason AlreadyExists: distinct from Conflict)."""
    return StatusError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                       _details(resource, name, group))


def conflict(resource: str, name: str, why: str, group: str = "") -> StatusError:
    """An update lost a race or a precondition failed (409, reason Conflict)."""
    return StatusError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        _details(resource, name, group),
    )


def invalid(kind: str, name: str, causes: list[tuple[str, str]], group: str = "") -> StatusError:
    """A rejected object (422). ``causes`` are ``(field, message)`` pairs, e.g. ``("spec.ports[0].port", …)``."""
    summary = ", ".join(f"{field}: {message}" for field, message in causes)
    details = {"name": name, "kind": kind, "causes": [
        {"reason": "FieldValueInvalid", "message": message, "field": field} for field, message in causes
    ]}
    if group:
        details["group"] = group
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> StatusError:
    """A malformed request (400)."""
    return StatusError(400, "BadRequest", message)


def forbidden(message: str, resource: str = "", name: str = "", group: str = "") -> StatusError:
    """Denied by RBAC or by a terminating namespace (403)."""
    return StatusError(403, "Forbidden", message, _details(resource, name, group) if resource else None)


def unauthorized() -> StatusError:
    """No or unknown bearer token (401)."""
    return StatusError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(message: str) -> StatusError:
    """A verb the resource does not support (405)."""
    return StatusError(405, "MethodNotAllowed", message)


def expired(message: str) -> StatusError:
    """A watch asked for a resourceVersion older than the kept history (410)."""
    return StatusError(410, "Expired", message)


def unsupported_media_type(message: str) -> StatusError:
    """A patch type the resource does not accept, e.g. strategic merge on a CRD (415)."""
    return StatusError(415, "UnsupportedMediaType", message)


def internal(message: str) -> StatusError:
    """A bug or an unexpected failure inside the emulator (500)."""
    return StatusError(500, "InternalError", message)
