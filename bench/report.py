"""What a section of ``python -m bench`` hands back: rows, each a measurement on one database."""

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    """One measurement. ``value`` is the number behind ``text`` and ``numbers`` any others (for
    --json); ``meets`` says whether it meets ``target``, None when there is no target or the run
    cannot be judged; ``note`` is said under the table (what does not fit a cell); ``error``
    marks a run that went wrong, which ``python -m bench`` exits 1 for."""

    label: str
    text: str
    target: str = ""
    value: float | None = None
    meets: bool | None = None
    numbers: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    error: bool = False


def at_least(label: str, value: float, floor: float, unit: str = "", digits: int = 0) -> Row:
    text, target = _shown(value, unit, digits), "≥ " + _shown(floor, unit, digits)
    return Row(label, text, target, value, value >= floor)


def below(label: str, value: float, ceiling: float, unit: str = "", digits: int = 0) -> Row:
    text, target = _shown(value, unit, digits), "< " + _shown(ceiling, unit, digits)
    return Row(label, text, target, value, value < ceiling)


def _shown(value: float, unit: str, digits: int) -> str:
    """``1,234 MB``, ``1,234/s``, ``0.45``."""
    space = "" if unit.startswith("/") else " "
    return f"{value:,.{digits}f}{space}{unit}".rstrip()


def failed(label: str, why: str, target: str = "") -> Row:
    """A measurement that did not run cleanly: shown as such, never as a number."""
    return Row(label, f"FAILED: {why}", target, None, False, error=True)


def errors_row(label: str, errors: int) -> Row:
    """Errors a daemon logged: a run that logged any did not go as measured."""
    return Row(label, f"{errors:,}", "0", errors, errors == 0, error=errors > 0)
