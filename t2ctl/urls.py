"""URLs as t2ctl reads them: the file a SQLite URL names.

Below config and db, which both read database URLs; it imports nothing of t2ctl.
"""


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite:///path`` URL names, relative to the working directory unless the
    URL has four slashes; None for any other scheme."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:") else None
