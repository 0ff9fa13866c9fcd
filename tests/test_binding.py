"""The binding's tables (pysock._binding): each keyed by the C core's own
PS_* constants, complete, and in step with the Python types and errors."""

from __future__ import annotations

import socket
import typing

from pysock import _binding, _errors, _types
from pysock._core import lib


def _values(prefix: str) -> set[int]:
    """The values of the core's constants named PS_<prefix>*."""
    return {getattr(lib, name) for name in dir(lib) if name.startswith("PS_" + prefix)}


def test_how_literal_matches_the_table():
    assert sorted(_binding.HOWS.values()) == sorted(typing.get_args(_types.How))
    assert set(_binding.HOWS) == _values("HOW_")
    for value, how in _binding.HOWS.items():
        assert getattr(lib, f"PS_HOW_{how.upper()}") == value
    # ps_close_fast packs how into bit 0 of its flags.
    assert sorted(_binding.HOWS) == [0, 1]


def test_reason_literal_matches_the_table():
    assert sorted(_binding.REASONS.values()) == sorted(typing.get_args(_types.Reason))
    assert set(_binding.REASONS) == _values("REASON_")
    for value, reason in _binding.REASONS.items():
        assert getattr(lib, f"PS_REASON_{reason.upper()}") == value


def test_every_step_has_a_name():
    assert set(_binding.STEPS) == _values("STEP_")
    assert all(isinstance(step, str) for step in _binding.STEPS.values())


def test_every_error_code_is_named_and_known_to_the_errors_table():
    assert set(_binding.ERRORS) == _values("E")  # PS_OK is no error
    for value, code in _binding.ERRORS.items():
        assert getattr(lib, f"PS_{code}") == value
    known = set(_errors.TABLE) | set(_errors.NOT_OS_ERRORS) | {"EOTHER"}
    assert set(_binding.ERRORS.values()) == known


def test_shutdown_directions():
    assert set(_binding.SHUTDOWN.values()) == _values("SHUT_")
    for name, how in [("receive", "RD"), ("send", "WR"), ("both", "RDWR")]:
        assert _binding.SHUTDOWN[name] == _binding.SHUTDOWN[getattr(socket, f"SHUT_{how}")]
        assert _binding.SHUTDOWN[name] == getattr(lib, f"PS_SHUT_{name.upper()}")


def test_op_kinds_are_the_cores_in_its_order():
    kinds = (_binding.GRACEFUL, _binding.ABORTIVE, _binding.LINGER, _binding.DRAIN)
    assert kinds == (lib.PS_GRACEFUL, lib.PS_ABORTIVE, lib.PS_LINGER, lib.PS_DRAIN)
    # Graceful and Abortive (<= ABORTIVE) need no wait; Linger, Drain and
    # drain-only (>= LINGER) do, on a stream socket.
    assert sorted(kinds) == list(kinds) and lib.PS_DRAIN_ONLY > lib.PS_DRAIN
    # close_now takes Abortive as ps_close_fast's PS_CLOSE_ABORTIVE flag.
    assert lib.PS_CLOSE_ABORTIVE == 1 == _binding.ABORTIVE
