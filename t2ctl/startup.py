"""The start of every process, daemon or CLI: the one database handle and the master key.

Apart from ``wiring``, which imports every implementation it may pick (the Zoho client, the
webhook sender, the metrics): a command that only reads the database starts without them.
"""

import logging

from t2ctl import db
from t2ctl.config import Settings
from t2ctl.security.crypto import SecretBox, box_for

logger = logging.getLogger(__name__)


def connect(settings: Settings, *, connections: int) -> SecretBox:
    """Start a process, daemon or CLI: point the one database handle at ``database.url``
    (on PostgreSQL a pool of ``connections``, one per thread that may query at once), check
    that it answers (Unavailable if not: the first thing an operator must fix), and open the
    master key, the box every secret at rest is sealed in. Warns when the database is
    reached through a pooler with prepared statements on, the likeliest cause of
    "prepared statement ... does not exist" errors behind PgBouncer."""
    database = settings.database
    db.connect(
        database.url,
        max_connections=connections,
        listen_url=database.listen_url or None,
        prepared_statements=database.prepared_statements,
    )
    db.ping()
    if database.prepared_statements and not database.is_sqlite and db.behind_pooler():
        logger.warning(
            "database.url reaches PostgreSQL through a connection pooler with "
            "database.prepared_statements = true: behind PgBouncer in transaction mode "
            "(before 1.21, or without max_prepared_statements) set it to false",
            extra={"action": "prepared_statements_pooled"},
        )
    return box_for(settings)
