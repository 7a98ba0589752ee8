"""t2ctl: the gateway through which T2Mobile sells IconTech's software subscriptions."""

from importlib import metadata

try:
    __version__ = metadata.version("t2ctl")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
