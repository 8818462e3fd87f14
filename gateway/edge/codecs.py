"""Streaming content codings: decode the origin's body, re-encode it for the client.

Decoders yield bounded pieces so that a compression bomb never sits whole in memory;
encoders sync-flush every chunk so that streamed HTML reaches the browser at once.
"""

import re
import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli
import zstandard

from gateway.memo import remember

SUPPORTED: tuple[str, ...] = ("gzip", "deflate", "br", "zstd")

PIECE = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# RFC 9659: HTTP zstd senders must not use windows over 8 MiB, so larger ones are hostile.
ZSTD_MAX_WINDOW = 8 * 1024 * 1024
# The zstandard binding cannot bound its output, but one input byte yields at most
# 32 KiB (a 4-byte RLE block expands to 128 KiB): 256-byte slices cap a call at 8 MiB.
_ZSTD_FEED = 256
# Order among equally weighted codings when the origin's own is not acceptable:
# zstd 3 and br 5 both beat gzip 6 on speed or size; deflate last, as clients
# disagree on whether it carries the zlib wrapper.
_TIE_ORDER = ("zstd", "br", "gzip", "deflate")
_ALIASES = {"x-gzip": "gzip"}  # RFC 9110 8.4.1.3
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_WEIGHT = re.compile(r"q=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)", re.IGNORECASE)


class CodecError(Exception):
    """Corrupt or truncated data, or an unknown coding; the message names the coding."""


class Decoder(Protocol):
    def decompress(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of at most PIECE bytes; consume them all before the next call."""
        ...

    def finish(self) -> bytes:
        """End of input: the rest of the output; CodecError if the stream is truncated."""
        ...


class Encoder(Protocol):
    def compress(self, data: bytes) -> bytes:
        """Encoded data, flushed so that the client can decode everything given so far.

        b"" for b"": what came before is flushed already, a lone marker would be waste.
        """
        ...

    def finish(self) -> bytes:
        """End of stream."""
        ...


def _split(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), PIECE):
        yield data[start : start + PIECE]


def _canonical(coding: str) -> str:
    coding = coding.strip().lower()
    return _ALIASES.get(coding, coding)


def _is_zlib_header(head: bytes) -> bool:
    # RFC 1950: method 8, window <= 32 KiB, header check. Raw deflate from a real
    # encoder never starts so: it would be a non-final stored block with padding bits set.
    return head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0


class _IdentityDecoder:
    def decompress(self, data: bytes) -> Iterator[bytes]:
        return _split(data)

    def finish(self) -> bytes:
        return b""


class _ZlibDecoder:
    """gzip, and deflate with or without its zlib wrapper; max_length bounds pieces."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._head = b""  # input held until the first bytes choose the format
        self._z: zlib._Decompress | None = None

    def decompress(self, data: bytes) -> Iterator[bytes]:
        if self._z is None:
            self._head += data
            wbits = self._wbits()
            if wbits is None:
                return
            self._z = zlib.decompressobj(wbits)
            data, self._head = self._head, b""
        try:
            while data:
                z = self._z
                out = z.decompress(data, PIECE)
                while out:
                    yield out
                    out = z.decompress(z.unconsumed_tail, PIECE)
                data = z.unused_data  # input after the end of the stream
                if data and self._coding != "gzip":
                    raise CodecError(f"{self._coding}: data after the end of the stream")
                if data:  # RFC 1952 2.2: a gzip file is a series of members
                    self._z = zlib.decompressobj(_GZIP_WBITS)
        except zlib.error as exc:
            raise CodecError(f"{self._coding}: corrupt data: {exc}") from exc

    def finish(self) -> bytes:
        if self._z is None and not self._head:
            return b""  # servers label empty bodies too
        if self._z is None or not self._z.eof:
            raise CodecError(f"{self._coding}: truncated stream")
        return b""

    def _wbits(self) -> int | None:
        if not self._head:
            return None
        if self._coding == "gzip":
            return _GZIP_WBITS
        if len(self._head) < 2:
            return None
        return zlib.MAX_WBITS if _is_zlib_header(self._head) else -zlib.MAX_WBITS


class _BrotliDecoder:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()
        self._started = False

    def decompress(self, data: bytes) -> Iterator[bytes]:
        self._started = self._started or bool(data)
        try:
            # The binding stops growing its buffer once it reaches the limit, so a
            # call may overshoot by one internal block: _split keeps pieces in bounds.
            out: bytes = self._d.process(data, output_buffer_limit=PIECE)
            while True:
                yield from _split(out)
                # A full buffer or unconsumed input means more output is pending.
                if len(out) < PIECE and self._d.can_accept_more_data():
                    return
                out = self._d.process(b"", output_buffer_limit=PIECE)
        except brotli.error as exc:
            raise CodecError(f"br: corrupt data: {exc}") from exc

    def finish(self) -> bytes:
        if self._started and not self._d.is_finished():
            raise CodecError("br: truncated stream")
        return b""


class _ZstdDecoder:
    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self._obj = self._dctx.decompressobj()
        self._in_frame = False

    def decompress(self, data: bytes) -> Iterator[bytes]:
        for start in range(0, len(data), _ZSTD_FEED):
            chunk = data[start : start + _ZSTD_FEED]
            while chunk:
                self._in_frame = True
                try:
                    out = self._obj.decompress(chunk)
                except zstandard.ZstdError as exc:
                    raise CodecError(f"zstd: corrupt data: {exc}") from exc
                yield from _split(out)
                if not self._obj.eof:
                    break
                # RFC 8878 3: a stream is one or more frames; each needs a fresh object.
                self._in_frame = False
                chunk = self._obj.unused_data
                self._obj = self._dctx.decompressobj()

    def finish(self) -> bytes:
        if self._in_frame:
            raise CodecError("zstd: truncated stream")
        return b""


class _IdentityEncoder:
    def compress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _ZlibEncoder:
    def __init__(self, wbits: int) -> None:
        self._c = zlib.compressobj(6, zlib.DEFLATED, wbits)

    def compress(self, data: bytes) -> bytes:
        if not data:
            return b""
        return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._c.flush(zlib.Z_FINISH)


class _BrotliEncoder:
    def __init__(self) -> None:
        self._c = brotli.Compressor(mode=brotli.MODE_TEXT, quality=5)

    def compress(self, data: bytes) -> bytes:
        if not data:
            return b""
        out: bytes = self._c.process(data) + self._c.flush()
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.finish()
        return out


class _ZstdEncoder:
    def __init__(self) -> None:
        self._c = zstandard.ZstdCompressor(level=3).compressobj()

    def compress(self, data: bytes) -> bytes:
        if not data:
            return b""
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def make_decoder(coding: str) -> Decoder:
    match _canonical(coding):
        case "gzip" | "deflate" as name:
            return _ZlibDecoder(name)
        case "br":
            return _BrotliDecoder()
        case "zstd":
            return _ZstdDecoder()
        case "identity":
            return _IdentityDecoder()
    raise CodecError(f"unsupported content coding: {coding!r}")


def make_encoder(coding: str) -> Encoder:
    match _canonical(coding):
        case "gzip":
            return _ZlibEncoder(_GZIP_WBITS)
        case "deflate":
            return _ZlibEncoder(zlib.MAX_WBITS)  # RFC 9110 8.4.1.2: the zlib format
        case "br":
            return _BrotliEncoder()
        case "zstd":
            return _ZstdEncoder()
        case "identity":
            return _IdentityEncoder()
    raise CodecError(f"unsupported content coding: {coding!r}")


def parse_content_encoding(value: str | None) -> tuple[str, ...]:
    """Codings in the order applied, lowercased, x-gzip as gzip, without identity."""
    return _parse_content_encoding(value or "")


@remember(maxsize=64)
def _parse_content_encoding(value: str) -> tuple[str, ...]:
    codings = (_canonical(c) for c in value.split(","))
    return tuple(c for c in codings if c and c != "identity")


def _accept_weights(value: str) -> dict[str, float]:
    """Weight per coding; malformed elements are left out as if absent."""
    weights: dict[str, float] = {}
    for element in value.split(","):
        coding, *params = (part.strip() for part in element.split(";"))
        if not _TOKEN.fullmatch(coding) or len(params) > 1:
            continue  # also skips the empty elements RFC 9110 5.6.1 allows
        weight = _WEIGHT.fullmatch(params[0]) if params else None
        if params and weight is None:
            continue
        weights[_canonical(coding)] = float(weight[1]) if weight else 1.0
    return weights


def choose_encoding(accept_encoding: str | None, preferred: str) -> str:
    """The coding to send: preferred if acceptable, else the best weighted, else identity.

    A preferred outside SUPPORTED (an uncompressed origin's "identity") is no preference.
    A missing header means any coding is acceptable (RFC 9110 12.5.3), but old clients
    and tools omit it without decoding anything, so they get identity. Identity is
    also the answer when the client refuses it: a 406 would break the page.
    """
    if accept_encoding is None:
        return "identity"
    weights = _accept_weights(accept_encoding)
    anything = weights.get("*", 0.0)

    def weight(coding: str) -> float:
        return weights.get(coding, anything)

    if preferred in SUPPORTED and weight(preferred) > 0:
        return preferred
    best = max(_TIE_ORDER, key=weight)  # max keeps the first of equals
    return best if weight(best) > 0 else "identity"
