#!/usr/bin/env python3
"""Independent reference for modelsplit's weighted rendezvous assignment.

Standard library only. Prints the golden-vector fixture that test/assign.test.ts checks
src/assign/rendezvous.ts against:

    python3 scripts/rendezvous_reference.py > test/fixtures/rendezvous-golden.json

The formula (see the README, "How users are assigned"):

    h_m     = murmurhash3_x86_32(UTF-8 of "<salt>:<model>:<user id>", seed 0)
    u_m     = (h_m + 0.5) / 2**32
    score_m = -ln(u_m) / weight_m        (weight 0 never wins)
    model   = the m with the lowest score

Analysts with the `mmh3` package can replace murmur3_32 below by
`mmh3.hash(key, 0, signed=False)`.
"""

import json
import math
import struct
import sys

MASK = 0xFFFFFFFF


def _rotl32(x, r):
    return ((x << r) | (x >> (32 - r))) & MASK


def _fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    h ^= h >> 16
    return h


def murmur3_32(data, seed=0):
    """MurmurHash3_x86_32 (Austin Appleby, smhasher MurmurHash3.cpp) of bytes; unsigned result."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & MASK
    n = len(data)
    nblocks = n // 4
    for (k,) in struct.iter_unpack("<I", data[: nblocks * 4]):
        k = (k * c1) & MASK
        k = _rotl32(k, 15)
        k = (k * c2) & MASK
        h ^= k
        h = _rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & MASK
    tail = data[nblocks * 4:]
    k = 0
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & MASK
        k = _rotl32(k, 15)
        k = (k * c2) & MASK
        h ^= k
    h ^= n
    return _fmix32(h)


def rendezvous_hash(salt, model, user_id):
    return murmur3_32(f"{salt}:{model}:{user_id}".encode("utf-8"), 0)


def rendezvous_score(h, weight):
    return -math.log((h + 0.5) / 2**32) / weight if weight > 0 else math.inf


def rendezvous_pick(salt, models, weights, user_id):
    """Index of the winning model; equal scores go to the smaller model name."""
    best, best_score = -1, math.inf
    for i, (model, weight) in enumerate(zip(models, weights)):
        if weight <= 0:
            continue
        score = rendezvous_score(rendezvous_hash(salt, model, user_id), weight)
        if score < best_score or (score == best_score and best >= 0 and model < models[best]):
            best, best_score = i, score
    return best


# Published MurmurHash3_x86_32 vectors (smhasher; also used by mmh3 and most ports).
KNOWN = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"\x21\x43\x65\x87", 0, 0xF55B516B),
    (b"\x21\x43\x65", 0, 0x7E4A8634),
    (b"\x21\x43", 0, 0xA0F7B07A),
    (b"\x21", 0, 0x72661CF4),
    (b"\x21\x43\x65\x87", 0x5082EDEE, 0x2362F9DE),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\x00\x00\x00", 0, 0x85F0B427),
    (b"\x00\x00", 0, 0x30F4C306),
    (b"\x00", 0, 0x514E28B7),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"Hello, world!", 1234, 0xFAF6CDB3),
    (b"The quick brown fox jumps over the lazy dog", 0, 0x2E4FF723),
]


def self_check():
    for data, seed, expected in KNOWN:
        got = murmur3_32(data, seed)
        assert got == expected, f"murmur3_32({data!r}, {seed}) = {got:#010x}, expected {expected:#010x}"


SPLITS = [
    ("churn-2026-11", ["churn-v1", "churn-v2"], [90, 10]),
    ("", ["a", "b", "c"], [1, 1, 1]),
    ("exp-7", ["control", "canary", "challenger"], [70, 20, 10]),
    ("Ω-sélection", ["modèle-α", "模型-β"], [5, 95]),
    ("zero", ["m0", "m1", "m2"], [3, 0, 7]),
    ("fractional", ["x", "y"], [0.25, 0.75]),
]

# murmur3_32("tie:model-9865:user-1") == murmur3_32("tie:model-41890:user-1") == 1197233756 (found by
# search), so with equal weights the scores tie exactly and the smaller name must win in either order.
TIES = [
    ("tie", ["model-9865", "model-41890"], [1, 1], "user-1"),
    ("tie", ["model-41890", "model-9865"], [1, 1], "user-1"),
    ("tie", ["model-9865", "model-41890", "other"], [1, 1, 1], "user-1"),
]


def user_ids():
    ids = [f"user-{i}" for i in range(12)]
    ids += ["", "0", "42", "18446744073709551615", "-1"]
    ids += ["3f2504e0-4f89-11d3-9a0c-0305e82c3301", "123e4567-e89b-12d3-a456-426614174000"]
    ids += ["Zoë", "用户-七", "🙂-emoji", "naïve café", "a:b:c", "tab\there", "line\nbreak"]
    ids += ["x" * 1024, "y" * 1025, "é" * 512, "é" * 513, "🙂" * 300, "long-" + "0123456789" * 150]
    return ids


def main():
    self_check()
    cases = [(salt, models, weights, uid) for salt, models, weights in SPLITS for uid in user_ids()] + TIES
    rows = []
    for salt, models, weights, uid in cases:
        rows.append({
            "salt": salt,
            "models": models,
            "weights": weights,
            "user_id": uid,
            "model": models[rendezvous_pick(salt, models, weights, uid)],
            "hashes": [rendezvous_hash(salt, m, uid) for m in models],
        })
    json.dump({
        "comment": "Generated by scripts/rendezvous_reference.py (independent pure-Python murmurhash3_x86_32 "
                   "and weighted rendezvous). Do not edit by hand; regenerate with "
                   "`python3 scripts/rendezvous_reference.py > test/fixtures/rendezvous-golden.json`.",
        "rows": rows,
    }, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
