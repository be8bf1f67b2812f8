"""SQLite storage: the one place that talks SQL.

``db.Database`` owns the connection and the per-component migrations; each module in
this package holds the schema and queries of one part (cameras, events, recordings,
cascade outbox, users). Parts call these functions; they never write SQL themselves.
"""

from gateway.store.db import Database

__all__ = ["Database"]
