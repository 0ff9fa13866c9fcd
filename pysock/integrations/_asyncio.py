"""The lingering close of an asyncio transport, as the asyncio servers'
integrations (uvicorn, hypercorn) use it.

:func:`pysock.aio.close_transport` first waits for the transport's write
buffer to flush.  Meanwhile a client that is still uploading must not be
stalled: most clients (httpx, requests, curl) read the response only after
sending the whole body, so if nobody read their upload while our response
waited in the buffer, both sides would wait for each other until the
policy's deadline.  The server's protocol cannot be left to read it (uvicorn
pauses reading once 64 KiB of unread body pile up; a protocol may also act
on what it reads after its close).  So for the flush the transport's protocol
is swapped for one that discards what arrives (counted, and bounded by the
policy's ``max_bytes``) and passes ``connection_lost``, ``pause_writing``
and ``resume_writing`` on to the server's protocol; then the Reaper takes
the socket over and lingers it off the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses

from pysock import aio
from pysock._errors import NotConnectedError
from pysock.integrations._common import policy, record

__all__ = ["linger"]


class _Discarding(asyncio.Protocol):
    """Reads and drops what the peer still sends while our response flushes."""

    def __init__(
        self, inner: asyncio.BaseProtocol, transport: asyncio.Transport, limit: int | None
    ):
        self.inner = inner
        self.transport = transport
        self.limit = limit
        self.discarded = 0

    def data_received(self, data: bytes) -> None:
        self.discarded += len(data)
        if self.limit is not None and self.discarded > self.limit:
            self.transport.abort()

    def eof_received(self) -> bool:
        return True  # keep our side open: the response is still flushing

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def linger(transport: asyncio.Transport, server: str) -> None:
    """Close ``transport`` by :func:`pysock.integrations.policy` with
    :func:`pysock.aio.close_transport`, discarding what arrives while the
    response flushes; record the result for ``server``."""
    pol = policy()
    discard = _Discarding(transport.get_protocol(), transport, getattr(pol, "max_bytes", None))
    transport.set_protocol(discard)
    if not transport.is_reading():
        transport.resume_reading()
    try:
        result = await aio.close_transport(transport, pol)
    except NotConnectedError:
        transport.close()  # it ended meanwhile (reset, or the byte cap): nothing to linger
        return
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        record(server, exc)
        if not transport.is_closing():
            transport.abort()
        return
    if discard.discarded:
        result = dataclasses.replace(result, drained=result.drained + discard.discarded)
    record(server, result)
