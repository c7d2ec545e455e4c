"""The daemon's control-socket commands for its GSM lines (issue 12): `sms_send` sends a text
message through a line's modem, `ussd` asks the network a USSD code (the balance: "*100#") and
returns its reply. `linebox sms send`, `linebox line NAME ussd CODE` and the web UI's line page
send these requests; the daemon hands each to the function of the same name with its modem
drivers by line name. Every answer is `{"ok": True, ...}` or `{"ok": False, "error": "..."}`
worded for the person who asked: a request never raises, whatever it holds.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from hal.modem.driver import ModemCommandError
from hal.modem.sms import split_text

LOGGER = logging.getLogger(__name__)

# A long message goes as concatenated parts (3GPP TS 23.040 §9.2.3.24.1): 10 of them is 670
# characters of Cyrillic (UCS2) or 1530 of Latin (GSM 7-bit), more than anyone types on a phone
# keyboard; past it a paste went wrong, or someone is using the box to spam.
SMS_PARTS_MAX = 10
SMS_TEXT_MAX_CHARS = SMS_PARTS_MAX * 153  # what 10 parts hold at best (GSM 7-bit)
# A recipient: a number with an optional "+", or a short service number ("900").
SMS_NUMBER_PATTERN = re.compile(r"\+?[0-9]{3,20}")
# A USSD string (3GPP TS 22.090 §4.5: "*", "#", digits; at most 182 characters): a code such
# as "*100#", or a menu choice ("1") answering the network's reply.
USSD_PATTERN = re.compile(r"[0-9*#+]{1,182}")

Sent = Callable[[str, str, str], object]  # (line, number, text) of a message sent


async def sms_send(drivers: Mapping[str, Any], request: dict[str, Any], *,
                   on_sent: Sent | None = None) -> dict[str, Any]:
    """Send `request["text"]` to `request["number"]` through GSM line `request["line"]`.

    Answers the line, number, the modem's message references and how many parts it took;
    `on_sent(line, number, text)` is called once the modem has taken every part (the daemon
    keeps the message in the `sms` table)."""
    line, driver, error = _gsm_line(drivers, request, "send SMS")
    if error:
        return error
    number = request.get("number")
    if not isinstance(number, str) or not SMS_NUMBER_PATTERN.fullmatch(number):
        return _refuse(f'the number must be 3 to 20 digits with an optional "+", got '
                       f"{_quote(number)}")
    text = request.get("text")
    if not isinstance(text, str) or not text.strip():
        return _refuse("the message is empty")
    parts = len(split_text(text)[1]) if len(text) <= SMS_TEXT_MAX_CHARS else SMS_PARTS_MAX + 1
    if parts > SMS_PARTS_MAX:
        return _refuse(f"the message is too long: it takes more than {SMS_PARTS_MAX} SMS "
                       f"({SMS_PARTS_MAX * 67} characters of Cyrillic, "
                       f"{SMS_TEXT_MAX_CHARS} of Latin)")
    try:
        references = list(await driver.send_sms(number, text))
    except (ModemCommandError, TimeoutError) as exc:
        LOGGER.warning("line %s: SMS to %s not sent: %s", line, number, exc)
        return _refuse(f"{line}: the modem did not send it: {exc or 'no answer'}")
    LOGGER.info("line %s: SMS to %s sent in %d part(s)", line, number, len(references))
    if on_sent is not None:
        on_sent(line, number, text)
    return {"ok": True, "line": line, "number": number, "references": references,
            "parts": len(references)}


async def ussd(drivers: Mapping[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Send USSD code `request["code"]` on GSM line `request["line"]`; the network's reply
    (the balance, a menu) as `reply`."""
    line, driver, error = _gsm_line(drivers, request, "send USSD codes")
    if error:
        return error
    code = request.get("code")
    if not isinstance(code, str) or not USSD_PATTERN.fullmatch(code):
        return _refuse(f'a USSD code is made of digits, "*" and "#" (like *100#), got '
                       f"{_quote(code)}")
    try:
        reply = str(await driver.ussd(code))
    except (ModemCommandError, TimeoutError) as exc:
        LOGGER.warning("line %s: USSD %s failed: %s", line, code, exc)
        return _refuse(f"{line}: no answer to {code}: {exc or 'no answer'}")
    return {"ok": True, "line": line, "code": code, "reply": reply}


def _gsm_line(drivers: Mapping[str, Any], request: dict[str, Any], what: str
              ) -> tuple[str, Any, dict[str, Any] | None]:
    """The line the request names and its driver, or the refusal to answer."""
    line = request.get("line")
    if not isinstance(line, str) or not line:
        return "", None, _refuse("name the line (line: NAME)")
    driver = drivers.get(line)
    if driver is None:
        known = ", ".join(sorted(drivers)) or "none is configured"
        return line, None, _refuse(f'no modem line "{line}" (modem lines: {known})')
    kind = getattr(driver, "kind", "")
    if kind != "gsm":
        return line, None, _refuse(f'line "{line}" is of kind {kind or "unknown"}: only a GSM '
                                   f"line can {what}")
    return line, driver, None


def _refuse(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _quote(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else type(value).__name__
