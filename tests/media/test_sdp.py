"""SDP offer/answer for the box's own media (RFC 3264, RFC 4566)."""

from __future__ import annotations

import pytest

from firmware.media import sdp

OFFER = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 18 8 0 96\r\na=rtpmap:18 G729/8000\r\n"
         b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=sendrecv\r\n"
         b"m=video 4002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n")


def test_the_first_offered_g711_format_is_chosen_with_the_offers_event_type() -> None:
    body, choice = sdp.answer(OFFER, host="192.0.2.1", port=10000)
    assert (choice.codec, choice.payload_type, choice.telephone_event_pt) == ("PCMA", 8, 96)
    assert (choice.remote_host, choice.remote_port) == ("10.0.0.5", 4000)
    text = body.decode()
    assert "m=audio 10000 RTP/AVP 8 96\r\n" in text
    assert "c=IN IP4 192.0.2.1\r\n" in text


def test_streams_we_do_not_take_are_declined_with_port_zero_in_order() -> None:
    body, _ = sdp.answer(OFFER, host="192.0.2.1", port=10000)
    lines = [line for line in body.decode().splitlines() if line.startswith("m=")]
    assert lines == ["m=audio 10000 RTP/AVP 8 96", "m=video 0 RTP/AVP 97"]


def test_a_media_level_connection_wins_and_ipv6_is_answered_in_kind() -> None:
    offer = (b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"
             b"m=audio 4000 RTP/AVP 0\r\nc=IN IP6 ::2\r\n")
    body, choice = sdp.answer(offer, host="::1", port=10002)
    assert choice.remote_host == "::2"
    assert b"c=IN IP6 ::1\r\n" in body


def test_a_hold_offer_is_answered_recvonly() -> None:
    body, choice = sdp.answer(OFFER.replace(b"a=sendrecv", b"a=sendonly"), host="h", port=1024)
    assert choice.on_hold and b"a=recvonly" in body


@pytest.mark.parametrize("offer", [
    b"", b"garbage", b"v=0\r\nc=IN IP4 1.2.3.4\r\n",
    b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
    b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n",  # no address anywhere
    b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
    "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\ns=\xff\r\n".encode("latin-1"),
])
def test_unusable_offers_raise_sdp_error(offer: bytes) -> None:
    with pytest.raises(sdp.SdpError):
        sdp.answer(offer, host="h", port=1024)


def test_our_offer_lists_pcmu_pcma_and_telephone_event() -> None:
    offer = sdp.SessionDescription.parse(sdp.offer(host="192.0.2.1", port=10004))
    [audio] = offer.media
    assert audio.formats == ("0", "8", "101") and audio.port == 10004
    assert audio.rtpmap[101] == "telephone-event/8000"
