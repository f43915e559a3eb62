"""URIs as tierwise shows them: credentials masked, so no log line, error or printed output gives a password away.

A tracking store, a registry or an upstream API may be named with credentials in its address
(`http://alice:secret@mlflow:5000/`). Wherever tierwise prints such an address, or a message that may quote
one (an MLflow or HTTP error), it goes through `masked` first: `http://alice:***@mlflow:5000/`. Servers put
`masked_record` on their log handlers, so a library's own log lines are masked too.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
# scheme://userinfo@ : the userinfo runs to the last '@' before the path, query, fragment or a space
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s]*)@")


def masked(text: str) -> str:
    """`text` (a URI, or a message quoting any number of them) with every URI's password, or bare token, masked.

    A user name stays readable (`alice:***@`); a userinfo with no password is taken for a token (`***@`).
    """
    return _USERINFO.sub(_mask_userinfo, text)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match[2].partition(":")
    return f"{match[1]}{user}:{MASK}@" if colon else f"{match[1]}{MASK}@"


def masked_record(record: logging.LogRecord) -> bool:
    """A log handler filter: the record's message and traceback with every URI's credentials masked."""
    message = record.getMessage()
    shown = masked(message)
    if shown != message:
        record.msg, record.args = shown, None
    if record.exc_info and not record.exc_text:
        record.exc_text = masked(logging.Formatter().formatException(record.exc_info))
    return True
