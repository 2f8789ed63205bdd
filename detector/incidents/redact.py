"""Redaction of identifiers before they leave the service in an incident.

Evidence carries identifiers only (request ids, trace ids, versions, tool
names), never free text. Even identifiers can hold personal data or secrets
when a client puts an email, a phone number or a key where an id belongs,
so every identifier passes :func:`redact_id` on its way into an incident:
a value that looks like a secret or personal data is replaced *whole* by a
marker naming what it looked like (nothing of it is kept), control
characters are dropped, and the result is at most :data:`MAX_ID_LEN` chars.

>>> redact_id("req-7f3a91")
'req-7f3a91'
>>> redact_id("alice@example.com")
'[redacted:email]'
>>> redact_id("sk-live-4eC39HqLyjWDarjtT1zdp7dc")
'[redacted:api_key]'
>>> len(redact_id("x" * 500))
128

Ordinary ids stay readable: UUIDs, W3C trace ids (32 hex chars), ULIDs and
plain numbers are not treated as secrets.

>>> redact_id("4bf92f3577b34da6a3ce929d0e0e4736")
'4bf92f3577b34da6a3ce929d0e0e4736'
>>> redact_id("+44 20 7946 0958")
'[redacted:phone]'
"""

from __future__ import annotations

import math
import re
from collections import Counter

__all__ = ["redact_id", "classify", "mask", "MAX_ID_LEN"]

#: Longest identifier copied into an incident.
MAX_ID_LEN = 128

# Order matters: the first pattern that matches names the marker.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("jwt", re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")),
    ("bearer", re.compile(r"(?i)\b(bearer|basic)[\s:=_+-]+[A-Za-z0-9._~+/=-]{8,}")),
    ("aws_key", re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")),
    ("api_key", re.compile(
        r"(\bsk|\bpk|\brk)[-_](live|test|proj|ant)?[-_]?[A-Za-z0-9_-]{16,}"  # OpenAI, Stripe...
        r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}"  # GitHub
        r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
        r"|\bAIza[0-9A-Za-z_-]{30,}"  # Google
        r"|\bglpat-[A-Za-z0-9_-]{16,}"  # GitLab
    )),
    ("secret", re.compile(
        r"(?i)(api[_-]?key|apikey|secret|passw(or)?d|pwd|token|access[_-]?key|private[_-]?key)\s*[=:]\s*\S+"
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    )),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    # International form (+ and 8-15 digits) or a separated North American
    # number. Bare digit strings are left alone: numeric ids are common.
    ("phone", re.compile(
        r"(?<![\w+])\+\d[\d\s().-]{6,18}\d(?!\w)"
        r"|(?<![\w-])\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\w-])"
    )),
)
_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
_HEX_OR_UUID = re.compile(r"[0-9a-fA-F-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _looks_secret(token: str) -> bool:
    """A long token with lower case, upper case and digits and high entropy.

    Hex strings and UUIDs (trace ids) are never secrets here: their entropy
    is capped at 4 bits a character and they are the commonest real ids.
    """
    if _HEX_OR_UUID.fullmatch(token):
        return False
    if not (any(c.islower() for c in token) and any(c.isupper() for c in token)
            and any(c.isdigit() for c in token)):
        return False
    return _entropy(token) >= 4.0


def classify(value: str) -> str | None:
    """What sensitive thing ``value`` looks like, or None for an ordinary id.

    >>> classify("Bearer abcdefgh12345678"), classify("order-1234")
    ('bearer', None)
    >>> classify("AKIAIOSFODNN7EXAMPLE")
    'aws_key'
    >>> classify("Zk9mQ2xLp0Rw8sTn4VbYc6HdJ1eFgA7u")
    'secret'
    """
    for name, pattern in _PATTERNS:
        if pattern.search(value):
            return name
    for m in _TOKEN.finditer(value):
        if _looks_secret(m.group(0)):
            return "secret"
    return None


def redact_id(value: object) -> str:
    """The identifier as it may appear in an incident (masked if sensitive, bounded).

    >>> redact_id("trace\\n42"), redact_id(None)
    ('trace42', '')
    >>> redact_id("call me on (415) 555-0123")
    '[redacted:phone]'
    """
    if value is None:
        return ""
    text = _CONTROL.sub("", str(value))
    # Look at a bounded prefix only: ids are short, and this keeps the
    # regexes' cost fixed whatever a client sends.
    kind = classify(text[: MAX_ID_LEN * 4])
    if kind is not None:
        return f"[redacted:{kind}]"
    return text[:MAX_ID_LEN]


def mask(text: str, limit: int = 500) -> str:
    """Operator text (a command's note) with each sensitive part replaced by its marker, bounded.

    Unlike :func:`redact_id`, the rest of the text is kept: a note is written by staff for staff.

    >>> mask("paged alice@example.com, key sk-live-4eC39HqLyjWDarjtT1zdp7dc rotated")
    'paged [redacted:email], key [redacted:api_key] rotated'
    """
    out = _CONTROL.sub(" ", text[:limit])
    for name, pattern in _PATTERNS:
        out = pattern.sub(f"[redacted:{name}]", out)
    return _TOKEN.sub(lambda m: "[redacted:secret]" if _looks_secret(m.group(0)) else m.group(0), out)
