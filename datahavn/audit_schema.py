"""The audit event schema (version 1), shared by the server extension, the audit service and the CLI.

An event is a flat JSON object. The audit service fills ``seq``, ``time``,
``user``, ``project`` and ``server`` itself (identity comes from the poster's
hub token, never from the payload) and the store adds ``prev_hash`` and
``hash``. Fields:

| field | type | meaning |
|---|---|---|
| ``schema`` | int | schema version, 1 |
| ``seq`` | int | position in the one sequence, from 1, no gaps |
| ``time`` | str | UTC, ISO 8601 with ``Z`` |
| ``kind`` | str | one of :data:`KINDS` |
| ``user`` | str | the hub user the event is about (the actor for hub events) |
| ``actor`` | str | hub events: who acted (user or service name) |
| ``project`` | str | project (= server name) or null |
| ``server`` | str | ``user/project`` for server events |
| ``kernel_id``, ``session``, ``msg_id``, ``msg_type``, ``channel`` | str | kernel message identity |
| ``path`` | str | notebook path, when known |
| ``code`` | str | the full code (or message content) that can run in the kernel |
| ``code_sha256`` | str | SHA-256 of ``code`` (UTF-8) |
| ``status``, ``duration_ms``, ``output_bytes`` | | ``execute_reply``: outcome |
| ``outcome`` | str | ``ok``, ``refused``, ``error`` ... |
| ``detail`` | str or object | anything else (a denied route, a grant's expiry ...) |
"""

from __future__ import annotations

import hashlib

SCHEMA_VERSION = 1

KINDS = frozenset({
    "execute", "execute_reply", "login", "login_failed", "logout", "spawn", "spawn_refused", "stop",
    "grant", "revoke", "project_create", "user_add", "denied", "egress_alert", "dataset_import", "resource_limit",
    "content_read", "hub_api", "airlock_request", "airlock_check", "airlock_review", "airlock_release",
    "airlock_download", "airlock_refused", "airlock_view", "dask_cluster_start", "dask_cluster_scale",
    "dask_cluster_stop",
})  # fmt: skip

#: Kernel messages that can make the kernel run code: each is recorded as an
#: ``execute`` event before it reaches the kernel.
CODE_MSG_TYPES = frozenset({
    "execute_request", "input_reply", "comm_open", "comm_msg", "comm_close", "debug_request",
})  # fmt: skip

#: What a server may post: its own events about its own kernels. The rest is the hub's.
SERVER_KINDS = frozenset({"execute", "execute_reply", "denied", "egress_alert", "resource_limit", "content_read"})

#: Fields a server may set; identity fields are the service's.
SERVER_FIELDS = frozenset({
    "kind", "kernel_id", "session", "msg_id", "msg_type", "channel", "path", "code",
    "status", "duration_ms", "output_bytes", "outcome", "detail",
})  # fmt: skip


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class InvalidEvent(ValueError):
    pass


def server_event(payload: object) -> dict:
    """Validate an event posted by a single-user server; identity is added by the caller."""
    if not isinstance(payload, dict):
        raise InvalidEvent("an event is a JSON object")
    kind = payload.get("kind")
    if kind not in SERVER_KINDS:
        raise InvalidEvent(f"kind {kind!r} cannot be posted by a server")
    unknown = set(payload) - SERVER_FIELDS
    if unknown:
        # e.g. "user" or "project": a server does not choose its identity
        raise InvalidEvent(f"fields not allowed from a server: {', '.join(sorted(unknown))}")
    event = {"schema": SCHEMA_VERSION, **payload}
    if "code" in event:
        if not isinstance(event["code"], str):
            raise InvalidEvent("code must be a string")
        event["code_sha256"] = sha256(event["code"])
    return event
