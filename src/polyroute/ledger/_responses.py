"""Stored Responses API answers (the gateway's ``store`` and ``previous_response_id``).

Each function is a job for :meth:`Ledger.run`: it runs on the ledger's thread with
its :class:`Store`. SQLAlchemy is imported there, not by whoever imports this module.
A stored response belongs to the virtual key that made it: ``key`` ``None`` is the
gateway's admin (or an open gateway), who sees every one; a key sees only its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyroute.ledger._store import Store


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    virtual_key: str | None
    created_at: float
    model: str
    input: str
    """The conversation up to this answer: input items, as a JSON array."""
    response: str
    """The Response object as it was rendered (JSON)."""


def put_response(stored: StoredResponse) -> Callable[[Store], None]:
    """The job that stores ``stored``."""

    def job(store: Store) -> None:
        from polyroute.ledger._schema import responses

        with store.write() as c:
            c.execute(
                responses.insert().values(
                    id=stored.id,
                    virtual_key=stored.virtual_key,
                    created_at=stored.created_at,
                    model=stored.model,
                    input=stored.input,
                    response=stored.response,
                )
            )

    return job


def _visible(table: Any, response_id: str, key: str | None) -> Any:
    where = table.c.id == response_id
    return where if key is None else where & (table.c.virtual_key == key)


def get_response(response_id: str, key: str | None) -> Callable[[Store], StoredResponse | None]:
    """The job that reads a stored response ``key`` may see (``None`` if there is none)."""

    def job(store: Store) -> StoredResponse | None:
        from sqlalchemy import select

        from polyroute.ledger._schema import responses as t

        with store.read() as c:
            row = c.execute(select(t).where(_visible(t, response_id, key))).first()
        if row is None:
            return None
        return StoredResponse(
            row.id, row.virtual_key, row.created_at, row.model, row.input, row.response
        )

    return job


def delete_response(response_id: str, key: str | None) -> Callable[[Store], bool]:
    """The job that deletes a stored response ``key`` may see (``True`` if there was one)."""

    def job(store: Store) -> bool:
        from polyroute.ledger._schema import responses as t

        with store.write() as c:
            return bool(c.execute(t.delete().where(_visible(t, response_id, key))).rowcount)

    return job
