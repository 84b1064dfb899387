"""What the hub's own services (datahavn-audit, datahavn-airlock) share: who a token is, and the run loop."""

from __future__ import annotations

import signal
from urllib.parse import urlparse

from tornado import ioloop, web


async def token_model(handler: web.RequestHandler, hub_auth, use_cache: bool = True) -> dict:
    """The hub's model of the token in the request's ``Authorization`` header (401 without one, 403 unknown)."""
    header = handler.request.headers.get("Authorization", "")
    if not header.lower().startswith(("token ", "bearer ")):
        raise web.HTTPError(401, "a hub token is required")
    model = await hub_auth.user_for_token(header.split(None, 1)[1], use_cache=use_cache, sync=False)
    if not model:
        raise web.HTTPError(403, "the hub does not know this token")
    return model


def serve(app: web.Application, url: str, log, what: str, **listen) -> None:
    """Listen on ``url`` (the hub's ``JUPYTERHUB_SERVICE_URL``) until SIGINT or SIGTERM."""
    where = urlparse(url)
    app.listen(where.port, where.hostname, **listen)
    log.info("%s listening on %s", what, where.geturl())
    loop = ioloop.IOLoop.current()
    # Explicit handlers: started from a background shell, SIGINT arrives ignored, and the
    # hub would wait out its interrupt timeout at every shutdown.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.add_callback_from_signal(loop.stop))
    loop.start()
