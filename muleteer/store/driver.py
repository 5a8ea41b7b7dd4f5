"""The statements a handler runs for every job, run on the database driver's own cursor.

SQLAlchemy builds them (store/prepared.py) and compiles them here, once per dialect and
shape, to their SQL text, their parameters' order and the functions that type each value
in and out (a datetime is text in SQLite). Running a compiled statement through
SQLAlchemy's Connection still cost more CPU than SQLite's own work: under load, half of a
mule's Python time was SQLAlchemy's execution machinery, 5% the driver's. A pooled DBAPI
connection and its cursor do the same work for a fraction of it.

What callers see does not change: rows are plain dicts typed as SQLAlchemy types them,
a driver error is raised as SQLAlchemy's (OperationalError for a locked or unreachable
database, which Database._retrying retries), and a connection the error shows dead is
dropped from the pool, as SQLAlchemy drops it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class Compiled:
    """One statement for one dialect: its text and how its values go in and come out."""
    sql: str
    order: tuple[str, ...] | None  # a positional driver's parameter order; None: by name
    constants: dict  # values SQLAlchemy put in the statement itself (IN lists, CASE)
    expanding: tuple[str, ...]  # parameters given as a list, one placeholder per item
    bind: dict[str, Callable]  # a parameter's typing function, where it has one
    columns: tuple[str, ...]  # what a row returned holds
    results: tuple  # each column's typing function, or None


def compile_statement(stmt, dialect, column_keys: Sequence[str] = (),
                      lengths: dict[str, int] | None = None) -> Compiled:
    """Compile `stmt` for `dialect`. `column_keys`: the columns an INSERT is given;
    `lengths`: how many items each list parameter (an expanding IN) has."""
    lengths = lengths or {}
    if getattr(stmt, "is_insert", False):
        # SQLAlchemy fills a column's Python-side default as it executes; the cursor won't.
        missing = [c.key for c in stmt.table.columns
                   if c.default is not None and c.key not in column_keys]
        if missing:
            raise ValueError(f"INSERT INTO {stmt.table.name} on the driver's cursor must be "
                             f"given {', '.join(missing)} (their defaults are Python-side)")
    compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys) or None)
    expanding = tuple(name for name, bind in compiled.binds.items() if bind.expanding
                      and name in lengths)
    # SQLAlchemy renders a constant IN list and an expanding parameter just before it
    # executes; render them once here, with placeholder values for what comes per call.
    sample = {name: ([None] * lengths[name] if name in expanding else None)
              for name, bind in compiled.binds.items() if bind.required}
    state = compiled.construct_expanded_state(sample)
    constants = {name: value for name, value in state.parameters.items()
                 if name not in sample and not _item_of(name, expanding)}
    bind = {}
    for name in state.parameters:
        parameter = compiled.binds.get(name)
        if parameter is None:
            parameter = compiled.binds.get(_item_of(name, compiled.binds) or "")
        if parameter is None:
            continue
        process = parameter.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            bind[name] = process
    returned = tuple(getattr(stmt, "exported_columns", ()) or ())
    results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None)
                    for column in returned)
    return Compiled(sql=state.statement,
                    order=tuple(state.positiontup) if state.positiontup is not None else None,
                    constants=constants, expanding=expanding, bind=bind,
                    columns=tuple(column.key for column in returned), results=results)


def _item_of(name: str, lists) -> str | None:
    """The list parameter that `name` (`tags_2`) is an item of, if any."""
    base, _, index = name.rpartition("_")
    return base if index.isdigit() and base in lists else None


class DriverStatements:
    """Compiled statements of one engine, run on its pooled DBAPI connections."""

    def __init__(self, engine):
        self.engine = engine
        self.dialect = engine.dialect
        self._compiled: dict = {}

    # Statements are meant to be built once (store/prepared.py); one built per call would
    # otherwise grow this cache without end.
    CACHE_SIZE = 512

    def compiled(self, stmt, column_keys=(), lengths: tuple = ()) -> Compiled:
        key = (stmt, tuple(column_keys), lengths)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= self.CACHE_SIZE:
                self._compiled.clear()
            found = self._compiled[key] = compile_statement(stmt, self.dialect, column_keys,
                                                            dict(lengths))
        return found

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Cursor"]:
        """One transaction on a pooled connection: committed when the block ends, rolled
        back (as the pool returns the connection) when it raises."""
        connection = self.engine.raw_connection()
        cursor = None
        try:
            cursor = Cursor(self, connection)
            yield cursor
            cursor.call(connection.commit, "COMMIT", {})
        finally:
            if cursor is not None:
                cursor.close()
            connection.close()

    def read(self, stmt, params: dict) -> list[dict]:
        """A statement run in a transaction of its own, its rows returned."""
        with self.transaction() as cursor:
            return cursor.execute(stmt, params)


class Cursor:
    def __init__(self, statements: DriverStatements, connection):
        self._statements = statements
        self._connection = connection
        self._cursor = connection.cursor()
        self.rowcount = -1

    def execute(self, stmt, params: dict | list[dict]) -> list[dict]:
        """Run `stmt` with `params` (named as its bindparams); the rows it returns. A list
        of parameter sets runs it once for each, as SQLAlchemy's execute() does."""
        if isinstance(params, list):
            self.executemany(stmt, params)
            return []
        lengths = tuple(sorted((name, len(value)) for name, value in params.items()
                               if isinstance(value, (list, tuple))))
        compiled = self._statements.compiled(stmt, _insert_keys(stmt, params), lengths)
        values = _values(compiled, params)
        self.call(lambda: self._cursor.execute(compiled.sql, values), compiled.sql, values)
        self.rowcount = self._cursor.rowcount
        if not compiled.columns:
            return []
        rows = self.call(self._cursor.fetchall, compiled.sql, values)
        return [_row(compiled, row) for row in rows]

    def executemany(self, stmt, rows: Sequence[dict]) -> None:
        """One INSERT (or UPDATE) for each of `rows`, which all name the same columns."""
        if not rows:
            return
        compiled = self._statements.compiled(stmt, _insert_keys(stmt, rows[0]))
        values = [_values(compiled, row) for row in rows]
        self.call(lambda: self._cursor.executemany(compiled.sql, values), compiled.sql, values)

    def call(self, fn, sql, values):
        """fn(), a driver error raised as SQLAlchemy raises it (a dead connection dropped)."""
        dialect = self._statements.dialect
        try:
            return fn()
        except dialect.loaded_dbapi.Error as exc:
            dead = dialect.is_disconnect(exc, self._connection.dbapi_connection, self._cursor)
            if dead:
                self._connection.invalidate(exc)
            raise DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=dead, dialect=dialect) from exc

    def close(self) -> None:
        try:
            self._cursor.close()
        except self._statements.dialect.loaded_dbapi.Error:
            pass  # a dead connection's cursor; the connection is dropped or reset next


def _insert_keys(stmt, params: dict) -> tuple:
    """An INSERT's columns are the ones given; other statements name their own."""
    return tuple(sorted(params)) if getattr(stmt, "is_insert", False) else ()


def _values(compiled: Compiled, params: dict):
    given = dict(compiled.constants)
    for name, value in params.items():
        if name in compiled.expanding:
            for index, item in enumerate(value, 1):
                given[f"{name}_{index}"] = item
        else:
            given[name] = value
    for name, process in compiled.bind.items():
        if name in given:
            given[name] = process(given[name])
    if compiled.order is None:
        return given
    return tuple(given[name] for name in compiled.order)


def _row(compiled: Compiled, row) -> dict:
    return {name: (value if process is None or value is None else process(value))
            for name, value, process in zip(compiled.columns, row, compiled.results)}
