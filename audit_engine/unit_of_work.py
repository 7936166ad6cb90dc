"""A unit of work: one transaction on one session, committed or rolled back as a whole.

The service functions take one and open it (``with uow as s:``), so each use case owns its
transaction: committed when the block ends, rolled back when anything in it raises. The HTTP
layer hands one to every request (``api.deps.UnitOfWorkDep``); scripts wrap their own session.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session


class UnitOfWork:
    """``with uow as s:``: ``s`` is the session; the transaction ends with the block."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def __enter__(self) -> Session:
        return self.session

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.session.commit()
        else:
            self.session.rollback()
