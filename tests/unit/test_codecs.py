import gzip
import tracemalloc
import zlib
from collections.abc import Callable
from itertools import pairwise

import brotli
import pytest
import zstandard
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.edge.codecs import (
    PIECE,
    SUPPORTED,
    CodecError,
    choose_encoding,
    make_decoder,
    make_encoder,
    parse_content_encoding,
)

CODINGS = (*SUPPORTED, "identity")

# Compressible text as well as noise, so that streams hold back-references.
payloads = st.one_of(
    st.binary(max_size=4096),
    st.text(max_size=1000).map(lambda s: (s * 4).encode()),
)
cuts = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=12)


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


# Independent encoders: the library's own one-shot functions.
REFERENCE_STREAMS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


def zstd_decompress(stream: bytes) -> bytes:
    # One-shot decompress needs a content size, which a streamed frame lacks.
    out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(stream)
    return out


def prefix_decoder(coding: str) -> Callable[[bytes], bytes]:
    """A fresh reference decoder that takes a sync-flushed prefix without finishing."""
    fresh: dict[str, Callable[[], Callable[[bytes], bytes]]] = {
        "gzip": lambda: zlib.decompressobj(31).decompress,
        "deflate": lambda: zlib.decompressobj(15).decompress,
        "br": lambda: brotli.Decompressor().process,
        "zstd": lambda: zstandard.ZstdDecompressor().decompressobj().decompress,
        "identity": lambda: bytes,
    }
    return fresh[coding]()


def chunked(data: bytes, points: list[int]) -> list[bytes]:
    """data cut at points (taken modulo its length); empty chunks included."""
    bounds = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def decode(coding: str, chunks: list[bytes]) -> bytes:
    decoder = make_decoder(coding)
    pieces = [piece for chunk in chunks for piece in decoder.decompress(chunk)]
    assert all(len(piece) <= PIECE for piece in pieces)
    return b"".join(pieces) + decoder.finish()


def encode(coding: str, chunks: list[bytes]) -> bytes:
    encoder = make_encoder(coding)
    return b"".join(encoder.compress(chunk) for chunk in chunks) + encoder.finish()


@settings(max_examples=60, deadline=None)
@given(coding=st.sampled_from(CODINGS), data=payloads, input_cuts=cuts, stream_cuts=cuts)
def test_round_trip(
    coding: str, data: bytes, input_cuts: list[int], stream_cuts: list[int]
) -> None:
    stream = encode(coding, chunked(data, input_cuts))
    assert decode(coding, chunked(stream, stream_cuts)) == data


@settings(max_examples=40, deadline=None)
@given(data=payloads, input_cuts=cuts)
def test_encoders_write_the_standard_formats(data: bytes, input_cuts: list[int]) -> None:
    chunks = chunked(data, input_cuts)
    assert gzip.decompress(encode("gzip", chunks)) == data
    assert zlib.decompress(encode("deflate", chunks)) == data  # zlib wrapper, not raw
    assert brotli.decompress(encode("br", chunks)) == data
    assert zstd_decompress(encode("zstd", chunks)) == data


@settings(max_examples=60, deadline=None)
@given(
    coding=st.sampled_from(["gzip", "deflate", "raw deflate", "br", "zstd"]),
    data=payloads,
    stream_cuts=cuts,
)
def test_decoders_read_reference_streams(coding: str, data: bytes, stream_cuts: list[int]) -> None:
    if coding == "raw deflate":
        coding, stream = "deflate", raw_deflate(data)
    else:
        stream = REFERENCE_STREAMS[coding](data)
    assert decode(coding, chunked(stream, stream_cuts)) == data


@pytest.mark.parametrize("stream", [zlib.compress(b"hello"), raw_deflate(b"hello")])
def test_deflate_with_and_without_zlib_wrapper(stream: bytes) -> None:
    # Byte by byte, so that detection has to wait for its two header bytes.
    assert decode("deflate", [bytes([b]) for b in stream]) == b"hello"


@settings(max_examples=40, deadline=None)
@given(coding=st.sampled_from(CODINGS), chunks=st.lists(payloads, min_size=1, max_size=6))
def test_each_compress_output_decodes_at_once(coding: str, chunks: list[bytes]) -> None:
    encoder = make_encoder(coding)
    sent = b""
    for n, chunk in enumerate(chunks, 1):
        sent += encoder.compress(chunk)
        assert prefix_decoder(coding)(sent) == b"".join(chunks[:n])


@pytest.mark.parametrize("coding", SUPPORTED)
def test_corrupt_data_raises(coding: str) -> None:
    with pytest.raises(CodecError, match=coding):
        list(make_decoder(coding).decompress(b"\xff" * 32))


def test_gzip_checksum_mismatch_raises() -> None:
    stream = bytearray(gzip.compress(b"hello"))
    stream[-8] ^= 1  # CRC-32 in the trailer
    with pytest.raises(CodecError, match="gzip"):
        list(make_decoder("gzip").decompress(bytes(stream)))


@settings(max_examples=100, deadline=None)
@given(coding=st.sampled_from(SUPPORTED), junk=st.binary(max_size=64))
def test_arbitrary_input_only_raises_codec_error(coding: str, junk: bytes) -> None:
    decoder = make_decoder(coding)
    try:
        list(decoder.decompress(junk))
        decoder.finish()
    except CodecError:
        pass


@settings(max_examples=60, deadline=None)
@given(
    coding=st.sampled_from(["gzip", "deflate", "raw deflate", "br", "zstd"]),
    data=payloads,
    cut=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_truncated_stream_raises_on_finish(coding: str, data: bytes, cut: float) -> None:
    if coding == "raw deflate":
        coding, stream = "deflate", raw_deflate(data)
    else:
        stream = REFERENCE_STREAMS[coding](data)
    assume(len(stream) > 1)  # brotli's empty stream is one byte: no strict prefix to cut
    decoder = make_decoder(coding)
    list(decoder.decompress(stream[: 1 + int(cut * (len(stream) - 1))]))
    with pytest.raises(CodecError, match=coding):
        decoder.finish()


@pytest.mark.parametrize("coding", CODINGS)
def test_empty_body_is_accepted(coding: str) -> None:
    assert decode(coding, [b""]) == b""


def test_gzip_members_and_zstd_frames_are_concatenated() -> None:
    assert decode("gzip", [gzip.compress(b"one") + gzip.compress(b"two")]) == b"onetwo"
    cctx = zstandard.ZstdCompressor()
    frames = cctx.compress(b"one") + cctx.compress(b"two")
    assert decode("zstd", [frames[:5], frames[5:]]) == b"onetwo"


@pytest.mark.parametrize(
    ("coding", "stream"),
    [
        ("deflate", zlib.compress(b"x")),
        ("deflate", raw_deflate(b"x")),
        ("br", brotli.compress(b"x")),
    ],
)
def test_data_after_the_end_raises(coding: str, stream: bytes) -> None:
    decoder = make_decoder(coding)
    list(decoder.decompress(stream))
    with pytest.raises(CodecError, match=coding):
        list(decoder.decompress(b"junk"))


@pytest.mark.parametrize(("window_log", "accepted"), [(23, True), (24, False)])
def test_zstd_window_is_capped_at_8_mib(window_log: int, accepted: bool) -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log)
    compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
    stream = compressor.compress(b"hello") + compressor.flush()  # size unknown: header has window
    if accepted:
        assert decode("zstd", [stream]) == b"hello"
    else:
        with pytest.raises(CodecError, match="zstd"):
            decode("zstd", [stream])


BOMB = 50 * 1024 * 1024
BOMB_STREAMS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, 9),
    "deflate": lambda data: zlib.compress(data, 9),
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor(level=19).compress,
}


@pytest.mark.parametrize("coding", SUPPORTED)
def test_bomb_is_decoded_in_bounded_pieces(coding: str) -> None:
    stream = BOMB_STREAMS[coding](bytes(BOMB))
    decoder = make_decoder(coding)
    total = largest = 0
    tracemalloc.start()
    try:
        for piece in decoder.decompress(stream):
            total += len(piece)
            largest = max(largest, len(piece))
        decoder.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == BOMB
    assert largest <= PIECE
    # zlib and brotli bound their own output. The zstandard binding cannot, so the
    # decoder feeds it small slices, which caps one call's output at 8 MiB instead.
    assert peak < (1 << 20 if coding != "zstd" else 20 << 20)


@pytest.mark.parametrize("make", [make_decoder, make_encoder])
def test_unknown_coding_raises(make: Callable[[str], object]) -> None:
    with pytest.raises(CodecError, match="compress"):
        make("compress")


def test_codings_are_case_insensitive_and_x_gzip_is_gzip() -> None:
    assert decode("X-GZIP", [gzip.compress(b"hi")]) == b"hi"
    assert gzip.decompress(encode(" Gzip ", [b"hi"])) == b"hi"


@pytest.mark.parametrize("coding", CODINGS)
def test_compress_of_nothing_sends_nothing(coding: str) -> None:
    encoder = make_encoder(coding)
    assert encoder.compress(b"") == b""
    encoder.compress(b"x")
    assert encoder.compress(b"") == b""


@pytest.mark.parametrize(
    ("accept", "preferred", "expected"),
    [
        # No header: old clients and tools that decode nothing.
        (None, "gzip", "identity"),
        ("", "gzip", "identity"),
        ("gzip", "gzip", "gzip"),
        ("gzip, br", "br", "br"),
        # The origin's coding wins whenever acceptable, even with a lower weight.
        ("br;q=0.1, gzip", "br", "br"),
        ("br;q=0.001", "br", "br"),
        ("br;q=0, gzip", "br", "gzip"),
        ("br;q=0.000, gzip", "br", "gzip"),
        ("gzip;q=0.2, deflate;q=0.8", "br", "deflate"),
        ("deflate", "gzip", "deflate"),
        # Ties: zstd, br, gzip, deflate.
        ("gzip, deflate, br, zstd", "identity", "zstd"),
        ("deflate, gzip, br", "identity", "br"),
        ("deflate, gzip", "identity", "gzip"),
        ("*", "br", "br"),
        ("*", "identity", "zstd"),
        ("*;q=0.5, zstd;q=0, gzip;q=0.6", "br", "br"),
        ("*;q=0.5, br;q=0, gzip;q=0.4", "br", "zstd"),
        ("*;q=0", "gzip", "identity"),
        ("compress, identity", "gzip", "identity"),
        # Never a 406: identity even when the client refuses it.
        ("identity;q=0", "gzip", "identity"),
        ("identity;q=0, *;q=0", "gzip", "identity"),
        ("GZIP", "gzip", "gzip"),
        ("Br;Q=0.5", "br", "br"),
        ("x-gzip", "gzip", "gzip"),
        (" , gzip ;q=0.5 ,, ", "gzip", "gzip"),
        # Malformed elements count as absent.
        ("gzip;q=2", "gzip", "identity"),
        ("gzip;q=abc", "gzip", "identity"),
        ("gzip;q=0.5000", "gzip", "identity"),
        ("gzip;q= 0.5", "gzip", "identity"),
        ("gzip;level=1", "gzip", "identity"),
        ("gzip;q=0.5;q=1", "gzip", "identity"),
        ("gzip;q=1.5, br", "gzip", "br"),
        ("g zip, deflate", "gzip", "deflate"),
    ],
)
def test_choose_encoding(accept: str | None, preferred: str, expected: str) -> None:
    assert choose_encoding(accept, preferred) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        ("", []),
        ("gzip", ["gzip"]),
        ("gzip, br", ["gzip", "br"]),
        (" GZIP ,Br ", ["gzip", "br"]),
        ("identity", []),
        ("identity, gzip", ["gzip"]),
        ("x-gzip", ["gzip"]),
        ("gzip,,br", ["gzip", "br"]),
        ("compress", ["compress"]),
    ],
)
def test_parse_content_encoding(value: str | None, expected: list[str]) -> None:
    assert list(parse_content_encoding(value)) == expected
