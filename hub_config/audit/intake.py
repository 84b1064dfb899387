"""What servers send the audit service: checked, capped per server, appended in batches.

- **Identity** is the caller's token's, as the hub reports it (:func:`datahavn.tokens.server_identity`),
  stamped on the event; a payload naming a user or project is refused.
- **Caps per server**: an event larger than ``max_bytes`` is refused; so is a server posting
  faster than ``rate`` events a second beyond a ``burst``. Either refusal is recorded once, as
  a ``denied`` event, until the server behaves again (a flood cannot flood the trail with its
  refusals). A refused event is an unrecorded one: the server does not run the code.
- **Batches**: a writer thread appends whatever has queued while the last append was being
  written in one transaction (one fsync), and each caller's future resolves when its record
  is stored. One cell's record never waits behind more than one commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from datahavn.audit_schema import InvalidEvent, server_event

from .store import AuditStore

log = logging.getLogger("datahavn.audit")
BATCH_MAX = 500


class Refused(ValueError):
    """The event is not recorded: why, in one line (the server says it to the researcher)."""


class BatchWriter:
    """Appends to the store from one thread, as many queued events per transaction as there are."""

    def __init__(self, store: AuditStore):
        self.store = store
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self.thread.start()

    def append(self, events: list[dict]) -> asyncio.Future:
        """A future of the stored records of ``events`` (appended together, in one transaction or several)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.queue.put((events, loop, fut))
        return fut

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            size = len(batch[0][0])
            while size < BATCH_MAX:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
                size += len(batch[-1][0])
            try:
                records = self.store.append_many([e for events, _, _ in batch for e in events])
                results, at = [], 0
                for events, _, _ in batch:
                    results.append((records[at : at + len(events)], None))
                    at += len(events)
            except Exception as e:  # the store refused: every caller must refuse its code
                log.error("AUDIT: a batch of %d events was not stored: %s", size, e)
                results = [(None, e)] * len(batch)
            for (_, loop, fut), (stored, error) in zip(batch, results, strict=True):
                loop.call_soon_threadsafe(_settle, fut, stored, error)


def _settle(fut: asyncio.Future, record, error) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(record)


@dataclass
class Bucket:
    """A token bucket: ``rate`` a second, up to ``burst``; ``noted`` once a refusal was recorded."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = field(default_factory=time.monotonic)
    noted: set = field(default_factory=set)

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            if self.tokens >= self.burst / 2:
                self.noted.clear()  # behaving again: a new flood is a new refusal to record
            return True
        return False


class ServerIntake:
    """The service's door for servers' events (see the module)."""

    def __init__(self, store: AuditStore, max_bytes: int = 2_000_000, rate: float = 50.0, burst: float = 500.0):
        self.writer = BatchWriter(store)
        self.max_bytes, self.rate, self.burst = max_bytes, rate, burst
        self.buckets: dict[tuple[str, str], Bucket] = {}

    async def record(self, identity: tuple[str, str], payload: object, size: int) -> dict:
        """Append a server's event as that server; ``{"seq", "hash"}``, or :class:`Refused`."""
        (record,) = await self.record_many(identity, [payload], size)
        return {"seq": record["seq"], "hash": record["hash"]}

    async def record_many(self, identity: tuple[str, str], payloads: list, size: int) -> list[dict]:
        """Append events nothing waits on (replies), all or none: their stored records, or :class:`Refused`.

        ``size`` is the frame's: a batch is capped like one event (servers send small ones).
        """
        bucket = self.buckets.setdefault(identity, Bucket(self.rate, self.burst))
        if size > self.max_bytes:
            await self._note(identity, bucket, "size", f"an audit event of {size} bytes, above {self.max_bytes}")
            raise Refused(f"the event is {size} bytes; the audit service takes {self.max_bytes} at most")
        if not all(bucket.take() for _ in payloads):
            await self._note(identity, bucket, "rate", f"more than {self.rate:g} audit events a second")
            raise Refused(f"more than {self.rate:g} events a second from this server: refused until it slows")
        user, project = identity
        events = []
        for payload in payloads:
            try:
                event = server_event(payload)
            except InvalidEvent as e:
                raise Refused(f"invalid event: {e}") from None
            event.update(user=user, project=project, server=f"{user}/{project}")
            events.append(event)
        return await self.writer.append(events)

    async def _note(self, identity: tuple[str, str], bucket: Bucket, why: str, detail: str) -> None:
        if why in bucket.noted:
            return
        bucket.noted.add(why)
        user, project = identity
        log.warning("AUDIT: %s/%s refused: %s", user, project, detail)
        try:
            await self.writer.append([{"schema": 1, "kind": "denied", "user": user, "project": project,
                                       "server": f"{user}/{project}", "outcome": "refused",
                                       "detail": f"audit service: {detail}"}])  # fmt: skip
        except Exception:
            log.exception("AUDIT: the refusal of %s/%s was not recorded", user, project)
