"""The HTTP/1.x response parser of ``pysock probe``: just enough of HTTP/1.x
to tell whether a response arrived whole (the status line and headers, then
a body delimited by Content-Length, the chunked coding or the server's FIN).
Only the standard library."""

from __future__ import annotations

__all__ = ["MAX_HEAD", "ResponseParser"]

#: The longest response head accepted (status line and headers).
MAX_HEAD = 64 * 1024


class ResponseParser:
    """An incremental HTTP/1.x response parser: is the response whole?

    :meth:`feed` it what arrives; :attr:`complete` is true once the response
    is whole.  A close-delimited body (``mode == "close"``) ends with the
    server's FIN, which only the caller sees.  A malformed response raises
    ValueError."""

    def __init__(self, head_request: bool) -> None:
        self.buf = bytearray()
        self.head_request = head_request
        self.status: int | None = None
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.in_headers = False  # the status line is in, not the blank line
        self.mode = "head"  # head | length | chunked | close | done
        self.remaining = 0
        self.content_length: int | None = None
        self.body = 0
        self.chunk_state = "size"  # size | data | crlf | trailer

    @property
    def complete(self) -> bool:
        return self.mode == "done"

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self.buf and self.mode != "done":
            if self.mode == "head":
                if not self._head():
                    return
            elif self.mode == "length":
                n = min(self.remaining, len(self.buf))
                self.body += n
                self.remaining -= n
                del self.buf[:n]
                if self.remaining == 0:
                    self.mode = "done"
            elif self.mode == "close":
                self.body += len(self.buf)
                self.buf.clear()
            elif not self._chunked():
                return
        if self.mode == "length" and self.remaining == 0:
            self.mode = "done"

    def _head(self) -> bool:
        if self.status is None and b"\r\n" in self.buf:
            self.in_headers = True
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise ValueError("the response head is over 64 KiB")
            return False
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        if 100 <= status < 200 and status != 101:  # interim: the real one follows
            self.in_headers = False
            return True
        self.status, self.reason, self.headers = status, parts[2] if len(parts) > 2 else "", headers
        values = {n.lower(): v for n, v in headers}
        te = values.get("transfer-encoding", "").lower()
        if self.head_request or status in (101, 204, 304):
            self.mode = "done"
        elif "chunked" in te:
            self.mode = "chunked"
        elif "content-length" in values:
            try:
                self.content_length = int(values["content-length"])
            except ValueError:
                raise ValueError(f"bad Content-Length: {values['content-length']!r}") from None
            self.remaining = self.content_length
            self.mode = "length" if self.remaining else "done"
        else:
            self.mode = "close"  # delimited by the server's FIN
        return True

    def _chunked(self) -> bool:
        if self.chunk_state == "data":
            n = min(self.remaining, len(self.buf))
            self.body += n
            self.remaining -= n
            del self.buf[:n]
            if self.remaining == 0:
                self.chunk_state = "crlf"
            return True
        end = self.buf.find(b"\r\n")
        if end < 0:
            return False
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        if self.chunk_state == "crlf":
            self.chunk_state = "size"
        elif self.chunk_state == "size":
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError(f"bad chunk size line: {line[:40]!r}") from None
            if size == 0:
                self.chunk_state = "trailer"
            else:
                self.remaining, self.chunk_state = size, "data"
        elif line == b"":  # the trailer's end
            self.mode = "done"
        return True
