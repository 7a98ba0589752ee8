"""Masks for personal data shown in logs and tables."""

from typing import overload


def email(address: str) -> str:
    """``ada@example.ng`` becomes ``a***@example.ng``."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}" if at else "***"


@overload
def phone(number: str) -> str: ...
@overload
def phone(number: None) -> None: ...
def phone(number: str | None) -> str | None:
    """``+2348031234567`` becomes ``+234*******567``."""
    if not number:
        return number
    return number[:4] + "*" * max(len(number) - 7, 0) + number[-3:]
