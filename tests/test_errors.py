"""Bad input (docs/design.md, Policies) and the error table (docs/design.md,
Errors).

After every rejected call the socket must be untouched: still open, and the
peer saw neither FIN nor RST (the pair can still exchange a byte)."""

from __future__ import annotations

import errno
import math
import os
import socket

import pytest
from support import WINDOWS, assert_pair_intact, close_fd, fd_is_open, wine_xfail

import pysock
from pysock import (
    Abortive,
    Drain,
    Graceful,
    Linger,
    LingerOption,
    NotASocketError,
    NotConnectedError,
)

NAN = math.nan
INF = math.inf

# ------------------------------------------------------ policy construction

BAD_TYPE_POLICIES = [
    ("Linger-str", lambda: Linger("1")),
    ("Linger-bool", lambda: Linger(True)),
    ("Linger-None", lambda: Linger(None)),
    ("Linger-list", lambda: Linger([1])),
    ("Drain-str", lambda: Drain("1")),
    ("Drain-bool", lambda: Drain(True)),
    ("Drain-None", lambda: Drain(None)),
    ("Drain-idle-str", lambda: Drain(1.0, idle="1")),
    ("Drain-idle-bool", lambda: Drain(1.0, idle=True)),
    ("Drain-max_bytes-True", lambda: Drain(1.0, max_bytes=True)),
    ("Drain-max_bytes-float", lambda: Drain(1.0, max_bytes=100.0)),
    ("Drain-max_bytes-str", lambda: Drain(1.0, max_bytes="100")),
]

BAD_VALUE_POLICIES = [
    ("Linger-nan", lambda: Linger(NAN)),
    ("Linger-inf", lambda: Linger(INF)),
    ("Linger--inf", lambda: Linger(-INF)),
    ("Linger--1", lambda: Linger(-1)),
    ("Linger-0", lambda: Linger(0)),
    ("Linger-0.0", lambda: Linger(0.0)),
    ("Drain-nan", lambda: Drain(NAN)),
    ("Drain-inf", lambda: Drain(INF)),
    ("Drain--1", lambda: Drain(-1)),
    ("Drain-0", lambda: Drain(0)),
    ("Drain-idle-nan", lambda: Drain(1.0, idle=NAN)),
    ("Drain-idle-inf", lambda: Drain(1.0, idle=INF)),
    ("Drain-idle--1", lambda: Drain(1.0, idle=-1)),
    ("Drain-idle-0", lambda: Drain(1.0, idle=0)),
    ("Drain-max_bytes-0", lambda: Drain(1.0, max_bytes=0)),
    ("Drain-max_bytes--1", lambda: Drain(1.0, max_bytes=-1)),
]


@pytest.mark.parametrize(
    "make", [m for _, m in BAD_TYPE_POLICIES], ids=[i for i, _ in BAD_TYPE_POLICIES]
)
def test_policy_with_wrong_type_raises_type_error(make):
    with pytest.raises(TypeError):
        make()


@pytest.mark.parametrize(
    "make", [m for _, m in BAD_VALUE_POLICIES], ids=[i for i, _ in BAD_VALUE_POLICIES]
)
def test_policy_with_bad_value_raises_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_valid_policies_keep_their_values():
    assert Linger(0.25).timeout == 0.25
    d = Drain(2, max_bytes=65536, idle=0.5)
    assert (d.timeout, d.max_bytes, d.idle) == (2.0, 65536, 0.5)
    assert Drain(1.0, idle=None).idle is None
    assert Drain().timeout > 0
    assert Drain().max_bytes is None or Drain().max_bytes > 0


def test_policies_are_frozen():
    with pytest.raises(AttributeError):
        Linger(1.0).timeout = 2.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Drain(1.0).max_bytes = 5  # type: ignore[misc]


# --------------------------------------------------- wrong policy / sock type


@pytest.mark.parametrize(
    "policy",
    ["graceful", None, 0, 1.5, Drain, Linger, object()],
    ids=["str", "None", "int", "float", "Drain-class", "Linger-class", "object"],
)
def test_close_with_non_policy_raises_type_error_and_leaves_socket(tcp_pair, policy):
    server, client = tcp_pair
    with pytest.raises(TypeError):
        pysock.close(server, policy)
    assert_pair_intact(server, client)


@pytest.mark.parametrize(
    "sock", ["3", 3.0, None, True, b"3", [3]], ids=["str", "float", "None", "bool", "bytes", "list"]
)
@pytest.mark.parametrize(
    "call",
    [
        lambda s: pysock.close(s),
        lambda s: pysock.close(s, Drain(1.0)),
        lambda s: pysock.abort(s),
        lambda s: pysock.shutdown(s, "send"),
        lambda s: pysock.drain(s, 1.0),
        lambda s: pysock.get_linger(s),
        lambda s: pysock.set_linger(s, True, 1),
        lambda s: pysock.close_many([s], Graceful()),
    ],
    ids=[
        "close",
        "close-Drain",
        "abort",
        "shutdown",
        "drain",
        "get_linger",
        "set_linger",
        "close_many",
    ],
)
def test_sock_of_wrong_type_raises_type_error(call, sock):
    with pytest.raises(TypeError):
        call(sock)


# ------------------------------------------------ bad arguments to functions


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"timeout": "1"}, TypeError),
        ({"timeout": None}, TypeError),
        ({"timeout": True}, TypeError),
        ({"timeout": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"timeout": NAN}, ValueError),
        ({"timeout": INF}, ValueError),
        ({"timeout": 1.0, "max_bytes": 0}, ValueError),
        ({"timeout": 1.0, "max_bytes": -1}, ValueError),
        ({"timeout": 1.0, "max_bytes": True}, TypeError),
        ({"timeout": 1.0, "idle": 0}, ValueError),
        ({"timeout": 1.0, "idle": NAN}, ValueError),
        ({"timeout": 1.0, "idle": "1"}, TypeError),
    ],
    ids=lambda v: repr(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k]!r}" for k in v),
)
def test_drain_function_bad_arguments_leave_socket_untouched(tcp_pair, kwargs, exc):
    server, client = tcp_pair
    client.sendall(b"unread")  # drain() must not eat this
    with pytest.raises(exc):
        pysock.drain(server, **kwargs)
    server.settimeout(5)
    assert server.recv(6) == b"unread"
    assert_pair_intact(server, client)


@pytest.mark.parametrize(
    ("seconds", "exc"),
    [
        (65536, ValueError),
        (-1, ValueError),
        (2**31, ValueError),
        (1.5, TypeError),
        ("1", TypeError),
        (None, TypeError),
    ],
)
def test_set_linger_bad_seconds_leaves_option_unchanged(tcp_pair, seconds, exc):
    server, client = tcp_pair
    pysock.set_linger(server, True, 9)
    with pytest.raises(exc):
        pysock.set_linger(server, True, seconds)
    assert pysock.get_linger(server) == LingerOption(True, 9)
    assert_pair_intact(server, client)


@pytest.mark.parametrize(
    ("how", "exc"),
    [
        ("sideways", ValueError),
        ("SEND", ValueError),
        (7, ValueError),
        (-1, ValueError),
        (None, TypeError),
        (1.0, TypeError),
        (True, TypeError),
    ],
)
def test_shutdown_bad_how_leaves_socket_untouched(tcp_pair, how, exc):
    server, client = tcp_pair
    with pytest.raises(exc):
        pysock.shutdown(server, how)
    assert_pair_intact(server, client)


# -------------------------------------------------------- datagram sockets


@pytest.mark.parametrize("policy", [Drain(1.0), Linger(1.0)], ids=["Drain", "Linger"])
def test_udp_socket_with_stream_policy_raises_value_error_and_stays_open(udp_socket, policy):
    with pytest.raises(ValueError):
        pysock.close(udp_socket, policy)
    assert udp_socket.fileno() != -1
    _assert_udp_usable(udp_socket)


@pytest.mark.parametrize("policy", [Drain(1.0), Linger(1.0)], ids=["Drain", "Linger"])
def test_udp_int_fd_with_stream_policy_raises_value_error_and_stays_open(udp_socket, policy):
    fd = udp_socket.fileno()
    with pytest.raises(ValueError):
        pysock.close(fd, policy)
    assert fd_is_open(fd)
    _assert_udp_usable(udp_socket)


def test_drain_function_on_udp_socket_raises_value_error(udp_socket):
    with pytest.raises(ValueError):
        pysock.drain(udp_socket, 1.0)
    _assert_udp_usable(udp_socket)


def _assert_udp_usable(sock: socket.socket) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        other.settimeout(5)
        sock.sendto(b"ping", other.getsockname())
        assert other.recvfrom(16)[0] == b"ping"


# -------------------------------------------------------------- not a socket

ALL_CALLS = [
    ("close", lambda s: pysock.close(s)),
    ("close-Abortive", lambda s: pysock.close(s, Abortive())),
    ("close-Drain", lambda s: pysock.close(s, Drain(1.0))),
    ("close-Linger", lambda s: pysock.close(s, Linger(1.0))),
    ("abort", lambda s: pysock.abort(s)),
    ("shutdown", lambda s: pysock.shutdown(s, "send")),
    ("drain", lambda s: pysock.drain(s, 1.0)),
    ("get_linger", lambda s: pysock.get_linger(s)),
    ("set_linger", lambda s: pysock.set_linger(s, True, 1)),
    ("close_many", lambda s: pysock.close_many([s], Drain(1.0))),
]


def _assert_not_a_socket(exc: pytest.ExceptionInfo, posix_errno: int) -> None:
    """An OSError whose errno is the OS's own on POSIX: EBADF for a closed
    handle (an int or a socket object alike), ENOTSOCK for a descriptor that
    is no socket.  (Windows: derived from winerror, as CPython does.)"""
    assert isinstance(exc.value, OSError)
    if WINDOWS:
        assert exc.value.errno in (errno.ENOTSOCK, errno.EBADF)
    else:
        assert exc.value.errno == posix_errno


# Wine: setsockopt() on a handle that is no socket fails with WSAEOPNOTSUPP
# (Windows: WSAENOTSOCK), so the calls whose first step is setsockopt
# (SO_LINGER) raise a plain OSError there.
WINE_SETSOCKOPT_ON_PIPE = "setsockopt() on a pipe handle fails with WSAEOPNOTSUPP, not WSAENOTSOCK"
SETSOCKOPT_FIRST = {"close", "close-Abortive", "abort", "set_linger"}


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(c, marks=wine_xfail(WINE_SETSOCKOPT_ON_PIPE)) if i in SETSOCKOPT_FIRST else c
        for i, c in ALL_CALLS
    ],
    ids=[i for i, _ in ALL_CALLS],
)
def test_pipe_fd_raises_not_a_socket_and_pipe_stays_open(pipe, call):
    r, w = pipe
    for fd in (r, w):
        with pytest.raises(NotASocketError) as exc:
            call(fd)
        _assert_not_a_socket(exc, errno.ENOTSOCK)
    # Neither end was closed: the pipe still carries data.
    assert pipe.works()


@pytest.mark.parametrize("call", [c for _, c in ALL_CALLS], ids=[i for i, _ in ALL_CALLS])
def test_closed_socket_object_raises_not_a_socket(call):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.close()
    with pytest.raises(NotASocketError) as exc:
        call(sock)
    _assert_not_a_socket(exc, errno.EBADF)


@pytest.mark.parametrize("call", [c for _, c in ALL_CALLS], ids=[i for i, _ in ALL_CALLS])
def test_closed_int_fd_raises_not_a_socket(call):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fd = sock.detach()
    close_fd(fd)
    assert not fd_is_open(fd)
    with pytest.raises(NotASocketError) as exc:
        call(fd)
    _assert_not_a_socket(exc, errno.EBADF)


def test_close_twice_raises_not_a_socket(tcp_pair):
    server, _client = tcp_pair
    pysock.close(server)
    with pytest.raises(NotASocketError):
        pysock.close(server)


@wine_xfail(WINE_SETSOCKOPT_ON_PIPE)
def test_not_a_socket_error_is_an_oserror_with_errno(pipe):
    r, _ = pipe
    with pytest.raises(OSError) as exc:
        pysock.close(r)
    assert type(exc.value) is NotASocketError
    assert exc.value.errno in (errno.ENOTSOCK, errno.EBADF)
    if not WINDOWS:
        assert exc.value.errno == errno.ENOTSOCK  # the OS's own: a pipe is no socket
    assert exc.value.strerror


def test_negative_int_handle_is_rejected():
    with pytest.raises((ValueError, NotASocketError)):
        pysock.close(-1)


@pytest.mark.parametrize(
    "offset", [2**32, 2**33, 2**63, 2**64], ids=["2**32", "2**33", "2**63", "2**64"]
)
def test_out_of_range_int_handle_is_rejected_and_touches_nothing(tcp_pair, offset):
    # A handle beyond what the OS can name must not be truncated to an
    # existing descriptor (2**32 + fd would close fd on a 32-bit int).
    server, client = tcp_pair
    with pytest.raises((ValueError, NotASocketError)):
        pysock.close(offset + server.fileno())
    assert_pair_intact(server, client)


# ------------------------------------------------------------ not connected


def test_shutdown_on_unconnected_socket_raises_not_connected():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(NotConnectedError) as exc:
            pysock.shutdown(sock, "send")
        assert isinstance(exc.value, OSError)
        assert exc.value.errno == errno.ENOTCONN
        assert sock.fileno() != -1  # not closed


def test_error_classes_are_oserror_subclasses():
    assert issubclass(NotASocketError, OSError)
    assert issubclass(NotConnectedError, OSError)
    assert not issubclass(NotASocketError, NotConnectedError)


# ------------------------------------------------------ the OS's own errno


@pytest.mark.skipif(WINDOWS, reason="POSIX errno (Windows raises from winerror)")
def test_a_closed_int_handle_and_a_closed_socket_object_say_the_same_errno():
    """One condition, one errno: the OS's own (EBADF), not the table's."""
    as_object = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    as_object.close()
    as_int = socket.socket(socket.AF_INET, socket.SOCK_STREAM).detach()
    close_fd(as_int)
    seen = set()
    for sock in (as_object, as_int):
        with pytest.raises(NotASocketError) as exc:
            pysock.close(sock)
        seen.add(exc.value.errno)
    assert seen == {errno.EBADF}


@pytest.mark.skipif(WINDOWS, reason="POSIX errno (Windows raises from winerror)")
def test_make_error_takes_the_os_errno_and_the_tables_only_without_one():
    from pysock._errors import make_error

    exc = make_error("ENOTSOCK", errno.EBADF, "close")
    assert type(exc) is NotASocketError and exc.errno == errno.EBADF
    assert exc.strerror == f"{os.strerror(errno.EBADF)} (close)"
    exc = make_error("EINVAL", 0, "arguments")  # no OS error: the table's
    assert type(exc) is OSError and exc.errno == errno.EINVAL
    exc = make_error("ECONNRESET", errno.ECONNRESET, "recv")
    assert type(exc) is ConnectionResetError
    exc = make_error("EOTHER", errno.EPERM, "shutdown")
    assert type(exc) is PermissionError and exc.errno == errno.EPERM
    assert isinstance(make_error("ENOTSTREAM", 0, "getsockopt(SO_TYPE)"), ValueError)
    assert isinstance(make_error("ENOMEM", 0, "poll"), MemoryError)
