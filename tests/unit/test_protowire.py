"""The protobuf wire-format helpers shared by checkpoints and summaries (``wrn.protowire``)."""

from __future__ import annotations

import io
import struct

import pytest

from wrn import protowire as pw


@pytest.mark.parametrize("value, encoded", [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (2 ** 63 - 1, b"\xff" * 8 + b"\x7f"), (2 ** 64 - 1, b"\xff" * 9 + b"\x01"),
    (-1, b"\xff" * 9 + b"\x01"),  # int64 -1 as protobuf writes it: 64-bit two's complement
])
def test_varint_known_encodings(value, encoded):
    assert pw.encode_varint(value) == encoded
    assert pw.decode_varint(encoded) == (value & (2 ** 64 - 1), len(encoded))
    assert pw.read_varint(io.BytesIO(encoded + b"rest")) == value & (2 ** 64 - 1)


def test_varint_round_trips_at_every_width():
    for bits in range(65):
        for value in {max(0, 2 ** bits - 1), 2 ** bits if bits < 64 else 0, 12345 % (2 ** bits or 1)}:
            data = b"\x05" + pw.encode_varint(value) + b"\x06"
            assert pw.decode_varint(data, 1) == (value, len(data) - 1)
            stream = io.BytesIO(data[1:])
            assert pw.read_varint(stream) == value
            assert stream.read() == b"\x06"


def test_truncated_and_overlong_varints_are_refused():
    with pytest.raises(ValueError, match="ends inside"):
        pw.decode_varint(b"\x80\x80")
    with pytest.raises(EOFError):
        pw.read_varint(io.BytesIO(b"\x80"))
    with pytest.raises(ValueError, match="longer than"):
        pw.decode_varint(b"\x80" * 11 + b"\x01")
    with pytest.raises(ValueError, match="longer than"):
        pw.read_varint(io.BytesIO(b"\x80" * 11 + b"\x01"))


def test_field_encodings_match_protobuf():
    assert pw.key(1, pw.LEN) == b"\x0a"
    assert pw.key(3, pw.I32) == b"\x1d"
    assert pw.key(16, pw.VARINT) == b"\x80\x01"
    assert pw.varint_field(2, 150) == b"\x10\x96\x01"
    assert pw.bytes_field(2, b"testing") == b"\x12\x07testing"
    assert pw.length_prefix(2, 7) + b"testing" == pw.bytes_field(2, b"testing")
    assert pw.double_field(1, 1.5) == b"\x09" + struct.pack("<d", 1.5)
    assert pw.float_field(3, 0.25) == b"\x1d" + struct.pack("<f", 0.25)


def test_iter_fields_walks_what_the_encoders_write():
    inner = pw.bytes_field(1, "标签".encode()) + pw.float_field(3, 2.5)
    message = (pw.double_field(1, 7.0) + pw.varint_field(2, 2 ** 40) + pw.bytes_field(5, inner)
               + pw.varint_field(9, -2))
    fields = list(pw.iter_fields(message))
    assert [(n, w) for n, w, _ in fields] == [(1, pw.I64), (2, pw.VARINT), (5, pw.LEN), (9, pw.VARINT)]
    assert struct.unpack("<d", fields[0][2])[0] == 7.0
    assert fields[1][2] == 2 ** 40
    assert fields[3][2] == 2 ** 64 - 2
    (tag, scalar) = list(pw.iter_fields(fields[2][2]))
    assert tag == (1, pw.LEN, "标签".encode())
    assert struct.unpack("<f", scalar[2])[0] == 2.5
    assert list(pw.iter_fields(b"")) == []


def test_iter_fields_refuses_truncated_messages_and_groups():
    with pytest.raises(ValueError, match="runs past"):
        list(pw.iter_fields(pw.bytes_field(1, b"abcdef")[:-1]))
    with pytest.raises(ValueError, match="runs past"):
        list(pw.iter_fields(pw.double_field(1, 1.0)[:-1]))
    with pytest.raises(ValueError, match="wire type 3"):
        list(pw.iter_fields(pw.key(1, 3)))


def test_varints_match_the_protobuf_library():
    encoder = pytest.importorskip("google.protobuf.internal.encoder")
    for value in (0, 1, 127, 128, 16383, 16384, 2 ** 31, 2 ** 63 - 1):
        assert pw.encode_varint(value) == encoder._VarintBytes(value)
    for value in (-1, -2 ** 31, -2 ** 63):
        chunks = []
        encoder._EncodeSignedVarint(chunks.append, value)
        assert pw.encode_varint(value) == b"".join(chunks)
