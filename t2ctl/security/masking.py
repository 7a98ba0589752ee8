"""Masks for personal data shown in logs and tables."""


def email(address: str) -> str:
    """``ada@example.ng`` becomes ``a***@example.ng``."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}" if at else "***"


def phone(number: str | None) -> str | None:
    """``+2348031234567`` becomes ``+234*******567``."""
    if not number:
        return number
    return number[:4] + "*" * max(len(number) - 7, 0) + number[-3:]
