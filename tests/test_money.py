"""Money, by its properties: exact integer minor units, no float anywhere, and a clear refusal
of every string that is not a two-place decimal and a three-letter currency."""

import decimal
import re
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from t2ctl.values import Money

# The largest value the API takes: 13 digits before the point.
MAX_MINOR = 10**15 - 1
CURRENCIES = st.from_regex(r"[A-Z]{3}", fullmatch=True)
VALUES = st.from_regex(r"[0-9]{1,13}\.[0-9]{2}", fullmatch=True)
# An exact reference for the arithmetic, with room for any product of the values above.
EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.Rounded])


@settings(max_examples=200)
@given(minor=st.integers(0, MAX_MINOR), currency=CURRENCIES)
def test_what_is_written_reads_back_the_same(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", money.value)
    assert Money.parse(money.value, money.currency) == money


@settings(max_examples=200)
@given(value=VALUES, currency=CURRENCIES)
def test_parsing_is_exact_decimal_arithmetic(value: str, currency: str) -> None:
    money = Money.parse(value, currency)
    assert Decimal(money.minor) == EXACT.multiply(Decimal(value), 100)
    # Written back in the one canonical form: no leading zeros, two places.
    assert money.value == f"{EXACT.quantize(Decimal(value), Decimal('0.01'))}"


@settings(max_examples=200)
@given(minor=st.integers(-(10**40), 10**40))
@example(minor=10**28 + 1)  # past the default decimal context's 28 digits
@example(minor=-5)
def test_any_amount_is_written_exactly(minor: int) -> None:
    """However large (a settlement total of many orders), not a digit is rounded."""
    written = Money(minor, "NGN").value
    assert Decimal(written) == EXACT.divide(Decimal(minor), 100)
    assert re.fullmatch(r"-?[0-9]+\.[0-9]{2}", written)


@settings(max_examples=200)
@given(value=VALUES, quantity=st.integers(1, 1000))
def test_price_times_quantity_is_exact(value: str, quantity: int) -> None:
    total = Money.parse(value, "NGN").times(quantity)
    assert Decimal(total.value) == EXACT.multiply(Decimal(value), quantity)
    assert total.currency == "NGN"


@settings(max_examples=300)
@given(
    text=st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
    | st.from_regex(r"[0-9 .,+\-eE_]{0,18}", fullmatch=True)
)
@example(text="15000.00\n")  # `$` in a pattern also matches before a final newline
@example(text="15000.0")
@example(text="1.005")
@example(text="-1.00")
@example(text=" 1.00")
@example(text="1e3")
@example(text="1_000.00")
@example(text="1,000.00")
@example(text="NaN")
@example(text="Infinity")
@example(text="١٢.٠٠")  # Arabic-Indic digits: digits to Python's int(), not to us
@example(text="１.００")  # fullwidth digits
@example(text="12345678901234.00")  # 14 digits before the point
def test_anything_but_a_two_place_decimal_is_refused(text: str) -> None:
    if re.fullmatch(r"[0-9]{1,13}\.[0-9]{2}", text, flags=re.ASCII):
        Money.parse(text, "NGN")
        return
    with pytest.raises(ValueError, match="decimal string with two places"):
        Money.parse(text, "NGN")


@pytest.mark.parametrize("currency", ["ngn", "NG", "NGNN", "NGN\n", " NGN", "₦", "", "N1N"])
def test_a_currency_not_three_capital_letters_is_refused(currency: str) -> None:
    with pytest.raises(ValueError, match="three capital letters"):
        Money.parse("1.00", currency)


def test_amounts_compare_by_value_and_currency() -> None:
    assert Money.parse("015000.00", "NGN") == Money.parse("15000.00", "NGN")
    assert Money.parse("15000.00", "NGN") != Money.parse("15000.00", "USD")
    assert Money.parse("9999.99", "NGN").times(3) == Money.parse("29999.97", "NGN")
