"""MurmurHash3 (x86, 32-bit) and MurmurHash2 over UTF-8 bytes, as the router computes them.

Pure Python, standard library only. With the optional ``mmh3`` package installed,
:func:`murmur3_32` uses it (the results are identical; it is only faster).
"""

from __future__ import annotations

import struct

__all__ = ["murmur3_32", "murmur2", "utf8"]

_MASK = 0xFFFFFFFF


def utf8(text: str) -> bytes:
    """The UTF-8 bytes the router hashes for ``text``.

    The router is written in JavaScript, where a string is UTF-16: a surrogate pair is one
    character, and a lone surrogate becomes U+FFFD when encoded. Python strings can hold
    both (e.g. ``"\\ud83d\\ude42"`` from some decoders), so they are given the same treatment.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16 as JavaScript sees it: pairs join, lone halves become U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode("utf-8")


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def _murmur3_32_py(data: bytes, seed: int = 0) -> int:
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _MASK
    n = len(data)
    nblocks = n // 4
    for (k,) in struct.iter_unpack("<I", data[: nblocks * 4]):
        k = (k * c1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * c2) & _MASK
        h ^= k
        h = ((h << 13) | (h >> 19)) & _MASK
        h = (h * 5 + 0xE6546B64) & _MASK
    tail = data[nblocks * 4 :]
    k = 0
    t = len(tail)
    if t >= 3:
        k ^= tail[2] << 16
    if t >= 2:
        k ^= tail[1] << 8
    if t >= 1:
        k ^= tail[0]
        k = (k * c1) & _MASK
        k = _rotl32(k, 15)
        k = (k * c2) & _MASK
        h ^= k
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


try:  # pragma: no cover - depends on the environment
    import mmh3 as _mmh3  # type: ignore[import-not-found,unused-ignore]

    def murmur3_32(data: bytes, seed: int = 0) -> int:
        """MurmurHash3_x86_32 of ``data`` with ``seed``, unsigned (0 .. 2**32 - 1)."""
        return int(_mmh3.hash(data, seed, signed=False))

except ImportError:  # pragma: no cover - depends on the environment

    def murmur3_32(data: bytes, seed: int = 0) -> int:
        """MurmurHash3_x86_32 of ``data`` with ``seed``, unsigned (0 .. 2**32 - 1)."""
        return _murmur3_32_py(data, seed)


_M2 = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """MurmurHash2 with seed 0, as nginx's ``ngx_murmur_hash2()`` computes it (``h = 0 ^ len``)."""
    n = len(data)
    h = n & _MASK
    nblocks = n // 4
    for (k,) in struct.iter_unpack("<I", data[: nblocks * 4]):
        k = (k * _M2) & _MASK
        k ^= k >> 24
        k = (k * _M2) & _MASK
        h = (h * _M2) & _MASK
        h ^= k
    tail = data[nblocks * 4 :]
    t = len(tail)
    if t >= 3:
        h ^= tail[2] << 16
    if t >= 2:
        h ^= tail[1] << 8
    if t >= 1:
        h ^= tail[0]
        h = (h * _M2) & _MASK
    h ^= h >> 13
    h = (h * _M2) & _MASK
    h ^= h >> 15
    return h
