"""Checking a running Dask scheduler's address before a batch starts, bounded in time.

``distributed.Client`` can wait forever on a port that accepts connections and never answers
(its handshake read has no timeout), and a server that is not a Dask scheduler can make it
fail with ``struct.error`` or try to allocate exabytes for a garbage length header.
``check_scheduler`` therefore asks the scheduler who it is from a child process: the child is
killed at the deadline and its memory is capped, so every bad address ends, within the
timeout, as one ``ValueError`` line, before the batch creates its output folder.

Only ``tcp://HOST:PORT`` is taken: ``tls://`` needs certificates (a Dask security object) and
``ucx://`` the UCX libraries, neither of which the batch passes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

#: default seconds to reach a scheduler and hear it answer
SCHEDULER_TIMEOUT_S = 30.0
_PROBE_MEMORY = 768 << 20  # bytes of address space the probing child may use (POSIX)


def parse_address(address) -> str:
    """``address`` as ``tcp://HOST:PORT``; a ``ValueError`` that says what to give instead."""
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(
            f"scheduler must be 'local' or an address such as tcp://HOST:8786; got {address!r}."
        )
    scheme, _, location = address.strip().partition("://")
    scheme = scheme.lower()
    if scheme == "tls":
        raise ValueError(
            f"cannot use the Dask scheduler at {address}: tls:// needs certificates (a Dask "
            "security configuration) that batch does not pass on; reach the scheduler over "
            "tcp:// (for example through an SSH tunnel)."
        )
    if scheme == "ucx":
        raise ValueError(
            f"cannot use the Dask scheduler at {address}: ucx:// needs the UCX libraries "
            "(ucx-py), which batch does not support; give the scheduler's tcp:// address."
        )
    if scheme != "tcp":
        raise ValueError(
            f"cannot use the Dask scheduler at {address}: the {scheme}:// protocol is not "
            "supported; give an address such as tcp://HOST:8786."
        )
    host, separator, port = location.rstrip("/").rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # an IPv6 literal: [::1]:8786
        host = host[1:-1]
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"scheduler address {address!r} needs a host and a port from 1 to 65535, "
            "such as tcp://HOST:8786."
        )
    return f"tcp://{location.rstrip('/')}"


def check_scheduler(address, timeout: float | None = None) -> str:
    """Make sure a Dask scheduler answers at ``address`` within ``timeout`` seconds (default
    ``SCHEDULER_TIMEOUT_S``); returns the normalised address. Anything else (nothing
    listening, a silent port, a server that is not a scheduler, an unsupported protocol) is a
    one-line ``ValueError``."""
    address = parse_address(address)
    if timeout is None:
        timeout = SCHEDULER_TIMEOUT_S
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"scheduler timeout must be a number of seconds; got {timeout!r}.")
    if not timeout > 0:
        raise ValueError(f"scheduler timeout must be > 0 seconds; got {timeout!r}.")
    _check_listening(address, timeout)
    seconds = repr(max(0.5, timeout * 0.8))  # the child's deadline, inside the parent's
    command = [sys.executable, "-c", _PROBE, address, seconds, str(_PROBE_MEMORY)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=timeout, env=environment, check=False
        )
    except subprocess.TimeoutExpired:
        raise ValueError(
            f"cannot use the Dask scheduler at {address}: no answer within {timeout:g} s (is it "
            "a Dask scheduler, and is the address right?)"
        ) from None
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        answer = {"error": f"the check stopped (status {done.returncode})"}
    if "error" in answer:
        reason = " ".join(str(answer["error"]).split())[:200]
        raise ValueError(f"cannot use the Dask scheduler at {address}: {reason}")
    return address


def _check_listening(address: str, timeout: float) -> None:
    """A plain TCP connection first: "nothing listens there" says more than a timeout."""
    import socket

    host, _, port = address.removeprefix("tcp://").rpartition(":")
    host = host[1:-1] if host.startswith("[") else host
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except TimeoutError:
        raise ValueError(
            f"cannot use the Dask scheduler at {address}: no connection within {timeout:g} s "
            "(is the host reachable?)"
        ) from None
    except OSError as error:
        reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
        raise ValueError(
            f"cannot use the Dask scheduler at {address}: {reason} (is the scheduler running, "
            "and is the address right?)"
        ) from None


# The child: connect, handshake and ask the identity, each step under the deadline; one JSON
# line out. Any failure (struct.error, MemoryError, a closed comm, a timeout) is its reason.
_PROBE = """
import asyncio, json, sys

try:  # a garbage length header must fail as MemoryError, not take the machine's memory
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), resource.RLIM_INFINITY))
except (ImportError, ValueError, OSError):
    pass

async def probe(address, timeout):
    from distributed.comm import connect
    comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
    try:
        await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
        return await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()

address, timeout = sys.argv[1], float(sys.argv[2])
try:
    reply = asyncio.run(asyncio.wait_for(probe(address, timeout), timeout))
except (asyncio.TimeoutError, TimeoutError):
    answer = {"error": f"no answer within {timeout:g} s (is it a Dask scheduler?)"}
except MemoryError:
    answer = {"error": "it is not a Dask scheduler (its reply asked for an impossible size)"}
except Exception as error:
    import struct
    from distributed.comm import CommClosedError
    if isinstance(error, CommClosedError):
        answer = {"error": "it closed the connection without answering (is it a Dask scheduler?)"}
    elif isinstance(error, (struct.error, UnicodeError, ValueError, TypeError, KeyError)):
        answer = {"error": "it is not a Dask scheduler (its reply is not Dask's protocol)"}
    else:
        text = " ".join(str(error).split()) or "no reason given"
        answer = {"error": f"{type(error).__name__}: {text}"}
except BaseException as error:
    text = " ".join(str(error).split()) or "no reason given"
    answer = {"error": f"{type(error).__name__}: {text}"}
else:
    if isinstance(reply, dict) and reply.get("type") == "Scheduler":
        answer = {"ok": True}
    else:
        answer = {"error": "it answered, but not as a Dask scheduler"}
print(json.dumps(answer))
"""
