"""The TCP framer's bounds (RFC 3261 §18.3): heads and bodies of bounded size, work linear in
the bytes fed whatever the segmenting, keep-alives (RFC 5626 §3.5.1) split anywhere."""

from __future__ import annotations

import pytest

from firmware.sip.message import (
    STREAM_MAX_BODY_BYTES,
    STREAM_MAX_HEAD_BYTES,
    StreamFramer,
    error_response_bytes,
    parse_message,
)

OPTIONS_HEAD = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKframer\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=f1\r\n"
    b"To: <sip:127.0.0.1>\r\n"
    b"Call-ID: framer@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
)


def message(body: bytes = b"", *, padding: int = 0) -> bytes:
    """An OPTIONS with `body`, its head grown by `padding` bytes of a Subject header."""
    subject = b"Subject: " + b"x" * padding + b"\r\n" if padding else b""
    return OPTIONS_HEAD + subject + b"Content-Length: %d\r\n\r\n" % len(body) + body


def feed_bytewise(framer: StreamFramer, data: bytes) -> list[bytes]:
    messages: list[bytes] = []
    for index in range(len(data)):
        messages += framer.feed(data[index : index + 1])
    return messages


def test_a_60_kb_head_fed_one_byte_at_a_time_is_searched_in_linear_work() -> None:
    # The attack: each byte used to set off a search of the whole head from its start
    # (quadratic: 1.8 billion bytes examined for 60 KB). Resuming where the search stopped
    # examines each byte a bounded number of times.
    framer = StreamFramer(max_head_bytes=128 * 1024)
    data = message(b"v=0\r\n", padding=60 * 1024)
    assert feed_bytewise(framer, data) == [data]
    assert framer.error is None
    assert framer.bytes_scanned <= 4 * len(data)


def test_a_head_fed_in_one_piece_is_searched_once() -> None:
    framer = StreamFramer()
    data = message(padding=8 * 1024)
    assert framer.feed(data) == [data]
    assert framer.bytes_scanned == len(data)


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 1000])
def test_messages_split_at_every_offset_come_out_whole(step: int) -> None:
    data = message(b"v=0\r\n") + b"\r\n\r\n" + message(b"") + message(b"o=- 1 1\r\n")
    framer = StreamFramer()
    out: list[bytes] = []
    for index in range(0, len(data), step):
        out += framer.feed(data[index : index + step])
    assert out == [message(b"v=0\r\n"), message(b""), message(b"o=- 1 1\r\n")]
    assert framer.keepalive_pings == 1
    assert framer.pending_bytes == 0


def test_a_head_ending_in_bare_lfs_is_found_across_segments() -> None:
    data = message(b"ab").replace(b"\r\n", b"\n")
    framer = StreamFramer()
    assert feed_bytewise(framer, data) == [data]


def test_a_head_over_the_limit_without_its_end_gets_513_before_more_is_held() -> None:
    framer = StreamFramer(max_head_bytes=1024)
    assert framer.feed(OPTIONS_HEAD + b"Subject: " + b"x" * 1024) == []
    assert framer.error is not None and framer.error.status_hint == 513
    assert framer.pending_bytes == 0  # the partial head is let go at once
    # Enough of the head is kept to answer it (RFC 3261 §8.2: Via, From, To, Call-ID, CSeq).
    reply = error_response_bytes(framer.error.partial, framer.error.status_hint)
    assert reply is not None
    answer = parse_message(reply)
    assert answer.call_id == "framer@127.0.0.1" and answer.headers.get("CSeq") == "1 OPTIONS"


def test_a_complete_head_over_the_limit_gets_513() -> None:
    framer = StreamFramer(max_head_bytes=1024)
    assert framer.feed(message(padding=2048)) == []
    assert framer.error is not None and framer.error.status_hint == 513


def test_the_default_head_limit_is_16_kib() -> None:
    assert STREAM_MAX_HEAD_BYTES == 16 * 1024
    assert StreamFramer().feed(message(padding=STREAM_MAX_HEAD_BYTES)) == []
    fits = message(padding=STREAM_MAX_HEAD_BYTES - 1024)
    assert StreamFramer().feed(fits) == [fits]


def test_a_content_length_over_the_body_limit_gets_413_before_the_body_is_read() -> None:
    framer = StreamFramer()
    head = message().replace(b"Content-Length: 0", b"Content-Length: %d"
                             % (STREAM_MAX_BODY_BYTES + 1))
    assert framer.feed(head + b"x" * 1000) == []
    assert framer.error is not None and framer.error.status_hint == 413
    assert framer.pending_bytes == 0
    reply = error_response_bytes(framer.error.partial, 413)
    assert reply is not None and parse_message(reply).call_id == "framer@127.0.0.1"


def test_a_body_at_the_limit_is_framed() -> None:
    body = b"x" * STREAM_MAX_BODY_BYTES
    assert StreamFramer().feed(message(body)) == [message(body)]


def test_what_a_framer_holds_never_passes_its_bound() -> None:
    framer = StreamFramer(max_head_bytes=512, max_body_bytes=2048)
    stream = message(b"y" * 2048) * 3 + message(b"z" * 100)[:-50]
    for index in range(0, len(stream), 97):
        framer.feed(stream[index : index + 97])
        assert framer.buffered_bytes <= framer.max_buffered_bytes
    assert framer.error is None and framer.pending_bytes > 0


def test_a_keepalive_ping_split_across_segments_is_counted_once() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [] and framer.keepalive_pings == 0
    assert framer.feed(b"\r") == [] and framer.keepalive_pings == 0
    assert framer.feed(b"\n") == [] and framer.keepalive_pings == 1
    assert framer.pending_bytes == 0


def test_a_lone_crlf_is_no_ping() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n")
    data = message()
    assert framer.feed(data) == [data]
    assert framer.keepalive_pings == 0


def test_a_stream_of_line_feeds_is_not_held() -> None:
    framer = StreamFramer()
    for _ in range(100):
        framer.feed(b"\n" * 1000)
    assert framer.keepalive_pings == 0 and framer.pending_bytes == 0
    assert framer.buffered_bytes <= 3  # at most half a ping


def test_pending_bytes_counts_a_begun_message() -> None:
    framer = StreamFramer()
    data = message(b"v=0\r\n")
    framer.feed(data[:10])
    assert framer.pending_bytes == 10
    framer.feed(data[10:-1])
    assert framer.pending_bytes == len(data) - 1
    assert framer.feed(data[-1:]) == [data]
    assert framer.pending_bytes == 0
