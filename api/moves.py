"""What both state machines share (api/projects/lifecycle.py, api/escrow/lifecycle.py): the
conditional status UPDATE behind each aggregate's one writer, and the 409 it answers when the row
moved meanwhile."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

import asyncpg

from api.errors import Conflict

# The only tables a move is written to; their names are the only ones interpolated below.
_TABLES: Final = frozenset({"projects", "escrow_holds"})


async def conditional_move(
    conn: asyncpg.Connection,
    *,
    table: str,
    row_id: object,
    sources: Sequence[str],
    target: str,
    sets: str = "",
    args: Sequence[Any] = (),
) -> str | None:
    """Set `table`'s status to `target` if it is still one of `sources`; returns None when it
    moved, else the status it is in now (None too if the row is gone). `sets` adds assignments
    (", column = $4"), whose values are `args` from $4 on."""
    if table not in _TABLES:
        raise ValueError(f"not a table with a state machine: {table}")
    moved = await conn.fetchval(
        f"""UPDATE {table} SET status = $3, updated_at = now(){sets}
             WHERE id = $1 AND status = ANY($2::text[])
            RETURNING true""",
        row_id,
        list(sources),
        target,
        *args,
    )
    if moved:
        return None
    current: str | None = await conn.fetchval(f"SELECT status FROM {table} WHERE id = $1", row_id)
    return current if current is not None else "gone"


def status_changed(
    *,
    what: str,
    code: str,
    id_key: str,
    row_id: object,
    status_key: str,
    current: str | None,
    sources: Collection[str],
    target: str,
) -> Conflict:
    """The 409 when a row was no longer in the status a move was decided from: a concurrent
    change won; the caller may reread and try again."""
    return Conflict(
        f"the {what} changed meanwhile; it is {current}, not {' or '.join(sorted(sources))}",
        code=code,
        details={
            id_key: str(row_id),
            status_key: current,
            "expectedStatus": sorted(sources),
            "requestedStatus": target,
        },
    )
