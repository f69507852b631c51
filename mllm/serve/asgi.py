"""Two pure ASGI middlewares in front of the app: request bodies bounded while they stream in, and a bounded
number of requests admitted to model work.

They answer before the app sees the request, so neither a large body nor a burst of requests costs more than
counting: a body over its route's limit is refused from its Content-Length before a byte is read, and one
without (chunked) is cut off at the first message past the limit, so no parser ever holds more than the limit
and one network chunk. A model route with every worker busy and the queue full is answered 503 with
Retry-After at once instead of waiting.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from .limits import Limits, body_too_large, busy
from .work import WorkPool

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
MODEL_ROUTES = ("/api/caption", "/api/generate")


async def send_problem(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A complete JSON response `{"detail": ...}` (what the app's own refusals look like)."""
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when it has none (a chunked body)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


class BodyLimit:
    """Refuses (413) a request body over its route's limit (`Limits.body_limit`): from its Content-Length up front,
    else as soon as the bytes received pass the limit; the app then reads a disconnect and its answer is dropped."""

    def __init__(self, app: ASGIApp, limits: Limits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit = self.limits.body_limit(path)
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            return await send_problem(send, 413, body_too_large(path, self.limits, declared, 0))
        state = {"read": 0, "started": False, "answered": False}

        async def limited_receive() -> Message:
            if state["answered"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > limit:
                    state["answered"] = True
                    if not state["started"]:
                        await send_problem(send, 413, body_too_large(path, self.limits, None, state["read"]))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not state["answered"]:
                state["started"] = True
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["answered"]:  # after a 413 the app's complaint about the cut body is moot
                raise


class Admission:
    """Admits at most `workers + queue` requests to the model routes at once (`WorkPool.admit`); one more is
    answered 503 with Retry-After without being read. A streamed generation holds its place until it ends."""

    def __init__(self, app: ASGIApp, pool: WorkPool, limits: Limits):
        self.app = app
        self.pool = pool
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in MODEL_ROUTES:
            return await self.app(scope, receive, send)
        if not self.pool.admit():
            return await send_problem(send, 503, busy(self.limits), {"Retry-After": "1"})
        try:
            await self.app(scope, receive, send)
        finally:
            self.pool.release()
