"""URLs as t2ctl reads and shows them: the file a SQLite URL names, and a URL fit to show.

Below config and db, which both read database URLs; it imports nothing of t2ctl.
"""

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "********"


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite:///path`` URL names, relative to the working directory unless the
    URL has four slashes; None for any other scheme."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:") else None


def scrubbed(url: str, *, dsn: bool = False) -> str:
    """``url`` fit for a screen, a record or a log line. Any URL (a partner's, whose token may
    be its user part or query) loses user part, query and fragment; a ``dsn``, whose one secret
    is its password, keeps its shape with the password masked in the user part or the query.
    A SQLite URL is a path and is shown as written (urlunsplit would drop a slash)."""
    if sqlite_path(url) is not None:
        return url
    parts = urlsplit(url)
    if dsn:
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
        pairs = [(k, MASK if k == "password" else v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(pairs, safe="*")))
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    query = "…" if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))


def passwords(url: str) -> list[str]:
    """The passwords a DSN carries, in its user part or its query, as written and decoded:
    what the log filter must mask wherever either form turns up."""
    parts = urlsplit(url)
    found = [v for k, v in parse_qsl(parts.query) if k == "password"]
    return found + ([parts.password, unquote(parts.password)] if parts.password else [])
