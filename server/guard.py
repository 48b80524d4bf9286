"""Request messages parsed inside the handlers, so that bytes that are not a valid message get
INVALID_ARGUMENT with a short reply, one rate-limited log line and a count in the metrics.

grpc.aio's own deserialisation answers such bytes with UNKNOWN, names a Python class in the
reply and logs a whole traceback for every call; any client could flood the log with them.
Each service here is registered with handlers that take the raw bytes instead.
"""

from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

MALFORMED = "malformed request message"


class RateLimitedLog:
    """At most one line per `interval` seconds; the lines held back are counted in the next."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0):
        self.logger = logger
        self.interval = interval
        self.last = float("-inf")
        self.held_back = 0

    def warning(self, message: str, *args) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.held_back += 1
            return
        if self.held_back:
            message += f" ({self.held_back} more since the last such line)"
            self.held_back = 0
        self.last = now
        self.logger.warning(message, *args)


OnMalformed = Callable[[str, object], Awaitable[None]]


def _parse(request_type, method: str, on_malformed: OnMalformed):
    async def parse(raw: bytes, context):
        try:
            return request_type.FromString(raw)
        except DecodeError:
            await on_malformed(method, context)  # aborts the call
    return parse


def _serialise(response) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def unary(method: str, request_type, response_type, behaviour, on_malformed: OnMalformed):
    """A unary-unary handler that parses its request itself; the behaviour answers with a
    `response_type` message, or with one already serialised."""
    parse = _parse(request_type, method, on_malformed)

    async def handle(raw: bytes, context):
        return await behaviour(await parse(raw, context), context)
    return grpc.unary_unary_rpc_method_handler(handle, response_serializer=_serialise)


def unary_stream(method: str, request_type, response_type, behaviour, on_malformed: OnMalformed):
    """A unary-stream handler (the response written with context.write) that parses its request itself."""
    parse = _parse(request_type, method, on_malformed)

    async def handle(raw: bytes, context):
        await behaviour(await parse(raw, context), context)
    return grpc.unary_stream_rpc_method_handler(handle, response_serializer=response_type.SerializeToString)


def stream_stream(method: str, request_type, response_type, behaviour, on_malformed: OnMalformed):
    """A stream-stream handler whose request messages are parsed one by one as they are read."""
    parse = _parse(request_type, method, on_malformed)

    async def handle(raws, context):
        async def requests():
            async for raw in raws:
                yield await parse(raw, context)
        async for response in behaviour(requests(), context):
            yield response
    return grpc.stream_stream_rpc_method_handler(handle, response_serializer=response_type.SerializeToString)


def service(name: str, handlers: dict) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(name, handlers)
