"""The workspace's one egress budget: every byte this server sends to the browser, counted at one choke point.

Counting is below every route: tornado's ``RequestHandler.flush`` (every HTTP response body,
whatever handler wrote it) and ``WebSocketHandler.write_message`` (every frame of every
websocket: all kernel channels and message types, events, ...). A route nobody listed is
counted like the others. Only static files of the users' environment (root-owned, the same
for everyone, the lab's code) are not counted: they cannot carry a workspace's data.

The total lives with the audit service, per (user, project), over a rolling hour and day
(:mod:`datahavn.hub_config.audit.egress`): the server reports what it sent every second and
gets the totals and limits back, so new kernels and server restarts start where the last left
off. Between reports the server adds what it has sent since (a report on its way counts too); when it
cannot report (the last report failed, or one has been on its way 5 s), it stops sending content once
2 MB are unreported (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from tornado import web, websocket
from tornado.ioloop import IOLoop

log = logging.getLogger("datahavn")

#: bytes the server may send without having reported them (the audit service unreachable)
UNREPORTED_MAX = 2_000_000
#: report at least this often, and as soon as this much is pending
REPORT_SECONDS = 1.0
REPORT_BYTES = 512_000
#: how long a report on its way may take before the unreported bytes stop what is sent
REPORT_GRACE = 5.0
NOTICE_AT = 0.8
ROOT_OWNED = os.path.realpath(sys.prefix) + os.sep


class WorkspaceMeter:
    """What this workspace has sent, as the audit service last said plus what is not reported yet."""

    def __init__(self, report=None):
        #: ``async report(nbytes) -> {"hour": n, "day": n, "limits": {"hour": n, "day": n}}``
        self.report = report
        self.totals = {"hour": 0, "day": 0}
        self.limits: dict | None = None
        self.pending = 0
        #: being reported now: still counted in ``used`` until the service's answer includes it
        self.inflight = 0
        self.unreported = 0
        self._flushing = False
        self._flush_started = 0.0
        #: the last report failed: nothing more is sent past UNREPORTED_MAX until one succeeds
        self.report_failed = False
        self.notified: set[str] = set()
        self.alerted: set[str] = set()

    # --- counting -----------------------------------------------------------------------

    def count(self, nbytes: int) -> None:
        self.pending += nbytes
        self.unreported += nbytes
        if self.pending >= REPORT_BYTES:
            self.flush_soon()

    def flush_soon(self) -> None:
        if self.report is not None and not self._flushing:
            try:
                asyncio.get_running_loop().create_task(self.flush())
            except RuntimeError:
                pass

    async def flush(self) -> None:
        if self._flushing or self.report is None:
            return
        self._flushing = True
        self._flush_started = time.monotonic()
        sent, self.pending = self.pending, 0
        self.inflight = sent
        try:
            answer = await self.report(sent)
        except Exception as e:
            self.pending += sent
            self.report_failed = True
            log.warning("datahavn: egress not reported (%s): %d bytes waiting", e, self.unreported)
        else:
            self.totals = {k: int(answer.get(k, 0)) for k in ("hour", "day")}
            self.limits = answer.get("limits") or self.limits
            self.unreported = self.pending
            self.report_failed = False
        finally:
            self.inflight = 0
            self._flushing = False

    # --- the rule -----------------------------------------------------------------------

    def used(self, window: str) -> int:
        return self.totals.get(window, 0) + self.pending + self.inflight

    def left(self) -> int | None:
        """Bytes that may still be sent in the tightest window (None: limits not known yet)."""
        if not self.limits:
            return None
        return min(self.limits[w] - self.used(w) for w in ("hour", "day"))

    def exhausted(self) -> str | None:
        """Why nothing more may be sent: the window that is used up, or "unreported"; else None."""
        # past 2 MB unreported, more is sent only while a report is on its way and young (the bytes in
        # flight count against the budget meanwhile); a failed, slow or impossible report stops it
        if self.unreported > UNREPORTED_MAX:
            if self.report is None or self.report_failed:
                return "unreported"
            if not self._flushing:
                self.flush_soon()  # one starts now
            elif time.monotonic() - self._flush_started >= REPORT_GRACE:
                return "unreported"
        for window in ("hour", "day"):
            if self.limits and self.used(window) >= self.limits[window]:
                return window
        return None

    def nearly(self) -> str | None:
        """The window past 80 % of its limit, if one is."""
        for window in ("hour", "day"):
            if self.limits and self.used(window) >= NOTICE_AT * self.limits[window]:
                return window
        return None

    def refusal(self, window: str) -> str:
        if window == "unreported":
            return ("the audit trail cannot count what this workspace sends to the browser, so nothing more is sent "
                    "until it can")  # fmt: skip
        return (f"this workspace has sent {self.used(window) / 1e6:.0f} MB to the browser in the last {window}, "
                f"its limit is {self.limits[window] / 1e6:.0f} MB: data stays in the workspace; "
                "summarise it, or request an export")  # fmt: skip

    def notice(self, window: str) -> str:
        return (f"[Datahavn] This workspace has used {100 * self.used(window) / self.limits[window]:.0f} % of what it "
                f"may send to the browser per {window} ({self.limits[window] / 1e6:.0f} MB): past it, outputs and "
                "notebooks are not shown. Summarise results rather than print data.")  # fmt: skip


meter = WorkspaceMeter()


def _counted(handler) -> bool:
    if isinstance(handler, web.StaticFileHandler):
        path = getattr(handler, "absolute_path", None)
        if path and os.path.realpath(path).startswith(ROOT_OWNED):
            return False
    return True


def install(report) -> WorkspaceMeter:
    """Count every response body and websocket frame of this process; report through ``report``."""
    meter.report = report
    flush = web.RequestHandler.flush
    write_message = websocket.WebSocketHandler.write_message

    def counting_flush(self, include_footers: bool = False):
        nbytes = sum(len(chunk) for chunk in self._write_buffer)
        if nbytes and _counted(self):
            meter.count(nbytes)
            self._datahavn_sent = getattr(self, "_datahavn_sent", 0) + nbytes
        return flush(self, include_footers)

    def counting_write_message(self, message, binary: bool = False):
        if isinstance(message, dict):
            import json

            message = json.dumps(message)
        meter.count(len(message.encode() if isinstance(message, str) else message))
        return write_message(self, message, binary)

    if not getattr(flush, "_datahavn", False):
        counting_flush._datahavn = counting_write_message._datahavn = True
        web.RequestHandler.flush = counting_flush
        websocket.WebSocketHandler.write_message = counting_write_message

    async def every_second():
        while True:
            await meter.flush()  # the first at once: a restarted server learns where its workspace stands
            await asyncio.sleep(REPORT_SECONDS)

    IOLoop.current().spawn_callback(every_second)
    return meter
