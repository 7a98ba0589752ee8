"""Text from outside (a customer's name, a request's path, a partner's response) made harmless
for the terminal an operator reads tables and logs on.

ESC and CSI would recolour the screen, move the cursor or retitle the window; a carriage
return or a newline would forge a log line; a bidirectional override reorders what is read;
no terminal encoding takes a lone surrogate. Each such character is written as its escape
(``\\x1b``, ``\\u202e``), so an operator sees that it is there and it does nothing.
"""

import re

# Control characters C0 (but tab and newline), DEL and C1; bidirectional marks, embeddings,
# overrides and isolates; lone surrogates.
_UNSAFE = r"\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_KEEPING_LINES = re.compile(f"[{_UNSAFE}]")
_ONE_LINE = re.compile(f"[{_UNSAFE}\\t\\n]")


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with every unsafe character escaped; ``one_line`` escapes tab and newline too
    (a log record is one line)."""
    pattern = _ONE_LINE if one_line else _KEEPING_LINES
    return pattern.sub(lambda found: found[0].encode("unicode_escape").decode(), text)


def json_text(line: str) -> str:
    """A JSON document with the unsafe characters that ``json.dumps(ensure_ascii=False)``
    leaves raw (DEL, C1, bidi, surrogates) written as ``\\uXXXX``: the same JSON, safe to show.
    They can only stand inside its strings, where the escape means the same character."""
    return _KEEPING_LINES.sub(lambda found: f"\\u{ord(found[0]):04x}", line)
