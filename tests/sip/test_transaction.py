"""Transactions (RFC 3261 §17, RFC 6026), driven by stepping `now` like aioquic's tests."""

from __future__ import annotations

import pytest

from firmware.sip.errors import LocalProtocolError
from firmware.sip.message import Request, Response, make_response, parse_message
from firmware.sip.transaction import (
    T1_S,
    T2_S,
    T4_S,
    AckTimedOut,
    Address,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    make_cancel,
    new_branch,
    new_tag,
)

TRUNK = Address("udp", "198.51.100.1", 5060)
TRUNK_TCP = Address("tcp", "198.51.100.1", 5060)
# The phone's packets arrive from its NAT's public address; its Via says 10.0.0.5:5060.
PHONE = Address("udp", "203.0.113.7", 40123)
PHONE_TCP = Address("tcp", "203.0.113.7", 40124)
TIMEOUT_S = 64 * T1_S


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKinv1",
    cseq: int = 1,
    call_id: str = "call-1",
    from_tag: str = "ft1",
    to_tag: str | None = None,
    uri: str = "sip:200@gw.example",
    transport: str = "UDP",
    route: str | None = None,
) -> Request:
    via = f"SIP/2.0/{transport} 10.0.0.5:5060" + (f";branch={branch}" if branch else "")
    to = "<sip:200@gw.example>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        *([f"Route: {route}"] if route else []),
        f"From: <sip:101@gw.example>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:101@10.0.0.5:5060>",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def ack_for_2xx(invite: Request, to_tag: str, *, branch: str = "z9hG4bKack2xx") -> Request:
    """The ACK a UAC sends for a 2xx: a transaction of its own (new branch), §13.2.2.4."""
    return request(
        "ACK", branch=branch, cseq=invite.cseq.seq, call_id=invite.call_id,
        from_tag=invite.from_.tag or "", to_tag=to_tag,
    )


def reply(req: Request, status: int, *, to_tag: str | None = "rt1") -> Response:
    """A response as it arrives from the wire."""
    message = parse_message(make_response(req, status, to_tag=to_tag).to_bytes())
    assert isinstance(message, Response)
    return message


def events(layer: TransactionLayer) -> list[Event]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, bytes, Address]]:
    """Fire timers one deadline at a time up to `until`; what was sent, and when."""
    sent: list[tuple[float, bytes, Address]] = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        sent += [(deadline, data, address) for data, address in layer.datagrams_to_send()]
    return sent


def intervals(times: list[float], start: float = 0.0) -> list[float]:
    return [b - a for a, b in zip([start, *times], times, strict=False)]


def parsed(data: bytes) -> Request | Response:
    return parse_message(data)


def start_client(
    method: str = "INVITE", destination: Address = TRUNK, **kwargs: object
) -> tuple[TransactionLayer, Request, str]:
    layer = TransactionLayer()
    req = request(method, **kwargs)  # type: ignore[arg-type]
    tx_id = layer.send_request(req, destination, 0.0)
    assert len(layer.datagrams_to_send()) == 1
    return layer, req, tx_id


def start_server(
    method: str = "INVITE", source: Address = PHONE, **kwargs: object
) -> tuple[TransactionLayer, Request, str]:
    layer = TransactionLayer()
    req = request(method, **kwargs)  # type: ignore[arg-type]
    layer.receive(req, source, 0.0)
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.transaction_id is not None
    layer.datagrams_to_send()
    return layer, req, event.transaction_id


# --- client INVITE (§17.1.1) ------------------------------------------------------------------


def test_timer_a_retransmits_the_invite_at_doubling_intervals_until_timer_b() -> None:
    layer, req, _ = start_client()
    sent = run_timers(layer, 100.0)
    times = [t for t, _, _ in sent]
    assert intervals(times) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert all(data == req.to_bytes() and address == TRUNK for _, data, address in sent)
    assert layer.stats["retransmissions_sent"] == 6


def test_timer_b_times_the_invite_out_at_64_t1() -> None:
    layer, _, tx_id = start_client()
    run_timers(layer, TIMEOUT_S - 0.01)
    assert events(layer) == []
    run_timers(layer, TIMEOUT_S)
    assert events(layer) == [
        TransactionTimedOut(transaction_id=tx_id), TransactionTerminated(transaction_id=tx_id)
    ]
    assert layer.transaction_count == 0


def test_invite_over_tcp_is_never_retransmitted_but_timer_b_still_fires() -> None:
    layer, _, tx_id = start_client(destination=TRUNK_TCP, transport="TCP")
    assert run_timers(layer, 100.0) == []
    assert TransactionTimedOut(transaction_id=tx_id) in events(layer)


def test_provisional_response_stops_retransmissions_and_timer_b() -> None:
    layer, req, tx_id = start_client()
    layer.receive(reply(req, 180), TRUNK, 0.1)
    assert [type(e) for e in events(layer)] == [ResponseReceived]
    assert run_timers(layer, 100.0) == []
    assert events(layer) == [] and layer.transaction_count == 1


def test_non_2xx_final_is_acknowledged_by_the_transaction_itself() -> None:
    layer, req, _ = start_client(route="<sip:proxy.example;lr>")
    layer.receive(reply(req, 486, to_tag="busy1"), TRUNK, 0.2)
    ((data, address),) = layer.datagrams_to_send()
    ack = parsed(data)
    assert isinstance(ack, Request) and ack.method == "ACK" and address == TRUNK
    assert ack.uri == req.uri and ack.call_id == req.call_id
    assert str(ack.cseq) == "1 ACK"
    assert ack.to.tag == "busy1" and ack.from_.tag == "ft1"
    assert ack.top_via.branch == req.top_via.branch and len(ack.vias) == 1
    assert ack.headers.get("Route") == "<sip:proxy.example;lr>"
    (event,) = events(layer)
    assert isinstance(event, ResponseReceived) and event.response.status == 486


def test_retransmitted_non_2xx_final_resends_the_ack_without_a_second_event() -> None:
    layer, req, _ = start_client()
    final = reply(req, 486)
    layer.receive(final, TRUNK, 0.2)
    ((first_ack, _),) = layer.datagrams_to_send()
    events(layer)
    layer.receive(final, TRUNK, 0.7)
    assert layer.datagrams_to_send() == [(first_ack, TRUNK)]
    assert events(layer) == []


def test_timer_d_ends_the_completed_invite_after_32_seconds() -> None:
    layer, req, tx_id = start_client()
    layer.receive(reply(req, 404), TRUNK, 1.0)
    events(layer)
    run_timers(layer, 1.0 + 31.9)
    assert layer.transaction_count == 1
    run_timers(layer, 1.0 + 32.0)
    assert events(layer) == [TransactionTerminated(transaction_id=tx_id)]


def test_non_2xx_final_over_tcp_ends_the_invite_at_once() -> None:
    layer, req, tx_id = start_client(destination=TRUNK_TCP, transport="TCP")
    layer.receive(reply(req, 404), TRUNK_TCP, 1.0)
    assert TransactionTerminated(transaction_id=tx_id) in events(layer)
    assert layer.transaction_count == 0


def test_2xx_moves_the_invite_to_accepted_and_every_retransmitted_2xx_is_reported() -> None:
    layer, req, tx_id = start_client()
    ok = reply(req, 200)
    layer.receive(ok, TRUNK, 0.2)
    layer.receive(ok, TRUNK, 0.7)
    layer.receive(reply(req, 200, to_tag="forked"), TRUNK, 0.8)
    received = events(layer)
    assert [e.response.to.tag for e in received if isinstance(e, ResponseReceived)] == [
        "rt1", "rt1", "forked"
    ]
    assert layer.datagrams_to_send() == []  # the TU, not the transaction, ACKs a 2xx
    assert layer.transaction_count == 1


def test_accepted_invite_is_removed_after_timer_m_and_later_2xx_are_dropped() -> None:
    layer, req, tx_id = start_client()
    layer.receive(reply(req, 200), TRUNK, 0.2)
    events(layer)
    assert run_timers(layer, 0.2 + TIMEOUT_S) == []
    assert events(layer) == [TransactionTerminated(transaction_id=tx_id)]
    layer.receive(reply(req, 200), TRUNK, 40.0)
    assert events(layer) == [] and layer.stats["responses_dropped"] == 1


def test_responses_matching_no_transaction_are_dropped() -> None:
    layer, req, _ = start_client()
    layer.receive(reply(request(branch="z9hG4bKother"), 200), TRUNK, 0.1)
    layer.receive(reply(request("BYE"), 200), TRUNK, 0.1)  # same branch, other method
    assert events(layer) == []
    assert layer.stats["responses_dropped"] == 2


def test_ack_cannot_start_a_client_transaction() -> None:
    with pytest.raises(LocalProtocolError):
        TransactionLayer().send_request(request("ACK"), TRUNK, 0.0)


def test_a_request_we_send_needs_an_rfc3261_branch() -> None:
    layer = TransactionLayer()
    for branch in (None, "z9hG4bK", "1234"):
        with pytest.raises(LocalProtocolError):
            layer.send_request(request(branch=branch), TRUNK, 0.0)


def test_ack_for_a_2xx_is_sent_statelessly() -> None:
    layer = TransactionLayer()
    ack = ack_for_2xx(request(), "rt1")
    layer.send_stateless(ack, TRUNK)
    assert layer.datagrams_to_send() == [(ack.to_bytes(), TRUNK)]
    assert layer.transaction_count == 0 and layer.get_timer() is None


# --- client non-INVITE (§17.1.2) ------------------------------------------------------------


def test_timer_e_doubles_up_to_t2_until_timer_f() -> None:
    layer, _, _ = start_client("OPTIONS")
    times = [t for t, _, _ in run_timers(layer, 100.0)]
    assert intervals(times) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert max(intervals(times)) == T2_S


def test_timer_f_times_the_non_invite_out_at_64_t1() -> None:
    layer, _, tx_id = start_client("OPTIONS")
    run_timers(layer, TIMEOUT_S - 0.01)
    assert events(layer) == []
    run_timers(layer, TIMEOUT_S)
    assert events(layer) == [
        TransactionTimedOut(transaction_id=tx_id), TransactionTerminated(transaction_id=tx_id)
    ]


def test_timer_e_is_t2_once_a_provisional_response_arrived() -> None:
    layer, req, _ = start_client("REGISTER")
    layer.receive(reply(req, 100), TRUNK, 0.1)
    times = [t for t, _, _ in run_timers(layer, 10.0)]
    assert intervals(times) == [0.5, 4.0, 4.0]


def test_non_invite_final_is_reported_once_and_timer_k_ends_the_transaction() -> None:
    layer, req, tx_id = start_client("OPTIONS")
    ok = reply(req, 200)
    layer.receive(ok, TRUNK, 0.1)
    layer.receive(ok, TRUNK, 0.6)
    assert [type(e) for e in events(layer)] == [ResponseReceived]
    assert run_timers(layer, 0.1 + T4_S) == []  # no retransmission after the final
    assert events(layer) == [TransactionTerminated(transaction_id=tx_id)]


# --- server INVITE (§17.2.1, RFC 6026) -------------------------------------------------------


def test_new_invite_is_answered_100_trying_at_once_and_reported() -> None:
    layer = TransactionLayer()
    req = request()
    layer.receive(req, PHONE, 0.0)
    ((data, address),) = layer.datagrams_to_send()
    trying = parsed(data)
    assert isinstance(trying, Response) and trying.status == 100 and address == PHONE
    (event,) = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.request is req and event.source == PHONE and event.transaction_id


def test_auto_trying_can_be_turned_off() -> None:
    layer = TransactionLayer(auto_trying=False)
    layer.receive(request(), PHONE, 0.0)
    assert layer.datagrams_to_send() == []


def test_retransmitted_invite_resends_the_last_response_and_is_absorbed() -> None:
    layer, req, tx_id = start_server()
    ringing = make_response(req, 180, to_tag="lt1")
    assert layer.send_response(tx_id, ringing, 0.1)
    layer.datagrams_to_send()
    layer.receive(request(), PHONE, 0.5)
    assert layer.datagrams_to_send() == [(ringing.to_bytes(), PHONE)]
    assert events(layer) == []
    assert layer.stats["requests_absorbed"] == 1


def test_responses_go_to_the_source_address_not_the_via_sent_by() -> None:
    layer, req, tx_id = start_server()
    layer.send_response(tx_id, make_response(req, 486, to_tag="lt1"), 0.1)
    ((_, address),) = layer.datagrams_to_send()
    assert address == PHONE
    assert (req.top_via.host, req.top_via.port) == ("10.0.0.5", 5060)


def test_2xx_is_retransmitted_from_t1_doubling_to_t2_until_the_ack() -> None:
    layer, req, tx_id = start_server()
    ok = make_response(req, 200, to_tag="lt1")
    layer.send_response(tx_id, ok, 0.0)
    assert layer.datagrams_to_send() == [(ok.to_bytes(), PHONE)]
    sent = run_timers(layer, 12.0)
    assert intervals([t for t, _, _ in sent]) == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert all(data == ok.to_bytes() and address == PHONE for _, data, address in sent)
    layer.receive(ack_for_2xx(req, "lt1"), PHONE, 12.0)
    assert run_timers(layer, 100.0) == []


def test_ack_for_a_2xx_reaches_the_tu_without_a_transaction() -> None:
    layer, req, tx_id = start_server()
    layer.send_response(tx_id, make_response(req, 200, to_tag="lt1"), 0.0)
    ack = ack_for_2xx(req, "lt1")
    layer.receive(ack, PHONE, 0.1)
    assert events(layer) == [RequestReceived(transaction_id=None, request=ack, source=PHONE)]


def test_ack_matching_no_transaction_still_reaches_the_tu() -> None:
    layer = TransactionLayer()
    ack = ack_for_2xx(request(), "lt1")
    layer.receive(ack, PHONE, 0.0)
    assert events(layer) == [RequestReceived(transaction_id=None, request=ack, source=PHONE)]
    assert layer.transaction_count == 0


def test_missing_ack_for_2xx_raises_ack_timed_out_at_64_t1() -> None:
    layer, req, tx_id = start_server()
    layer.send_response(tx_id, make_response(req, 200, to_tag="lt1"), 0.0)
    run_timers(layer, TIMEOUT_S - 0.01)
    assert events(layer) == []
    run_timers(layer, TIMEOUT_S)
    assert events(layer) == [
        AckTimedOut(transaction_id=tx_id), TransactionTerminated(transaction_id=tx_id)
    ]
    assert layer.transaction_count == 0


def test_acknowledged_2xx_ends_quietly_after_timer_l() -> None:
    layer, req, tx_id = start_server()
    layer.send_response(tx_id, make_response(req, 200, to_tag="lt1"), 0.0)
    layer.receive(ack_for_2xx(req, "lt1"), PHONE, 0.1)
    events(layer)
    run_timers(layer, TIMEOUT_S)
    assert events(layer) == [TransactionTerminated(transaction_id=tx_id)]


def test_retransmitted_invite_in_accepted_resends_the_2xx_and_is_absorbed() -> None:
    layer, req, tx_id = start_server()
    ok = make_response(req, 200, to_tag="lt1")
    layer.send_response(tx_id, ok, 0.0)
    layer.datagrams_to_send()
    layer.receive(request(), PHONE, 0.2)
    assert layer.datagrams_to_send() == [(ok.to_bytes(), PHONE)]
    assert events(layer) == []


def test_non_2xx_final_is_retransmitted_by_timer_g_up_to_t2() -> None:
    layer, req, tx_id = start_server()
    busy = make_response(req, 486, to_tag="lt1")
    layer.send_response(tx_id, busy, 0.0)
    layer.datagrams_to_send()
    sent = run_timers(layer, 20.0)
    assert intervals([t for t, _, _ in sent]) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert {data for _, data, _ in sent} == {busy.to_bytes()}


def test_ack_for_non_2xx_is_absorbed_and_timer_i_ends_the_transaction() -> None:
    layer, req, tx_id = start_server()
    layer.send_response(tx_id, make_response(req, 486, to_tag="lt1"), 0.0)
    ack = request("ACK", branch=req.top_via.branch, to_tag="lt1")  # §17.1.1.3: same branch
    layer.receive(ack, PHONE, 0.2)
    layer.receive(ack, PHONE, 0.3)  # a retransmitted ACK is soaked up by Confirmed
    assert events(layer) == []
    assert run_timers(layer, 0.2 + T4_S - 0.01) == []  # no more Timer G
    assert layer.transaction_count == 1
    run_timers(layer, 0.2 + T4_S)
    assert events(layer) == [TransactionTerminated(transaction_id=tx_id)]


def test_timer_h_times_out_a_non_2xx_final_never_acknowledged() -> None:
    layer, req, tx_id = start_server()
    layer.send_response(tx_id, make_response(req, 486, to_tag="lt1"), 0.0)
    run_timers(layer, TIMEOUT_S)
    assert events(layer) == [
        TransactionTimedOut(transaction_id=tx_id), TransactionTerminated(transaction_id=tx_id)
    ]


def test_non_2xx_final_over_tcp_is_not_retransmitted() -> None:
    layer, req, tx_id = start_server(source=PHONE_TCP, transport="TCP")
    layer.send_response(tx_id, make_response(req, 486, to_tag="lt1"), 0.0)
    layer.datagrams_to_send()
    assert run_timers(layer, TIMEOUT_S) == []
    assert TransactionTimedOut(transaction_id=tx_id) in events(layer)


def test_second_final_response_is_our_own_bug() -> None:
    layer, req, tx_id = start_server()
    layer.send_response(tx_id, make_response(req, 486, to_tag="lt1"), 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_response(tx_id, make_response(req, 200, to_tag="lt1"), 0.1)


def test_response_on_an_ended_transaction_is_a_no_op() -> None:
    layer, req, tx_id = start_server("OPTIONS", source=PHONE_TCP, transport="TCP")
    assert layer.send_response(tx_id, make_response(req, 200, to_tag="lt1"), 0.0)
    layer.datagrams_to_send()
    assert not layer.send_response(tx_id, make_response(req, 200, to_tag="lt1"), 0.1)
    assert layer.datagrams_to_send() == []


# --- server non-INVITE (§17.2.2) ------------------------------------------------------------


def test_retransmitted_non_invite_request_resends_the_final_response() -> None:
    layer, req, tx_id = start_server("OPTIONS")
    ok = make_response(req, 200, to_tag="lt1")
    layer.send_response(tx_id, ok, 0.0)
    layer.datagrams_to_send()
    layer.receive(request("OPTIONS"), PHONE, 1.0)
    assert layer.datagrams_to_send() == [(ok.to_bytes(), PHONE)]
    assert events(layer) == []


def test_retransmitted_non_invite_request_before_any_response_is_discarded() -> None:
    layer, _, _ = start_server("OPTIONS")
    layer.receive(request("OPTIONS"), PHONE, 0.5)
    assert layer.datagrams_to_send() == [] and events(layer) == []


def test_timer_j_ends_the_non_invite_server_transaction_after_64_t1() -> None:
    layer, req, tx_id = start_server("BYE")
    layer.send_response(tx_id, make_response(req, 200, to_tag="lt1"), 0.0)
    run_timers(layer, TIMEOUT_S - 0.01)
    assert layer.transaction_count == 1
    run_timers(layer, TIMEOUT_S)
    assert events(layer) == [TransactionTerminated(transaction_id=tx_id)]


def test_non_invite_final_over_tcp_ends_the_server_transaction_at_once() -> None:
    layer, req, tx_id = start_server("BYE", source=PHONE_TCP, transport="TCP")
    layer.send_response(tx_id, make_response(req, 200, to_tag="lt1"), 0.0)
    assert events(layer) == [TransactionTerminated(transaction_id=tx_id)]


# --- CANCEL (§9) ------------------------------------------------------------------------------


def test_cancel_is_a_transaction_of_its_own_that_finds_its_invite() -> None:
    layer, _, invite_tx = start_server()
    cancel = request("CANCEL")  # same branch and sent-by as the INVITE (§9.1)
    layer.receive(cancel, PHONE, 1.0)
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.request is cancel
    assert event.transaction_id not in (None, invite_tx)
    assert layer.find_invite_server_transaction(cancel) == invite_tx
    assert layer.transaction_count == 2


def test_cancel_for_an_unknown_invite_finds_nothing() -> None:
    layer, _, _ = start_server()
    assert layer.find_invite_server_transaction(request("CANCEL", branch="z9hG4bKx")) is None


def test_make_cancel_copies_the_invite_branch_and_cseq_number() -> None:
    invite = request(cseq=7, route="<sip:proxy.example;lr>")
    cancel = make_cancel(invite)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert str(cancel.cseq) == "7 CANCEL" and cancel.top_via == invite.top_via
    assert cancel.headers.get("Route") == "<sip:proxy.example;lr>"
    layer, _, _ = start_client()
    layer.send_request(cancel, TRUNK, 0.1)  # a distinct client transaction, same branch


# --- RFC 2543 matching (§17.2.3) --------------------------------------------------------------


def test_request_without_magic_cookie_is_matched_rfc2543_style() -> None:
    layer, _, _ = start_server(branch=None)
    layer.receive(request(branch=None), PHONE, 0.5)  # retransmission
    assert events(layer) == []
    layer.receive(request(branch=None, cseq=2), PHONE, 0.6)  # a new request
    assert [type(e) for e in events(layer)] == [RequestReceived]
    assert layer.transaction_count == 2


def test_bare_magic_cookie_branch_falls_back_to_rfc2543_matching() -> None:
    # RFC 4475 §3.3.11 badbranch: "z9hG4bK" alone is not a unique branch.
    layer, _, _ = start_server(branch="z9hG4bK")
    layer.receive(request(branch="z9hG4bK", call_id="call-2"), PHONE, 0.1)
    layer.receive(request(branch="z9hG4bK"), PHONE, 0.2)  # retransmission of the first
    assert [type(e) for e in events(layer)] == [RequestReceived]
    assert layer.transaction_count == 2


def test_rfc2543_ack_for_non_2xx_is_matched_by_the_response_to_tag() -> None:
    layer, req, tx_id = start_server(branch=None)
    layer.send_response(tx_id, make_response(req, 486, to_tag="lt1"), 0.0)
    layer.datagrams_to_send()
    layer.receive(request("ACK", branch=None, to_tag="lt1"), PHONE, 0.1)
    assert events(layer) == []
    assert run_timers(layer, 0.1 + T4_S) == []  # Confirmed: Timer G stopped
    assert events(layer) == [TransactionTerminated(transaction_id=tx_id)]


def test_rfc2543_cancel_finds_its_invite() -> None:
    layer, _, invite_tx = start_server(branch=None)
    assert layer.find_invite_server_transaction(request("CANCEL", branch=None)) == invite_tx


# --- the layer as a whole ---------------------------------------------------------------------


def test_everything_is_cleaned_up_after_the_timers_run_out() -> None:
    layer = TransactionLayer()
    out_invite = request(branch=new_branch())
    layer.send_request(out_invite, TRUNK, 0.0)
    layer.receive(reply(out_invite, 200), TRUNK, 0.1)
    layer.send_request(request("OPTIONS", branch=new_branch()), TRUNK, 0.0)
    failed = request(branch=new_branch(), call_id="c3")
    layer.send_request(failed, TRUNK, 0.0)
    layer.receive(reply(failed, 503), TRUNK, 0.2)
    for i, method in enumerate(("INVITE", "INVITE", "BYE")):
        incoming = request(method, branch=f"z9hG4bKin{i}", call_id=f"in{i}")
        layer.receive(incoming, PHONE, 0.0)
    tx_ids = [
        e.transaction_id for e in events(layer)
        if isinstance(e, RequestReceived) and e.transaction_id is not None
    ]
    layer.send_response(tx_ids[0], make_response(request(call_id="in0"), 200, to_tag="a"), 0.1)
    layer.send_response(tx_ids[1], make_response(request(call_id="in1"), 480, to_tag="b"), 0.1)
    layer.send_response(tx_ids[2], make_response(request("BYE", call_id="in2"), 200), 0.1)
    assert layer.transaction_count == 6
    run_timers(layer, 1000.0)
    assert layer.transaction_count == 0
    assert layer.get_timer() is None
    assert layer.stats["transactions_created"] == layer.stats["transactions_terminated"] == 6


def test_many_answered_transactions_do_not_pile_up_cancelled_timers() -> None:
    layer = TransactionLayer()
    for i in range(2000):
        req = request("OPTIONS", branch=f"z9hG4bKmany{i}", call_id=f"m{i}")
        layer.send_request(req, TRUNK_TCP, i * 0.001)
        layer.receive(reply(req, 200), TRUNK_TCP, i * 0.001)  # Timer F cancelled, tx gone
    assert layer.transaction_count == 0
    assert len(layer._heap) <= 64
    assert layer.get_timer() is None


def test_stats_count_what_was_sent() -> None:
    layer, _, _ = start_client("OPTIONS")
    run_timers(layer, 1.0)
    assert layer.stats["datagrams_sent"] == 2
    assert layer.stats["retransmissions_sent"] == 1
    assert layer.stats["transactions_created"] == 1


def test_branches_carry_the_magic_cookie_and_are_unique() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(b.startswith("z9hG4bK") and len(b) >= 7 + 16 for b in branches)
    assert new_tag() != new_tag()


def test_address_over_tcp_is_reliable() -> None:
    assert TRUNK_TCP.reliable and not TRUNK.reliable
