"""One HTTP POST to a receiver, and what its answer means for the message.

``ok`` (2xx): delivered. ``reject`` (a 4xx other than 408, 425 and 429, or a
redirect): the receiver refuses this message (a bad routing key, a bad
payload); sending it again would not help, so it is logged and counted, not
retried. ``retry`` (5xx, 408, 425, 429, a timeout, a refused or broken
connection): the receiver may take it later.

>>> classify(202), classify(400), classify(429), classify(503), classify(301)
('ok', 'reject', 'retry', 'retry', 'reject')
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

__all__ = ["Request", "Result", "Outcome", "classify", "post"]

Outcome = Literal["ok", "retry", "reject"]
_RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


class Result(NamedTuple):
    outcome: Outcome
    #: The HTTP status, or None when no answer came.
    status: int | None
    #: One line for the log: the status or the kind of failure, never a body or a header.
    reason: str


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return "ok"
    if status >= 500 or status in _RETRYABLE_4XX:
        return "retry"
    return "reject"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is the receiver's answer, not a place to re-post the signed body


_OPENER = urllib.request.build_opener(_NoRedirect())


def post(req: Request, timeout_s: float) -> Result:
    """POST ``req``; never raises for a network or HTTP failure."""
    r = urllib.request.Request(req.url, data=req.body, headers=req.headers, method="POST")
    try:
        with _OPENER.open(r, timeout=timeout_s) as resp:
            resp.read(65536)
            status = int(resp.status)
    except urllib.error.HTTPError as err:
        status = int(err.code)
        err.close()
    except TimeoutError:
        return Result("retry", None, "timed out")
    except urllib.error.URLError as err:
        kind = "timed out" if isinstance(err.reason, TimeoutError) else "unreachable"
        return Result("retry", None, f"{kind} ({err.reason.__class__.__name__})")
    except (OSError, http.client.HTTPException) as err:
        return Result("retry", None, f"connection failed ({err.__class__.__name__})")
    except ValueError as err:  # a URL or header urllib cannot send (a host label too long...): not retried
        return Result("reject", None, f"cannot be sent ({err.__class__.__name__})")
    return Result(classify(status), status, f"HTTP {status}")
