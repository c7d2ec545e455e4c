"""Three fake GSM modems with the differences of the real ones (MODEMS.md §1, the channel
drivers chan_dongle and chan_quectel): a Huawei E1550-class voice stick, a Quectel EC25 and a
SIMCom SIM7600. Each is a FakeAtModem (hal/fake/atmodem.py) with its identity, its own
commands, the unsolicited results that say where a call stands, and the switch that puts voice
on the audio port.

    with FakeHuawei(link=tmp / "by-id" / "usb-HUAWEI_Mobile-if02-port0") as modem:
        modem.port, modem.audio_port, modem.imei
        modem.ring("+79161234567"); modem.wait_for_command(r"^ATA")
"""

from __future__ import annotations

import datetime
import logging

from .atmodem import (
    CALL_ACTIVE,
    CALL_ALERTING,
    CALL_DIALING,
    CALL_INCOMING,
    Call,
    FakeAtModem,
    Handler,
    Info,
)

LOGGER = logging.getLogger(__name__)

__all__ = ["FakeAtModem", "FakeHuawei", "FakeQuectel", "FakeSimcom"]

HUAWEI_END_STATUS = 104  # ^CEND <end_status> as E1550 logs show it for a cleared call


class FakeHuawei(FakeAtModem):
    """Huawei E1550/E173 with the voice firmware.

    Quirks: `COMMAND NOT SUPPORT` for what it does not know; ^RSSI, ^HCSQ and ^BOOT lines
    (one after a doubled <CR>) land between a response's information and its OK every
    NOISE_EVERY answers (wdoekes#143, bg111#272); call progress as ^ORIG/^CONF/^CONN/^CEND;
    voice on the audio port only after AT^DDSETEX=2 in a call; ^SMMEMFULL when the SIM is full.
    """

    name = "huawei"
    MANUFACTURER = "huawei"
    MODEL = "E1550"
    REVISION = "11.608.12.02.143"
    UNKNOWN_COMMAND = "COMMAND NOT SUPPORT"
    ACCESS_TECHNOLOGY = 2
    NOISE_EVERY = 3

    def _defaults(self) -> None:
        super()._defaults()
        self.ddsetex = False
        self._noise_turn = 0

    def handlers(self) -> dict[str, Handler]:
        table = super().handlers()
        table.update({"^CVOICE": self._at_cvoice, "^DDSETEX": self._at_ddsetex,
                      "^DTMF": self._at_dtmf, "^SYSINFO": self._at_sysinfo})
        for name in ("^U2DIAG", "^PORTSEL", "^CURC", "^SYSCFG", "^CPIN"):
            table[name] = self._accepted
        return table

    def boot_urcs(self) -> list[str]:
        return ["^SIMST:1" if self.sim != "absent" else "^SIMST:255", "^SRVST:2",
                "^MODE:5,4", f"^RSSI:{self.rssi}", "^BOOT:20464856,0,0,0,72"]

    def _noise(self) -> str:
        self._noise_turn += 1
        turn = self._noise_turn % 3
        if turn == 1:
            return f"\r\n^RSSI:{self.rssi}\r\n"
        if turn == 2:
            return '\r\r\n^HCSQ:"WCDMA",30,30,58\r\n'
        return "\r\n^BOOT:20464856,0,0,0,72\r\n"

    def _at_cvoice(self, mode: str, args: list[str]) -> Info:
        # chan_dongle checks voice support here: mode 0, 8000 Hz, 16 bit, 20 ms
        return ["^CVOICE:0,8000,16,20"] if mode == "read" else []

    def _at_ddsetex(self, mode: str, args: list[str]) -> Info:
        if mode == "set" and args == ["2"]:
            self.ddsetex = True
            self.loop.call_soon(self._update_audio)
            return []
        if mode == "test":
            return ["^DDSETEX: (2)"]
        raise self.cme(3)

    def _at_dtmf(self, mode: str, args: list[str]) -> Info:
        if mode != "set" or len(args) < 2 or not args[1]:
            raise self.cme(3)
        self._record_dtmf(args[1][0])
        return []

    def _at_sysinfo(self, mode: str, args: list[str]) -> Info:
        service = 2 if self.registered else 0
        return [f"^SYSINFO:{service},3,0,5,{0 if self.sim == 'absent' else 1},,4"]

    def _audio_switched_on(self) -> bool:
        return self.ddsetex

    def _call_audio_reset(self) -> None:
        self.ddsetex = False

    def _call_state_changed(self, call: Call) -> None:
        if call.state == CALL_DIALING:
            self._urc(f"^ORIG:{call.index},0")
        elif call.state == CALL_ALERTING:
            self._urc(f"^CONF:{call.index}")
        elif call.state == CALL_ACTIVE:
            self._urc(f"^CONN:{call.index},0")

    def _call_ended(self, call: Call, cause: int, by_remote: bool, duration_s: int) -> None:
        self._urc(f"^CEND:{call.index},{duration_s},{HUAWEI_END_STATUS},{cause}")

    def _set_signal(self, rssi: int) -> None:
        super()._set_signal(rssi)
        self._urc(f"^RSSI:{rssi}")

    def _storage_full(self) -> None:
        super()._storage_full()
        self._urc('^SMMEMFULL: "SM"')


class FakeQuectel(FakeAtModem):
    """Quectel EC25: +QIND "ccinfo" (or ^DSCI) call states once enabled, +QHUP, +CEREG,
    +QIND "csq"; voice on the audio port while AT+QPCMV=1,0 holds (1,2 is USB audio, not here).
    """

    name = "quectel"
    MANUFACTURER = "Quectel"
    MODEL = "EC25"
    REVISION = "EC25EFAR06A06M4G"
    LTE = True
    ACCESS_TECHNOLOGY = 7

    def _defaults(self) -> None:
        super()._defaults()
        self.qpcmv = "0"
        self.indications: set[str] = set()  # +QINDCFG names switched on
        self.dsci = False
        self.tone_detection = False

    def handlers(self) -> dict[str, Handler]:
        table = super().handlers()
        table.update({"+CEREG": self._at_cereg, "+QPCMV": self._at_qpcmv,
                      "+QINDCFG": self._at_qindcfg, "^DSCI": self._switch("^DSCI", "dsci"),
                      "+QHUP": self._at_qhup, "+QCCID": self._iccid("+QCCID"),
                      "+QTONEDET": self._switch("+QTONEDET", "tone_detection")})
        for name in ("+QGPSCFG", "+QCFG", "+QURCCFG", "+QAUDMOD", "+QDAI"):
            table[name] = self._accepted
        return table

    def identification(self) -> Info:
        return [self.MANUFACTURER, self.MODEL, f"Revision: {self.REVISION}"]

    def boot_urcs(self) -> list[str]:
        urcs = ["RDY", "+CFUN: 1"]
        if self.sim == "absent":
            return urcs + ["+CPIN: NOT INSERTED"]
        urcs.append("+CPIN: READY" if self.sim == "ready" else "+CPIN: SIM PIN")
        return urcs + ["+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"]

    def _at_qpcmv(self, mode: str, args: list[str]) -> Info:
        if mode == "read":
            return [f"+QPCMV: {self.qpcmv}"]
        if mode == "test":
            return ["+QPCMV: (0,1),(0-2)"]
        if mode == "set" and args and ",".join(args) in ("0", "1,0", "1,1", "1,2"):
            self.qpcmv = ",".join(args)
            self.loop.call_soon(self._update_audio)
            return []
        raise self.cme(3)

    def _at_qindcfg(self, mode: str, args: list[str]) -> Info:
        if mode != "set" or not args:
            raise self.cme(3)
        name = args[0].lower()
        if len(args) == 1:
            return [f'+QINDCFG: "{name}",{int(name in self.indications)}']
        if args[1] == "1":
            self.indications.add(name)
        else:
            self.indications.discard(name)
        return []

    def _at_qhup(self, mode: str, args: list[str]) -> Info:
        if mode == "set" and args and args[0].isdigit():
            self._hang_up(int(args[0]))
            return []
        raise self.cme(3)

    def _audio_switched_on(self) -> bool:
        return self.qpcmv == "1,0"

    def _announce(self, call: Call, state: int) -> None:
        direction = 0 if call.outgoing else 1
        if "ccinfo" in self.indications:
            self._urc(f'+QIND: "ccinfo",{call.index},{direction},{state},0,0,'
                      f'"{call.number}",{call.toa}')
        if self.dsci:
            self._urc(f"^DSCI: {call.index},{direction},{6 if state < 0 else state},0,"
                      f"{call.number},{call.toa}")

    def _call_state_changed(self, call: Call) -> None:
        self._announce(call, call.state)

    def _call_ended(self, call: Call, cause: int, by_remote: bool, duration_s: int) -> None:
        self._announce(call, -1)  # ccinfo state -1: released
        super()._call_ended(call, cause, by_remote, duration_s)

    def _set_signal(self, rssi: int) -> None:
        super()._set_signal(rssi)
        if "csq" in self.indications:
            self._urc(f'+QIND: "csq",{rssi},99')

    def _remote_dtmf(self, digit: str) -> None:
        if self.tone_detection:
            self._urc(f"+QTONEDET: {ord(digit)}")


class FakeSimcom(FakeAtModem):
    """SIMCom SIM7600: `VOICE CALL: BEGIN/END: <duration>`, `MISSED_CALL:`, +CLCC lines as URCs
    after AT+CLCC=1; voice on the audio port only after AT+CPCMREG=1 in an active call
    (bg111#276), which falls back to 0 when the call ends."""

    name = "simcom"
    MANUFACTURER = "SIMCOM INCORPORATED"
    MODEL = "SIMCOM_SIM7600E-H"
    REVISION = "LE20B04SIM7600M22"
    LTE = True
    ACCESS_TECHNOLOGY = 7

    def _defaults(self) -> None:
        super()._defaults()
        self.cpcmreg = False
        self.clcc_reports = False
        self.auto_csq = False
        self.dtmf_detection = False

    def handlers(self) -> dict[str, Handler]:
        table = super().handlers()
        table.update({"+CEREG": self._at_cereg, "+CPCMREG": self._at_cpcmreg,
                      "+CLCC": self._at_clcc_simcom, "+CICCID": self._iccid("+ICCID"),
                      "+AUTOCSQ": self._switch("+AUTOCSQ", "auto_csq"),
                      "+DDET": self._switch("+DDET", "dtmf_detection"),
                      "+CNSMOD": self._at_cnsmod,
                      "+CGMR": self._prefixed("+CGMR", self.REVISION)})
        for name in ("+EXUNSOL", "+CLTS", "+CPCMFRM", "+CSDVC"):
            table[name] = self._accepted
        return table

    def _prefixed(self, name: str, value: str) -> Handler:
        def answer(mode: str, args: list[str]) -> Info:
            return [f"{name}: {value}"] if mode == "exec" else []
        return answer

    def boot_urcs(self) -> list[str]:
        if self.sim == "absent":
            return ["RDY", "+CPIN: NOT INSERTED"]
        pin = "+CPIN: READY" if self.sim == "ready" else "+CPIN: SIM PIN"
        return ["RDY", pin, "SMS DONE", "PB DONE"]

    def _at_cpcmreg(self, mode: str, args: list[str]) -> Info:
        if mode == "read":
            return [f"+CPCMREG: {int(self.cpcmreg)}"]
        if mode == "set" and args and args[0] in ("0", "1"):
            self.cpcmreg = args[0] == "1"
            self.loop.call_soon(self._update_audio)
            return []
        raise self.cme(3)

    def _at_clcc_simcom(self, mode: str, args: list[str]) -> Info:
        if mode == "set" and args and args[0] in ("0", "1"):
            self.clcc_reports = args[0] == "1"
            return []
        if mode == "read":
            return [f"+CLCC: {int(self.clcc_reports)}"]
        return self._at_clcc(mode, args)

    def _at_cnsmod(self, mode: str, args: list[str]) -> Info:
        return ["+CNSMOD: 1,8"] if mode == "read" else []

    def _audio_switched_on(self) -> bool:
        return self.cpcmreg

    def _call_audio_reset(self) -> None:
        self.cpcmreg = False

    def _call_state_changed(self, call: Call) -> None:
        if self.clcc_reports:
            self._urc(call.clcc())
        if call.state == CALL_ACTIVE:
            self._urc("VOICE CALL: BEGIN")

    def _call_ended(self, call: Call, cause: int, by_remote: bool, duration_s: int) -> None:
        if self.clcc_reports:
            self._urc(call.clcc().replace(f",{call.state},", ",6,", 1))  # 6: disconnected
        if call.began_at is not None:
            self._urc(f"VOICE CALL: END: {duration_s:06d}")
        elif call.state == CALL_INCOMING:
            now = datetime.datetime.now()
            self._urc(f"MISSED_CALL: {now:%I:%M%p} {call.number}")
        super()._call_ended(call, cause, by_remote, duration_s)

    def _set_signal(self, rssi: int) -> None:
        super()._set_signal(rssi)
        if self.auto_csq:
            self._urc(f"+CSQ: {rssi},99")

    def _remote_dtmf(self, digit: str) -> None:
        if self.dtmf_detection:
            self._urc(f"+RXDTMF: {digit}")

