"""A caller whose INVITE carries no SDP (a late offer, RFC 3261 §13.2.1): the answering phone's
2xx makes the offer, it goes to the caller in our 200, and the caller's ACK brings the answer,
which the phone then gets in the box's ACK (RFC 3264 §5) — the phone's 2xx is acknowledged, so
it does not hang up after 64·T1 (§13.3.1.4)."""

from __future__ import annotations

from tests.core.network import RING_ALL_DID, Office, answer_with_sdp

OFFER = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\nt=0 0\r\n"
         b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
ANSWER = (b"v=0\r\no=- 2 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
          b"m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def test_the_callers_answer_reaches_the_phone_in_the_boxs_ack(o: Office) -> None:
    o.provider.acks_2xx = False
    o.provider.call(RING_ALL_DID)  # no SDP
    answer_with_sdp(o.phones["101"], OFFER)
    final = o.provider.responses()[-1]
    assert final.status == 200 and final.body == OFFER  # the phone's offer, passed on
    assert not o.phones["101"].requests("ACK")  # the answer is not there yet
    [outgoing] = o.provider.outgoing
    ack = o.provider._ack_for_2xx(outgoing, final)
    ack.body = ANSWER
    ack.headers.set("Content-Type", "application/sdp")
    o.provider.send(ack)
    [phone_ack] = o.phones["101"].requests("ACK")
    assert phone_ack.body == ANSWER


def test_an_ack_without_an_answer_still_acknowledges_the_phone(o: Office) -> None:
    o.provider.call(RING_ALL_DID)  # the provider ACKs the 200 at once, with no body
    answer_with_sdp(o.phones["101"], OFFER)
    assert len(o.phones["101"].requests("ACK")) == 1
