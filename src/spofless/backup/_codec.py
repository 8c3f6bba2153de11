"""How an object is stored: zstd-compressed, then AES-256-GCM-encrypted, self-describing.

    b"SPFB" | version 1 | flags | encrypted: key id (8) + nonce (12) | plain: sha256 (32)
    | payload (zstd frame or raw bytes; encrypted: ciphertext + 16-byte GCM tag)

The object's repository key is the GCM associated data, so an object moved or
swapped to another key fails to decrypt. zstd frames carry their content's
checksum (XXH64), which decompression checks: a restore of an unencrypted object
whose header sha256 is the manifest's needs no sha256 of the content (a fifth of
its CPU); objects written before frames had checksums are hashed as before.
The key id (a hash of the key, never the key) tells "encrypted with another
key" (`WrongKeyError`, checked before anything is decrypted) apart from
"damaged" (`CorruptObjectError`). Unencrypted objects carry the sha256 of
their content instead of the GCM tag, so damage is always detected when an
object is read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from spofless.backup._errors import CorruptObjectError, KeyFileError, WrongKeyError

MAGIC = b"SPFB"
VERSION = 1
_COMPRESSED = 1
_ENCRYPTED = 2
_HEAD = len(MAGIC) + 2
_CHUNK = 1 << 20  # decode_into's unit


def load_key(path: str | Path) -> bytes:
    """The 256-bit key in `path`: 32 raw bytes, or 64 hex digits (whitespace ignored)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(raw) == 32:
        return raw
    text = raw.decode("ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise KeyFileError(
            f"key file {path} must hold 32 random bytes or 64 hex digits "
            "(make one with: head -c 32 /dev/urandom > FILE)"
        )
    return key


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"spofless backup key id\0" + key).digest()[:8]


@dataclass(frozen=True)
class Codec:
    """Encodes and decodes objects; `level` None stores uncompressed, `key` None unencrypted."""

    level: int | None = 3
    key: bytes | None = None

    def encode(self, name: str, data: bytes) -> bytes:
        flags = 0
        payload = data
        if self.level is not None:
            # The frame's checksum lets a restore check the content without a sha256.
            payload = zstandard.ZstdCompressor(level=self.level, write_checksum=True).compress(data)
            flags |= _COMPRESSED
        return self._seal(name, flags, payload, hashlib.sha256(data).digest())

    def _seal(self, name: str, flags: int, payload: bytes, digest: bytes) -> bytes:
        """The object: header, then the payload (encrypted with the header and name as AAD)."""
        if self.key is None:
            return MAGIC + bytes([VERSION, flags]) + digest + payload
        flags |= _ENCRYPTED
        nonce = os.urandom(12)
        head = MAGIC + bytes([VERSION, flags]) + key_id(self.key) + nonce
        return head + AESGCM(self.key).encrypt(nonce, payload, head + name.encode())

    def encoder(self) -> Encoder:
        """A streaming encoder for large objects; one per thread (it keeps a zstd context)."""
        return Encoder(self)

    def _open(
        self, name: str, blob: bytes, sha256: str | None
    ) -> tuple[bytes | memoryview, bytes | None, bool]:
        """(payload, the content's expected sha256 or None, compressed): header checked,
        decrypted; a stored checksum that is not the manifest's fails here. An
        unencrypted payload is a view into `blob` (no copy)."""
        if len(blob) < _HEAD or blob[:4] != MAGIC or blob[4] != VERSION:
            raise CorruptObjectError(f"{name}: not a spofless backup object (bad header)")
        flags = blob[5]
        payload: bytes | memoryview
        if flags & _ENCRYPTED:
            if self.key is None:
                raise KeyFileError(f"{name} is encrypted: give the repository's encryption key")
            kid, nonce = blob[_HEAD : _HEAD + 8], blob[_HEAD + 8 : _HEAD + 20]
            if kid != key_id(self.key):
                raise WrongKeyError(
                    f"{name} was encrypted with another key than the key file's: "
                    "wrong key file for this repository"
                )
            try:
                payload = AESGCM(self.key).decrypt(
                    nonce, blob[_HEAD + 20 :], blob[: _HEAD + 20] + name.encode()
                )
            except InvalidTag:
                raise CorruptObjectError(f"{name}: damaged (authentication failed)") from None
            digest = None
        else:
            digest, payload = blob[_HEAD : _HEAD + 32], memoryview(blob)[_HEAD + 32 :]
            if sha256 is not None and digest.hex() != sha256:
                raise CorruptObjectError(f"{name}: damaged (not the manifest's checksum)")
        if digest is None and sha256 is not None:
            digest = bytes.fromhex(sha256)
        return payload, digest, bool(flags & _COMPRESSED)

    def decode(self, name: str, blob: bytes, sha256: str | None = None) -> bytes:
        """The content of object `name`; WrongKeyError or CorruptObjectError naming it.

        `sha256` (hex, from a manifest) is checked too, with one hash of the content
        whatever the object's form (hashing dominates a restore's CPU time)."""
        payload, digest, compressed = self._open(name, blob, sha256)
        if compressed:
            try:
                # A streamed object's frame does not say its size: decompressobj needs none.
                content = zstandard.ZstdDecompressor().decompressobj().decompress(payload)
            except zstandard.ZstdError as exc:
                raise CorruptObjectError(f"{name}: damaged (zstd: {exc})") from None
        else:
            content = bytes(payload)
        if digest is not None and hashlib.sha256(content).digest() != digest:
            raise CorruptObjectError(f"{name}: damaged (checksum mismatch)")
        return content

    def decode_into(
        self, name: str, blob: bytes, sha256: str | None, write: Callable[[memoryview], object]
    ) -> int:
        """Decode object `name` chunk by chunk into `write`; returns the bytes written.

        `write` must be done with each chunk when it returns. Checked like `decode`, but
        a damaged object is found only once its chunks were written (the caller discards
        what it wrote). Decompressing 1 MiB at a time, each chunk hashed (when needed)
        and written while it is in the CPU's cache, instead of one buffer of the whole
        part, is what makes a restore fast. (Decompressing into one reused buffer with
        `stream_reader.readinto` cost more system time than it saved here: measured.)"""
        payload, digest, compressed = self._open(name, blob, sha256)
        if not compressed:
            if digest is not None and hashlib.sha256(payload).digest() != digest:
                raise CorruptObjectError(f"{name}: damaged (checksum mismatch)")
            write(memoryview(payload))
            return len(payload)
        size = 0
        try:
            # The frame's checksum is checked by zstd; the header's sha256, checked against
            # the manifest's in _open, then covers the content (encrypted objects have no
            # such header: their content is hashed).
            framed = zstandard.get_frame_parameters(payload).has_checksum
            h = None if framed and not blob[5] & _ENCRYPTED else hashlib.sha256()
            chunks = zstandard.ZstdDecompressor().read_to_iter(
                payload, read_size=_CHUNK, write_size=_CHUNK
            )
            for chunk in chunks:
                if h is not None:
                    h.update(chunk)
                write(memoryview(chunk))
                size += len(chunk)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(f"{name}: damaged (zstd: {exc})") from None
        if h is not None and digest is not None and h.digest() != digest:
            raise CorruptObjectError(f"{name}: damaged (checksum mismatch)")
        return size


class Encoder:
    """Encodes an object fed chunk by chunk: each chunk hashed and compressed while it is in
    the CPU's cache, the content never held whole (a 64 MiB part was read into one buffer,
    hashed twice and compressed: page faults and three walks over memory). Reuses one
    zstd context for every object it encodes. Not thread-safe: one per thread.

        enc = codec.encoder(); enc.begin(); enc.update(chunk) ...; blob, sha256 = enc.finish(key)
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._zstd = (
            None
            if codec.level is None
            else zstandard.ZstdCompressor(level=codec.level, write_checksum=True)
        )
        self.begin()

    def begin(self) -> None:
        self._sha = hashlib.sha256()
        self._out: list[bytes] = []
        self.size = 0
        self._obj = None if self._zstd is None else self._zstd.compressobj()

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Add `chunk` (the caller may reuse its buffer once this returns)."""
        self._sha.update(chunk)
        self.size += len(chunk)
        if self._obj is None:
            self._out.append(bytes(chunk))
        else:
            out = self._obj.compress(chunk)
            if out:
                self._out.append(out)

    def finish(self, name: str) -> tuple[bytes, str]:
        """(the object `name` as stored, the content's sha256 in hex); ready for `begin`."""
        flags = 0
        if self._obj is not None:
            self._out.append(self._obj.flush())
            flags = _COMPRESSED
        digest = self._sha.digest()
        blob = self.codec._seal(name, flags, b"".join(self._out), digest)
        self._out = []
        self._obj = None
        return blob, digest.hex()
