"""modelsplit.assign gives exactly the router's answer: against the golden vectors the TypeScript
tests use (the same files), the repository's independent Python reference, a running router's
/admin/assign, and the built Assigner for strings only JavaScript-style UTF-16 can hold."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import modelsplit
from modelsplit import Assigner, assign, explain, nginx_percents
from modelsplit._hash import _murmur3_32_py, murmur2, murmur3_32, utf8

from support import FIXTURES, REPO, Client

GOLDEN = FIXTURES / "rendezvous-golden.json"
NGINX = FIXTURES / "nginx-split-clients.json"


def _reference():
    spec = importlib.util.spec_from_file_location("rendezvous_reference", REPO / "scripts" / "rendezvous_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_murmur3_matches_published_vectors_and_the_reference_script() -> None:
    ref = _reference()
    for data, seed, expected in ref.KNOWN:
        assert _murmur3_32_py(data, seed) == expected
        assert murmur3_32(data, seed) == expected
    rng = random.Random(3)
    for n in range(300):
        data = bytes(rng.randrange(256) for _ in range(n % 41))
        assert murmur3_32(data) == ref.murmur3_32(data) == _murmur3_32_py(data)


def test_rendezvous_golden_vectors() -> None:
    rows = json.loads(GOLDEN.read_text(encoding="utf-8"))["rows"]
    assert len(rows) >= 190
    for row in rows:
        split = list(zip(row["models"], row["weights"]))
        assert assign(row["user_id"], salt=row["salt"], split=split) == row["model"], row
        e = explain(row["user_id"], salt=row["salt"], split=split)
        assert [c["hash"] for c in e["candidates"]] == row["hashes"], row
        # The same split as dicts, as the config writes it.
        dicts = [{"model": m, "weight": w} for m, w in split]
        assert assign(row["user_id"], salt=row["salt"], split=dicts) == row["model"]


def test_nginx_split_clients_vectors_recorded_from_real_nginx() -> None:
    fixture = json.loads(NGINX.read_text(encoding="utf-8"))
    checked = 0
    for case in fixture["cases"]:
        split = [(f"model-{i}", w) for i, w in enumerate(case["weights"])]
        assert nginx_percents(split) == case["percents"], case["name"]
        a = Assigner(salt=case["salt"], split=split, hash="nginx")
        for user_id, index in case["ids"]:
            assert a.index(user_id) == index, (case["name"], user_id)
            assert assign(user_id, salt=case["salt"], split=split, hash="nginx") == f"model-{index}"
            checked += 1
    assert checked > 500


def test_murmur2_is_nginx_hash() -> None:
    assert murmur2(b"") == 0
    # Four-byte blocks and every tail length, against a direct transcription of ngx_murmur_hash2.
    def ngx(data: bytes) -> int:
        h = len(data)
        i = 0
        while len(data) - i >= 4:
            k = int.from_bytes(data[i:i + 4], "little")
            k = (k * 0x5BD1E995) & 0xFFFFFFFF
            k ^= k >> 24
            k = (k * 0x5BD1E995) & 0xFFFFFFFF
            h = ((h * 0x5BD1E995) & 0xFFFFFFFF) ^ k
            i += 4
        rest = data[i:]
        if len(rest) == 3:
            h ^= rest[2] << 16
        if len(rest) >= 2:
            h ^= rest[1] << 8
        if len(rest) >= 1:
            h ^= rest[0]
            h = (h * 0x5BD1E995) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0x5BD1E995) & 0xFFFFFFFF
        h ^= h >> 15
        return h

    for key in ["a", "ab", "abc", "abcd", "abcde", "josé", "用户42", "🙂🙂", "x" * 1001]:
        assert murmur2(key.encode()) == ngx(key.encode())


def test_readme_example_and_numeric_ids() -> None:
    assert assign("alice", salt="churn-2026-11", split=[("churn-v1", 90), ("churn-v2", 10)]) == "churn-v2"
    split = [("a", 1), ("b", 1), ("c", 1)]
    assert assign(42, salt="s", split=split) == assign("42", salt="s", split=split)
    assert modelsplit.assign(18446744073709551615, salt="", split=split) == assign("18446744073709551615", salt="", split=split)


def test_split_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="positive"):
        assign("u", salt="s", split=[("a", 0), ("b", 0)])
    with pytest.raises(ValueError, match=">= 0"):
        assign("u", salt="s", split=[("a", -1), ("b", 1)])
    with pytest.raises(ValueError, match="twice"):
        assign("u", salt="s", split=[("a", 1), ("a", 1)])
    with pytest.raises(ValueError, match=r"0\.01% resolution.*or set it to 0"):
        assign("u", salt="", split=[("a", 1), ("b", 1e6)], hash="nginx")
    with pytest.raises(ValueError, match="hash"):
        assign("u", salt="", split=[("a", 1)], hash="md5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        assign(1.5, salt="", split=[("a", 1)])  # type: ignore[arg-type]


# ---- against a running router --------------------------------------------------------------------

ROUTES = [
    # name, salt as written (None: the router's default), hash, split
    ("ab", None, "rendezvous", [("churn-v1", 45.5), ("churn-v2", 0), ("churn-v3", 54.5)]),
    ("salted", "Ω-sélection 2026", "rendezvous", [("churn-v1", 1), ("churn-v2", 2), ("churn-v3", 7)]),
    ("nx", None, "nginx", [("churn-v1", 33.33), ("churn-v2", 33.33), ("churn-v3", 33.34)]),
    ("nx-salted", "用户-salt", "nginx", [("churn-v1", 0), ("churn-v2", 9), ("churn-v3", 1)]),
]


def _config(models: dict[str, str]) -> str:
    lines = ["listen: { host: 127.0.0.1, port: 0 }", "admin: { host: 127.0.0.1, port: 0 }", "models:"]
    lines += [f"  {name}: {{ url: \"{url}\" }}" for name, url in models.items()]
    lines.append("routes:")
    for i, (name, salt, hash_, split) in enumerate(ROUTES):
        lines += [f"  - name: {name}", f"    path: /r{i}", f"    hash: {hash_}"]
        if salt is not None:
            lines.append(f"    salt: {json.dumps(salt, ensure_ascii=False)}")
        lines.append("    split:")
        lines += [f"      - {{ model: {m}, weight: {w} }}" for m, w in split]
    return "\n".join(lines) + "\n"


def random_ids(n: int, seed: int) -> list[str]:
    """User ids as they come: numbers, UUIDs, e-mails, and text in many scripts, with spaces,
    punctuation and characters that need escaping in a query string."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xFE00, 0xFFFD),
              (0x1F300, 0x1FAFF), (0x10000, 0x1007F), (0x20000, 0x2A6DF), (0x300, 0x36F)]
    ids: set[str] = set()
    while len(ids) < n:
        kind = rng.randrange(6)
        if kind == 0:
            s = str(rng.randrange(10 ** rng.randrange(1, 20)))
        elif kind == 1:
            s = "%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48))
        elif kind == 2:
            s = f"user{rng.randrange(10**6)}@example.com"
        elif kind == 3:
            s = "".join(rng.choice(" +&=%#?/:;,'\"\\<>[]{}|`~!$^*()") for _ in range(rng.randrange(1, 12)))
        else:
            s = "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randrange(1, 40)))
        if s != "":
            ids.add(s)
    return sorted(ids)


def test_matches_a_running_routers_admin_assign(router_factory, models) -> None:
    ids = random_ids(2500, seed=11)
    assert sum(1 for i in ids if not i.isascii()) > 700
    splits = {name: Assigner(salt=(salt if salt is not None else ("" if h == "nginx" else name)), split=split, hash=h)
              for name, salt, h, split in ROUTES}
    with router_factory(_config(models)) as router:
        status, cfg = router.get_json("/admin/config")
        assert status == 200

        def check(chunk: list[str]) -> list[tuple[str, str, object, object]]:
            client = Client(router.admin_url)
            bad = []
            try:
                for user_id in chunk:
                    for route, a in splits.items():
                        q = urllib.parse.urlencode({"route": route, "user_id": user_id}, quote_via=urllib.parse.quote)
                        status, _, body = client.request("GET", f"/admin/assign?{q}")
                        answer = json.loads(body)
                        assert status == 200, answer
                        assert answer["user_id"] == user_id, "the id reached the router altered"
                        mine = a.explain(user_id)
                        if answer["model"] != mine["model"] or [c["hash"] for c in answer["candidates"]] != [c["hash"] for c in mine["candidates"]]:
                            bad.append((route, user_id, answer["model"], mine["model"]))
            finally:
                client.close()
            return bad

        chunks = [ids[i::4] for i in range(4)]
        with ThreadPoolExecutor(4) as pool:
            mismatches = [m for part in pool.map(check, chunks) for m in part]
    assert mismatches == []
    # Every model with a positive weight was seen on every route (the ids really spread).
    for name, _, _, split in ROUTES:
        seen = {splits[name].assign(i) for i in ids}
        assert seen == {m for m, w in split if w > 0}


def test_ids_only_javascript_strings_hold_match_the_built_assigner(cli) -> None:
    """Lone surrogates (from JSON such as "\\ud800") are U+FFFD in the router's UTF-8; a surrogate
    pair written as two escapes is one character. The built Assigner decides on the same strings."""
    rng = random.Random(5)
    ids = random_ids(300, seed=12)
    for _ in range(300):
        parts = [rng.choice(["a", "é", "用", "🙂", chr(rng.randint(0xD800, 0xDBFF)), chr(rng.randint(0xDC00, 0xDFFF)), "\ud83d\ude42"])
                 for _ in range(rng.randrange(1, 6))]
        ids.append("".join(parts))
    cases = [
        {"algorithm": "rendezvous", "salt": "s\udc00", "models": ["a", "b", "c"], "weights": [1, 2, 3]},
        {"algorithm": "nginx", "salt": "\udc00x", "models": ["a", "b", "c"], "weights": [33.33, 33.33, 33.34]},
        {"algorithm": "nginx", "salt": "", "models": ["a", "b"], "weights": [5, 95]},
    ]
    script = (
        "import { Assigner } from " + json.dumps((REPO / "dist" / "assign" / "index.js").as_uri()) + ";"
        "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const {cases,ids}=JSON.parse(s);"
        "process.stdout.write(JSON.stringify(cases.map(c=>{const a=new Assigner(c);return ids.map(i=>a.pick(i))})))})"
    )
    payload = json.dumps({"cases": cases, "ids": ids})  # ensure_ascii: lone surrogates travel as \\udXXX escapes
    out = subprocess.run(["node", "--input-type=module", "-e", script], input=payload, capture_output=True, text=True, check=True, cwd=REPO)
    picks = json.loads(out.stdout)
    for case, expected in zip(cases, picks):
        a = Assigner(salt=case["salt"], split=list(zip(case["models"], case["weights"])), hash=case["algorithm"])
        assert [a.index(i) for i in ids] == expected, case
    assert utf8("\ud800") == "\ufffd".encode() and utf8("\ud83d\ude42") == "🙂".encode()


# The router reads a header's UTF-8 bytes as UTF-8 (node:http decodes them as Latin-1), so an id
# hashes the same in a header as in a query, a body or assign().
def test_a_non_ascii_user_id_in_a_header_is_hashed_as_its_utf8(router_factory, models) -> None:
    config = ("listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nmodels:\n"
              + "".join(f"  {n}: {{ url: \"{u}\" }}\n" for n, u in models.items())
              + "routes:\n  - name: hdr\n    path: /hdr\n    split:\n      - { model: churn-v1, weight: 1 }\n"
                "      - { model: churn-v2, weight: 1 }\n")
    split = [("churn-v1", 1), ("churn-v2", 1)]
    with router_factory(config) as router:
        client = Client(router.url)
        wrong = []
        for i in range(40):
            uid = f"José-{i}"
            # http.client sends header text as Latin-1: hand it the UTF-8 bytes, as browsers and curl send them.
            status, headers, _ = client.request("POST", "/hdr/invocations", b'{"dataframe_records":[{}]}',
                                                {"content-type": "application/json", "x-user-id": uid.encode().decode("latin-1")})
            assert status == 200
            if headers["x-modelsplit-model"] != assign(uid, salt="hdr", split=split):
                wrong.append(uid)
        client.close()
    assert wrong == []
