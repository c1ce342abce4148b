"""pg8000, the design card's PostgreSQL driver, with fewer round trips and less CPU per statement.

Stock pg8000 spends three round trips on every parameterised statement (Parse+Sync,
Describe+Sync, Bind+Execute+Sync), one more on ``BEGIN``, and rescans each statement's text
character by character to convert its placeholders. This connection class:

- sends Parse, Bind, Describe (portal), Execute and one Sync together: one round trip per
  statement, as libpq's extended protocol does (the row description arrives before the rows);
- sends ``BEGIN`` with the transaction's first statement instead of alone (an empty
  transaction sends nothing);
- remembers each statement's converted text (SQLAlchemy renders the same few statements);
- parses ``timestamptz`` with ``datetime.fromisoformat`` (pg8000's parser dominated list pages).

``round_trips`` counts the waits for the server (tests assert it per request). The wire
protocol is PostgreSQL's, unchanged: https://www.postgresql.org/docs/current/protocol-flow.html
"""

from __future__ import annotations

import select
from datetime import datetime
from functools import lru_cache
from typing import Any

from pg8000 import core, dbapi

_TIMESTAMPTZ_OID = 1184
_BEGIN = "begin transaction"


@lru_cache(maxsize=1024)
def _convert(statement: str) -> str:
    """pg8000's placeholder conversion (``%s`` to ``$n``), once per distinct statement text."""
    converted: str = dbapi.convert_paramstyle("format", statement, ())[0]
    return converted


class Cursor(dbapi.Cursor):  # type: ignore[misc]
    def execute(self, operation: str, args: Any = (), stream: Any = None) -> None:
        if stream is not None or not args or isinstance(args, dict):
            super().execute(operation, args, stream)
            return
        c = self._c
        if c is None:
            raise dbapi.InterfaceError("Cursor closed")
        if not c._in_transaction and not c.autocommit:
            c.execute_simple(_BEGIN)
        oids: Any = getattr(self, "_input_oids", ())
        self._context = c.execute_unnamed(_convert(operation), vals=args, oids=oids)
        self._row_iter = None if self._context.rows is None else iter(self._context.rows)
        self._input_oids = ()
        self.input_types: list[Any] = []


class Connection(dbapi.Connection):  # type: ignore[misc]
    """A pg8000 DBAPI connection that pipelines each statement into one round trip."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.round_trips = 0
        self._begin_pending = False
        super().__init__(*args, **kwargs)
        self.register_in_adapter(_TIMESTAMPTZ_OID, _parse_timestamptz)

    def cursor(self) -> Cursor:
        return Cursor(self)

    def handle_messages(self, context: Any) -> None:
        self.round_trips += 1
        super().handle_messages(context)

    def execute_simple(self, statement: str) -> Any:
        if statement == _BEGIN and not self.autocommit:
            self._begin_pending = True  # sent with the first statement
            return core.Context(statement)
        if self._begin_pending:
            return self.execute_unnamed(statement)
        return super().execute_simple(statement)

    def execute_unnamed(self, statement: str, vals: Any = (), oids: Any = (), stream: Any = None) -> Any:
        if stream is not None:
            self._send_pending_begin()
            return super().execute_unnamed(statement, vals, oids, stream)
        if self._begin_pending and statement in ("commit", "rollback"):
            self._begin_pending = False  # nothing was sent: nothing to end
            return core.Context(statement)
        context = core.Context(statement)
        sock = self._sock
        if sock is None:
            raise dbapi.InterfaceError("connection is closed")
        if self._begin_pending:
            self._begin_pending = False
            self._send_unnamed(_BEGIN, (), ())
        self._send_unnamed(statement, vals, oids)
        self._send_message(core.DESCRIBE, core.PORTAL + core.NULL_BYTE)
        core._write(sock, core.EXECUTE_MSG)
        core._write(sock, core.SYNC_MSG)
        core._flush(sock)
        self.handle_messages(context)
        return context

    def _send_unnamed(self, statement: str, vals: Any, oids: Any) -> None:
        """Parse and Bind the unnamed statement; a bare statement (BEGIN) is executed at once."""
        self._send_message(core.PARSE, _parse_body(statement, oids, self._client_encoding))
        self.send_BIND(core.NULL_BYTE, core.make_params(self.py_types, vals))
        if statement == _BEGIN:
            core._write(self._sock, core.EXECUTE_MSG)

    def _send_pending_begin(self) -> None:
        if self._begin_pending:
            self._begin_pending = False
            super().execute_simple(_BEGIN)

    def lost(self) -> bool:
        """True when the server has closed this idle connection (or sent it something unasked,
        such as a termination notice): a zero-wait poll of the socket, no round trip."""
        usock = self._usock
        if usock is None or usock.fileno() < 0:
            return True
        try:
            readable, _, failed = select.select([usock], [], [usock], 0)
        except (OSError, ValueError):
            return True
        return bool(readable or failed)

    def rollback(self) -> None:
        if self._begin_pending:
            self._begin_pending = False
            return
        super().rollback()

    @property
    def _in_transaction(self) -> bool:
        return self._begin_pending or bool(super()._in_transaction)


def _parse_body(statement: str, oids: Any, encoding: str) -> bytes:
    body = bytearray(core.NULL_BYTE)
    body += statement.encode(encoding) + core.NULL_BYTE
    body += core.H_pack(len(oids))
    for oid in oids:
        body += core.i_pack(0 if oid == -1 else oid)
    return bytes(body)


def _parse_timestamptz(text: str) -> datetime:
    """PostgreSQL's ISO output (``2026-12-02 21:23:29.123456+00``); Python 3.11 reads it directly."""
    return datetime.fromisoformat(text)


def connect(**params: Any) -> Connection:
    """What SQLAlchemy's ``creator`` calls (same parameters as ``pg8000.dbapi.connect``)."""
    return Connection(**params)


__all__ = ["Connection", "connect"]
