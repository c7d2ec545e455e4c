"""End to end (issue 15): missed-call notifications as SMS through the GSM line.

The real daemon, a fake Huawei stick on real ptys as the GSM line (hal/fake/gsm.py), SIPp as the
provider and the agents. A provider call that rings department 200 and that nobody answers is
texted to the department's mobile and, since the owner turned it on, to the caller ("we missed
your call") — the caller's apology at most once a day: a second missed call from the same number
texts the department again but not the caller. The SMS are read back from the PDUs the modem was
given (AT+CMGS), decoded by the project's own TS 23.040 codec."""

from __future__ import annotations

from pathlib import Path

from hal.fake.gsm import FakeHuawei
from hal.modem.sms import SmsSubmit, decode_submit
from tests.e2e.linebox import running_linebox
from tests.e2e.test_calls import provider_call, start_agent, wait_for_records
from tests.e2e.test_gsm_e2e import gsm_config, mts

HEAD_MOBILE = "+79990001122"
CALLER = "79161112233"


def _texts(modem: FakeHuawei) -> list[SmsSubmit]:
    return [decode_submit(pdu) for pdu in modem.sms_sent]


def test_a_missed_call_is_texted_to_the_department_and_once_a_day_to_the_caller(
        tmp_path: Path) -> None:
    with FakeHuawei(link=tmp_path / "usb-HUAWEI_Mobile-if02-port0") as modem:
        config = gsm_config(modem, notifications={
            "missed_calls": {"200": {"sms": [HEAD_MOBILE], "caller_sms": True}},
            "sms_line": "mts"})
        with running_linebox(tmp_path / "linebox", config) as linebox, \
                start_agent(linebox, "101", tmp_path, scenario="agent_ring_only.xml",
                            calls=2) as agent1, \
                start_agent(linebox, "102", tmp_path, scenario="agent_ring_only.xml",
                            calls=2) as agent2:
            linebox.wait_for(lambda: mts(linebox)["state"] == "up", 15, "the GSM line up")
            for count in (1, 2):
                caller = provider_call(linebox, tmp_path, scenario="provider_cancel.xml",
                                       variables={"cancel_after_ms": 800,
                                                  "caller_id": CALLER}).run()
                assert caller.ok, caller.describe()
                records = wait_for_records(linebox, count)
                assert records[0]["outcome"] == "missed"
                expected = 2 if count == 1 else 3
                modem.wait_until(lambda n=expected: len(modem.sms_sent) >= n, timeout_s=30)
            agent1.wait()
            agent2.wait()
            texts = _texts(modem)
    to_head = [t for t in texts if t.recipient == HEAD_MOBILE]
    to_caller = [t for t in texts if t.recipient.lstrip("+") == CALLER]
    assert len(to_head) == 2, [(t.recipient, t.text) for t in texts]
    assert all(t.text.startswith(f"Пропущен звонок от {CALLER}") and "отдел 200" in t.text
               for t in to_head), [t.text for t in to_head]
    assert len(to_caller) == 1, [(t.recipient, t.text) for t in texts]
    assert to_caller[0].text == "Извините, мы пропустили ваш звонок. Мы перезвоним вам."
    assert len(texts) == 3
