"""t2ctl: the gateway through which T2Mobile sells IconTech's software subscriptions."""

from typing import Any


def __getattr__(name: str) -> Any:
    """``__version__``, read from the installed package's metadata when first asked for:
    importing ``importlib.metadata`` and finding the distribution cost every command about
    10 ms, and most never show the version."""
    if name != "__version__":
        raise AttributeError(f"module 't2ctl' has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("t2ctl")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        version = "0.0.0+unknown"
    globals()["__version__"] = version
    return version
