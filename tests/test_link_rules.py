"""The link's rules, frame by frame: a hand-driven raw peer on a real pseudo-terminal.

The raw peer writes and reads frames with the bare encoder/decoder (as a C implementation
of docs/protocol.md would), so each test checks one rule of the spec on the wire.
"""

from __future__ import annotations

import struct
import time

import pytest
from test_link_support import RawPeer, fast_board_config

from firmware_host.protocol.cobs import cobs_encode
from firmware_host.protocol.errors import LinkTimeout, MessageError, PeerRestarted
from firmware_host.protocol.framing import (
    FLAG_MORE,
    FLAG_POLL,
    PROTOCOL_VERSION,
    Frame,
    crc32,
    encode_frame,
    frame_bytes,
)
from firmware_host.protocol.link import Link
from firmware_host.protocol.messages import ROLE_BOARD, Hello, MessageType, Ping, Pong
from hil.emulator import PtyPair


@pytest.fixture
def rig():
    pair = PtyPair()
    links = []
    peer = RawPeer(pair.slave_stream())

    def make(**overrides):
        link = Link(pair.master_stream(), fast_board_config(**overrides), name="board")
        links.append(link)
        return link

    yield make, peer
    for link in links:
        link.close()
    pair.close()


def test_hello_request_gets_a_reply_echoing_the_session(rig):
    make, peer = rig
    link = make(window=5, max_payload=1024)
    reply = peer.handshake(window=3, max_payload=512)
    assert reply.echo_session == peer.session
    assert (reply.role, reply.window, reply.max_payload, reply.protocol_version) == (
        ROLE_BOARD,
        5,
        1024,
        1,
    )
    assert link.connected
    assert (link.peer.session_id, link.peer.window, link.peer.max_payload) == (peer.session, 3, 512)


def test_in_order_frame_is_delivered_once_and_a_duplicate_only_reacknowledged(rig):
    make, peer = rig
    link = make()
    peer.handshake()
    peer.send_message(Ping(1, b"a"), seq=0)
    assert peer.expect(MessageType.ACK).ack == 1
    peer.send_message(Ping(1, b"a"), seq=0)  # as if our ACK had been lost
    assert peer.expect(MessageType.ACK).ack == 1
    peer.send_message(Ping(2, b"b"), seq=1)
    assert link.receive(1.0) == Ping(1, b"a")
    assert link.receive(1.0) == Ping(2, b"b")
    with pytest.raises(LinkTimeout):
        link.receive(0.1)
    assert link.stats.duplicates == 1


def test_gap_is_nakked_with_the_expected_sequence_and_nothing_delivered_out_of_order(rig):
    make, peer = rig
    link = make()
    peer.handshake()
    peer.send_message(Ping(2), seq=1)  # seq 0 was "lost"
    nak = peer.expect(MessageType.NAK)
    assert nak.ack == 0
    with pytest.raises(LinkTimeout):
        link.receive(0.1)
    peer.send_message(Ping(1), seq=0)
    peer.send_message(Ping(2), seq=1)
    assert [link.receive(1.0).nonce for _ in range(2)] == [1, 2]
    assert link.stats.out_of_order == 1


def test_frames_without_a_session_make_the_link_announce_itself(rig):
    make, peer = rig
    link = make()
    peer.send_message(Ping(1), seq=7)
    hello = Hello.decode(peer.expect(MessageType.HELLO).payload)
    assert hello.echo_session == 0 and hello.session_id == link.session_id
    with pytest.raises(LinkTimeout):
        link.receive(0.1)
    assert link.stats.frames_without_session == 1


def test_hello_with_a_new_session_resets_sequence_state_and_reports_a_restart(rig):
    make, peer = rig
    link = make()
    peer.handshake()
    peer.send_message(Ping(1), seq=0)
    peer.send_message(Ping(2), seq=1)
    peer.expect(MessageType.ACK, where=lambda f: f.ack == 2)
    peer.session = 0x600DF00D  # the peer restarts: a new session id, sequence numbers from 0
    peer.handshake()
    peer.send_message(Ping(3), seq=0)
    with pytest.raises(PeerRestarted) as restart:
        link.receive(1.0)
    assert restart.value.lost == 2
    assert link.receive(1.0) == Ping(3)  # seq 0 of the new session is new data, not a duplicate
    assert link.stats.peer_restarts == 1


def test_repeated_hello_with_the_same_session_is_answered_without_reset(rig):
    make, peer = rig
    link = make()
    peer.handshake()
    peer.send_message(Ping(1), seq=0)
    peer.expect(MessageType.ACK, where=lambda f: f.ack == 1)
    peer.handshake()  # our first HELLO reply "was lost": same session id
    peer.send_message(Ping(2), seq=1)
    assert [link.receive(1.0).nonce for _ in range(2)] == [1, 2]
    assert link.stats.peer_restarts == 0


def test_credit_shrinks_as_the_queue_fills_and_a_window_update_follows_consumption(rig):
    make, peer = rig
    link = make(window=2)
    peer.handshake()
    peer.send_message(Ping(1), seq=0)
    assert peer.expect(MessageType.ACK).credit == 1
    peer.send_message(Ping(2), seq=1)
    ack = peer.expect(MessageType.ACK)
    assert (ack.ack, ack.credit) == (2, 0)
    peer.send_message(Ping(3), seq=2)  # beyond the credit granted: dropped, not acknowledged
    assert [f for f in peer.silence(0.15) if f.msg_type == MessageType.ACK and f.ack == 3] == []
    assert link.stats.window_violations >= 1
    assert link.receive(1.0) == Ping(1)
    update = peer.expect(MessageType.ACK)  # sent by the link on its own when the window reopens
    assert (update.ack, update.credit) == (2, 1)
    peer.send_message(Ping(3), seq=2)
    assert [link.receive(1.0).nonce for _ in range(2)] == [2, 3]


def test_poll_is_answered_with_an_ack_at_once(rig):
    make, peer = rig
    make()
    peer.handshake()
    peer.send(MessageType.ACK, flags=FLAG_POLL)
    ack = peer.expect(MessageType.ACK, timeout=0.5)
    assert (ack.ack, ack.credit, ack.flags & FLAG_POLL) == (0, 8, 0)


def test_unacknowledged_frame_is_resent_after_the_timeout_and_at_once_on_nak(rig):
    make, peer = rig
    link = make(ack_timeout=0.2, max_retries=3)
    peer.handshake()
    link.send(Ping(9, b"x"))
    first = peer.expect(MessageType.PING)
    start = time.monotonic()
    again = peer.expect(MessageType.PING, timeout=1.0)
    assert time.monotonic() - start >= 0.18
    assert (again.seq, again.payload) == (first.seq, first.payload)
    start = time.monotonic()
    peer.send(MessageType.NAK, ack=0)
    peer.expect(MessageType.PING, timeout=1.0)
    assert time.monotonic() - start < 0.19 and link.stats.timeouts == 1  # the NAK did it
    peer.send(MessageType.ACK, ack=1)
    link.flush(1.0)
    assert link.stats.resends >= 2 and link.stats.naks_received == 1


def test_a_loss_resends_the_oldest_frame_alone_and_the_frames_after_it_once_it_is_acked(rig):
    make, peer = rig
    link = make(ack_timeout=0.3, max_retries=3)
    peer.handshake()
    for nonce in range(4):
        link.send(Ping(nonce))
    assert [peer.expect(MessageType.PING).seq for _ in range(4)] == [0, 1, 2, 3]
    peer.send(MessageType.NAK, ack=1)  # seq 0 arrived, seq 1 did not (2 and 3 were dropped)
    resent = [f for f in peer.silence(0.15) if f.msg_type == MessageType.PING]
    assert [f.seq for f in resent] == [1]  # the oldest alone, not a burst of 1, 2, 3
    assert resent[0].payload == Ping(1).encode()
    peer.send(MessageType.ACK, ack=2)  # it arrived: now the frames after it, in order
    assert [f.seq for f in peer.silence(0.15) if f.msg_type == MessageType.PING] == [2, 3]
    peer.send(MessageType.ACK, ack=4)
    link.flush(1.0)
    assert link.stats.resends == 3 and link.stats.timeouts == 0


def test_the_retransmission_timeout_doubles_once_while_there_is_no_progress(rig):
    make, peer = rig
    link = make(ack_timeout=0.3, max_retries=3)
    peer.handshake()
    link.send(Ping(5))
    sends = []
    for _ in range(4):  # the first transmission and three resends
        peer.expect(MessageType.PING, timeout=2.0)
        sends.append(time.monotonic())
    gaps = [later - earlier for earlier, later in zip(sends[:-1], sends[1:], strict=True)]
    # arrival times on a busy machine wobble by up to ~0.1 s either way
    assert gaps[0] >= 0.2  # one RTO (0.3 s)
    assert gaps[1] >= 0.45 and gaps[2] >= 0.45  # then 0.6 s: doubled ...
    assert gaps[2] < 1.0  # ... once, not again (that would be 1.2 s)
    with pytest.raises(LinkTimeout, match="ACK of seq 0"):
        link.receive(2.0)
    assert link.config.give_up_time(8192) == pytest.approx(0.3 * (1 + 2 * 3))


def test_retries_are_bounded_and_the_timeout_says_what_was_waited_for(rig):
    make, peer = rig
    link = make(ack_timeout=0.03, max_retries=2)
    peer.handshake()
    link.send(Ping(5))
    time.sleep(0.2)
    with pytest.raises(LinkTimeout) as timeout:
        link.receive(1.0)
    assert "ACK of seq 0 (PING)" in str(timeout.value)
    assert link.stats.resends == 2
    assert not link.connected


def test_fragments_are_reassembled_and_an_oversized_message_is_dropped_with_an_error(rig):
    make, peer = rig
    link = make(max_payload=512, max_message=1000)
    peer.handshake()
    data = bytes(range(256)) * 3
    payload = Ping(7, data).encode()
    for seq, start in enumerate(range(0, len(payload), 300)):
        more = FLAG_MORE if start + 300 < len(payload) else 0
        peer.send(MessageType.PING, seq=seq, flags=more, payload=payload[start : start + 300])
    assert link.receive(1.0) == Ping(7, data)
    big = Ping(8, b"\x01" * 1500).encode()
    for seq, start in enumerate(range(0, len(big), 300), 3):
        more = FLAG_MORE if start + 300 < len(big) else 0
        peer.send(MessageType.PING, seq=seq, flags=more, payload=big[start : start + 300])
    peer.send_message(Pong(9), seq=9)
    with pytest.raises(MessageError, match="max message size 1000"):
        link.receive(1.0)
    assert link.receive(1.0) == Pong(9)


def test_damaged_oversized_and_foreign_version_frames_are_counted_and_skipped(rig):
    make, peer = rig
    link = make(max_payload=256)
    peer.handshake()
    peer.send(MessageType.PING, seq=0, payload=Ping(1, b"\x05" * 300).encode())  # > max_payload
    good = encode_frame(Frame(MessageType.PING, 0, 8, 0, 0, Ping(2).encode()))
    damaged = bytearray(good)
    damaged[8] ^= 0x40
    peer.stream.write(bytes(damaged))
    raw = bytearray(frame_bytes(Frame(MessageType.PING, 0, 8, 0, 0, Ping(3).encode())))
    raw[0] = PROTOCOL_VERSION + 1
    raw[-4:] = struct.pack("<I", crc32(bytes(raw[:-4])))
    peer.stream.write(b"\x00" + cobs_encode(bytes(raw)) + b"\x00")
    peer.stream.write(b"line noise \x13\x37" + good)
    assert link.receive(1.0) == Ping(2)
    stats = link.stats
    assert (stats.oversize_frames, stats.version_errors) == (1, 1)
    assert stats.crc_errors + stats.cobs_errors == 2  # the damaged frame and the noise-prefixed one
