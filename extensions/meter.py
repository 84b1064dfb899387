"""The workspace's one egress budget: every byte this server sends to the browser, counted at one choke point.

Counting is below every route: tornado's ``RequestHandler.flush`` (every HTTP response body,
whatever handler wrote it) and ``WebSocketHandler.write_message`` (every frame of every
websocket: all kernel channels and message types, events, ...). A route nobody listed is
counted like the others. Only static files of the users' environment (root-owned, the same
for everyone, the lab's code) are not counted: they cannot carry a workspace's data.

The total lives with the audit service, per (user, project), over a rolling hour and day
(:mod:`datahavn.hub_config.audit.egress`): the server reports what it sent every second and
gets the totals and limits back, so new kernels and server restarts start where the last left
off. Between reports the server adds what it has sent since; when it cannot report, it stops
sending content once 2 MB are unreported (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from tornado import web, websocket
from tornado.ioloop import IOLoop

log = logging.getLogger("datahavn")

#: bytes the server may send without having reported them (the audit service unreachable)
UNREPORTED_MAX = 2_000_000
#: report at least this often, and as soon as this much is pending
REPORT_SECONDS = 1.0
REPORT_BYTES = 512_000
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
        self.unreported = 0
        self._flushing = False
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
        sent, self.pending = self.pending, 0
        try:
            answer = await self.report(sent)
        except Exception as e:
            self.pending += sent
            log.warning("datahavn: egress not reported (%s): %d bytes waiting", e, self.unreported)
        else:
            self.totals = {k: int(answer.get(k, 0)) for k in ("hour", "day")}
            self.limits = answer.get("limits") or self.limits
            self.unreported = self.pending
        finally:
            self._flushing = False

    # --- the rule -----------------------------------------------------------------------

    def used(self, window: str) -> int:
        return self.totals.get(window, 0) + self.pending

    def left(self) -> int | None:
        """Bytes that may still be sent in the tightest window (None: limits not known yet)."""
        if not self.limits:
            return None
        return min(self.limits[w] - self.used(w) for w in ("hour", "day"))

    def exhausted(self) -> str | None:
        """Why nothing more may be sent: the window that is used up, or "unreported"; else None."""
        if self.unreported > UNREPORTED_MAX:
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
