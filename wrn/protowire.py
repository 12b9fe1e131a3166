"""The protobuf wire format, as far as this project writes and reads it by hand.

Checkpoints (``wrn.checkpoint``) and MindInsight summaries (``wrn.summary``) are serialized
protobuf messages; both modules build and walk them with these helpers instead of depending on
generated message classes. Only the pieces they need are here: base-128 varints, field keys
(field number and wire type), length-delimited fields (also as a bare prefix, for a payload
that is written separately), fixed 32- and 64-bit floats, and a walk over the top-level fields
of a message. Standard library only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

#: Wire types (the low three bits of a field key).
VARINT, I64, LEN, I32 = 0, 1, 2, 5

#: A varint holds at most 64 bits, i.e. 10 bytes of 7 bits.
MAX_VARINT_BYTES = 10
_MASK64 = (1 << 64) - 1


def encode_varint(value: int) -> bytes:
    """``value`` as a protobuf varint; a negative number is written as its 64-bit two's
    complement (10 bytes), as protobuf writes int32 and int64 fields."""
    value &= _MASK64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Read the varint that starts at ``data[pos]``; return (value, position after it).

    Raises ``ValueError`` when ``data`` ends inside it or it runs past ``MAX_VARINT_BYTES``.
    """
    value = shift = 0
    for _ in range(MAX_VARINT_BYTES):
        if pos >= len(data):
            raise ValueError("the data ends inside a varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError(f"a varint longer than {MAX_VARINT_BYTES} bytes")


def read_varint(stream: BinaryIO) -> int:
    """Read one varint from a binary stream, byte by byte.

    Raises ``EOFError`` when the stream ends inside it and ``ValueError`` when it runs past
    ``MAX_VARINT_BYTES``.
    """
    value = shift = 0
    for _ in range(MAX_VARINT_BYTES):
        byte = stream.read(1)
        if not byte:
            raise EOFError("the stream ends inside a varint")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
    raise ValueError(f"a varint longer than {MAX_VARINT_BYTES} bytes")


def key(number: int, wire: int) -> bytes:
    """The key that precedes a field: ``number << 3 | wire`` as a varint."""
    return encode_varint(number << 3 | wire)


def varint_field(number: int, value: int) -> bytes:
    """A whole varint field (int32, int64, uint64, bool, enum)."""
    return key(number, VARINT) + encode_varint(value)


def length_prefix(number: int, length: int) -> bytes:
    """The key and length of a length-delimited field whose ``length`` bytes follow it
    separately (e.g. a tensor written straight from its memory)."""
    return key(number, LEN) + encode_varint(length)


def bytes_field(number: int, data: bytes) -> bytes:
    """A whole length-delimited field: bytes, a UTF-8 string or an embedded message."""
    return length_prefix(number, len(data)) + data


def double_field(number: int, value: float) -> bytes:
    """A ``double`` field (fixed 64 bits, little-endian)."""
    return key(number, I64) + struct.pack("<d", value)


def float_field(number: int, value: float) -> bytes:
    """A ``float`` field (fixed 32 bits, little-endian)."""
    return key(number, I32) + struct.pack("<f", value)


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """The top-level fields of a serialized message, in order: (number, wire type, value).

    The value is an int for a varint, the raw 8 or 4 bytes for a fixed field and the payload
    for a length-delimited one (decode an embedded message with another ``iter_fields``).
    Raises ``ValueError`` for a truncated message or a wire type not listed above (groups).
    """
    pos = 0
    while pos < len(data):
        field_key, pos = decode_varint(data, pos)
        number, wire = field_key >> 3, field_key & 7
        if wire == VARINT:
            value, pos = decode_varint(data, pos)
        elif wire in (I64, I32, LEN):
            if wire == LEN:
                size, pos = decode_varint(data, pos)
            else:
                size = 8 if wire == I64 else 4
            if pos + size > len(data):
                raise ValueError(f"field {number} runs past the end of the message")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value
