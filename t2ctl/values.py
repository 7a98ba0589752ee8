"""Value types that cross the faces: identifiers and money.

Money is kept as an integer count of minor units (kobo) inside, so no float ever touches a
price; it is written as ``{"value": "15000.00", "currency": "NGN"}`` outside.

The patterns are JSON Schema's (the OpenAPI document shows them), where ``$`` ends the text;
in Python's ``re`` it also matches before a final newline, so check them with ``re.fullmatch``.
"""

import re
from dataclasses import dataclass

ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,64}$"
ID_HINT = "must be 1-64 of A-Z a-z 0-9 . _ : -"
# Printable text: no control characters, C0, DEL or C1 (PostgreSQL refuses NUL in text, and
# ESC or CSI would reach an operator's terminal).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
MONEY_PATTERN = r"^[0-9]{1,13}\.[0-9]{2}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"


@dataclass(frozen=True)
class Money:
    minor: int
    currency: str

    @classmethod
    def parse(cls, value: str, currency: str) -> "Money":
        """Parse a two-place decimal string; raise ValueError with a message fit for a user."""
        if not re.fullmatch(MONEY_PATTERN, value):
            raise ValueError('must be a decimal string with two places, like "15000.00"')
        if not re.fullmatch(CURRENCY_PATTERN, currency):
            raise ValueError('currency must be three capital letters, like "NGN"')
        return cls(int(value.replace(".", "")), currency)

    @property
    def value(self) -> str:
        """Integer arithmetic, exact for any amount (a decimal context would round past 28
        digits)."""
        whole, cents = divmod(abs(self.minor), 100)
        return f"{'-' if self.minor < 0 else ''}{whole}.{cents:02d}"

    def times(self, quantity: int) -> "Money":
        return Money(self.minor * quantity, self.currency)

    def public(self) -> dict[str, str]:
        return {"value": self.value, "currency": self.currency}

    def __str__(self) -> str:
        return f"{self.value} {self.currency}"
