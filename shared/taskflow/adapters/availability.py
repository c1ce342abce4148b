"""Is an error "a backing service is down right now" (answer 503 + Retry-After, or redeliver) rather
than a bug? The database restarting, a connection cut, the Dapr sidecar restarting."""

from __future__ import annotations

import contextlib

# SQLSTATEs of a database that is not there at the moment: class 08 (connection exception),
# 57P01..57P03 (admin/crash shutdown, cannot connect now: starting up, recovering), 53300 (too
# many connections). https://www.postgresql.org/docs/current/errcodes-appendix.html
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
_GRPC_DOWN = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "CANCELLED")


def _sqlstate(exc: BaseException) -> str | None:
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, dict) and isinstance(arg.get("C"), str):  # pg8000's error fields
            return str(arg["C"])
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)  # psycopg
    return str(code) if code else None


def backing_service_down(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says PostgreSQL or the Dapr sidecar is unreachable."""
    from sqlalchemy import exc as sa

    _DOWN = (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError)
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (*_DOWN, ConnectionError, TimeoutError)):
            return True
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return True
        state = _sqlstate(e)
        if state is not None and state.startswith(_UNAVAILABLE_STATES):
            return True
        # a gRPC error of the Dapr SDK: the sidecar is unreachable, or the state store behind it
        # failed (daprd answers INTERNAL for that: "failed to connect", "unexpected EOF")
        code = getattr(e, "code", None)
        if callable(code) and type(e).__module__.split(".")[0] in ("grpc", "dapr"):
            with contextlib.suppress(Exception):
                if getattr(code(), "name", "") in _GRPC_DOWN:
                    return True
        e = e.__cause__ or e.__context__
    return False
