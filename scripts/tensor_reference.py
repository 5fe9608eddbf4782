#!/usr/bin/env python3
"""Golden vectors for src/compare/tensors.ts, built independently of it.

Messages are encoded here by hand (protobuf wire format with struct), element values come from
numpy's own dtypes (float16 included), and the expected agreement from numpy.isclose (shadow
against the primary as reference, equal_nan=True) and numpy.argmax, per instance (first axis).

    python3 scripts/tensor_reference.py > test/fixtures/compare-tensors.json  # with numpy 2.1.3
"""
import base64
import json
import struct

import numpy as np

# --- protobuf wire format --------------------------------------------------------------------


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def vi(number, value):
    return varint(number << 3 | 0) + varint(value)


def packed_varints(number, values):
    return ld(number, b"".join(varint(v) for v in values))


def packed_fixed(number, fmt, values):
    return ld(number, b"".join(struct.pack("<" + fmt, v) for v in values))


# --- Open Inference Protocol -----------------------------------------------------------------

TYPED = {"BOOL": 1, "INT32": 2, "INT64": 3, "UINT32": 4, "UINT64": 5, "FP32": 6, "FP64": 7, "BYTES": 8}
NP = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
      "UINT8": np.uint8, "BOOL": np.bool_, "UINT64": np.uint64, "INT8": np.int8}


def raw_bytes(datatype, arr):
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in arr.reshape(-1))
    return np.ascontiguousarray(arr.astype(NP[datatype]).astype(np.dtype(NP[datatype]).newbyteorder("<"))).tobytes()


def typed_contents(datatype, arr):
    flat = arr.reshape(-1)
    f = TYPED[datatype]
    if datatype == "FP32":
        return packed_fixed(f, "f", [float(x) for x in flat])
    if datatype == "FP64":
        return packed_fixed(f, "d", [float(x) for x in flat])
    if datatype == "BYTES":
        return b"".join(ld(f, b) for b in flat)
    return packed_varints(f, [int(x) for x in flat])


def infer_response(outputs, raw):
    """outputs: [(name, datatype, ndarray)]; raw: use raw_output_contents."""
    msg = ld(1, "model") + ld(3, "req")
    for name, datatype, arr in outputs:
        body = ld(1, name) + ld(2, datatype) + packed_varints(3, list(arr.shape))
        if not raw:
            body += ld(5, typed_contents(datatype, arr))
        msg += ld(5, body)
    if raw:
        for _, datatype, arr in outputs:
            msg += ld(6, raw_bytes(datatype, arr))
    return msg


# --- TF Serving --------------------------------------------------------------------------------

TF_DTYPE = {"FP32": 1, "FP64": 2, "INT32": 3, "BYTES": 7, "INT64": 9, "FP16": 19}


def tensor_proto(datatype, arr, content):
    shape = b"".join(ld(2, vi(1, d)) for d in arr.shape)
    msg = vi(1, TF_DTYPE[datatype]) + ld(2, shape)
    flat = arr.reshape(-1)
    if content:
        return msg + ld(4, raw_bytes(datatype, arr))
    if datatype == "FP32":
        return msg + packed_fixed(5, "f", [float(x) for x in flat])
    if datatype == "INT64":
        return msg + packed_varints(10, [int(x) for x in flat])
    if datatype == "FP16":
        return msg + packed_varints(13, [int(x) for x in flat.view(np.uint16)])
    if datatype == "BYTES":
        return msg + b"".join(ld(8, b) for b in flat)
    raise ValueError(datatype)


def predict_response(outputs, content):
    msg = b""
    for name, datatype, arr in outputs:
        msg += ld(1, ld(1, name) + ld(2, tensor_proto(datatype, arr, content)))
    return msg + ld(2, ld(1, "model"))


# --- the oracle ----------------------------------------------------------------------------------


def as_text(datatype, arr):
    if datatype == "BYTES":
        return [b.decode("latin1") for b in arr.reshape(-1)]
    if datatype in ("INT64", "UINT64"):
        return [str(int(x)) for x in arr.reshape(-1)]
    return [repr(float(x)) for x in arr.reshape(-1)]


def expect(primary, shadow, atol, rtol):
    by_name = {n: (d, a) for n, d, a in shadow}
    outs = []
    batch = max([a.shape[0] if a.ndim else 1 for _, _, a in primary] + [0])
    inst_ok = np.ones(batch, dtype=bool)
    diffs = []
    for name, dt, a in primary:
        n = a.shape[0] if a.ndim else 1
        if name not in by_name:
            outs.append({"name": name, "problem": "missing_in_shadow", "instances": n, "agreeing": 0, "argmaxAgreeing": None})
            inst_ok[:n] = False
            continue
        sdt, s = by_name.pop(name)
        if sdt != dt or s.shape != a.shape:
            outs.append({"name": name, "problem": "dtype" if sdt != dt else "shape", "instances": n, "agreeing": 0, "argmaxAgreeing": None})
            inst_ok[:n] = False
            continue
        pa = a.reshape(n, -1)
        sa = s.reshape(n, -1)
        if dt == "BYTES":
            ok = np.array([all(x == y for x, y in zip(pa[i], sa[i])) for i in range(n)])
            am = None
        else:
            if dt in ("INT64", "UINT64"):
                d = np.array([[abs(int(x) - int(y)) for x, y in zip(pr, sr)] for pr, sr in zip(pa, sa)], dtype=np.float64)
                ok = (d <= atol + rtol * np.abs(pa.astype(np.float64))).all(axis=1)
            else:
                p64 = pa.astype(np.float64)
                s64 = sa.astype(np.float64)
                ok = np.isclose(s64, p64, atol=atol, rtol=rtol, equal_nan=True).all(axis=1)
                with np.errstate(invalid="ignore"):
                    d = np.abs(p64 - s64)
                d = d[~np.isnan(d)]
            diffs.extend(float(x) for x in np.asarray(d).reshape(-1))
            am = int((np.argmax(pa, axis=1) == np.argmax(sa, axis=1)).sum()) if pa.shape[1] > 1 else None
        inst_ok[:n] &= ok
        outs.append({"name": name, "problem": None, "instances": n, "agreeing": int(ok.sum()), "argmaxAgreeing": am})
    for name in by_name:
        outs.append({"name": name, "problem": "missing_in_primary", "instances": 0, "agreeing": 0, "argmaxAgreeing": None})
    extra = any(o["problem"] == "missing_in_primary" for o in outs)
    agree = (not extra) and all(o["problem"] is None and o["agreeing"] == o["instances"] for o in outs)
    return {
        "agree": agree,
        "compared": batch,
        "fraction_agree": 0.0 if extra else (float(inst_ok.sum()) / batch if batch else 1.0),
        "abs_diff_max": max(diffs) if diffs else None,
        "outputs": outs,
    }


rng = np.random.default_rng(20)


def probs(n, k):
    x = rng.random((n, k))
    return (x / x.sum(axis=1, keepdims=True)).astype(np.float32)


cases = []


def case(name, fmt, primary, shadow, atol, rtol, raw=True):
    enc = (lambda outs: base64.b64encode(infer_response(outs, raw)).decode()) if fmt == "oip" else \
          (lambda outs: base64.b64encode(predict_response(outs, raw)).decode()) if fmt == "tf" else \
          (lambda outs: {"model_name": "m", "outputs": [{"name": n, "datatype": d, "shape": list(a.shape),
                                                        "data": [x.decode() if d == "BYTES" else (int(x) if d.startswith(("INT", "UINT")) else float(x)) for x in a.reshape(-1)]}
                                                       for n, d, a in outs]})
    cases.append({
        "name": name, "format": fmt, "atol": atol, "rtol": rtol,
        "primary": enc(primary), "shadow": enc(shadow),
        "decoded": [{"name": n, "datatype": d, "shape": list(a.shape), "values": as_text(d, a)} for n, d, a in sorted(primary, key=lambda o: o[0]) if True] if fmt == "tf" else
                   [{"name": n, "datatype": d, "shape": list(a.shape), "values": as_text(d, a)} for n, d, a in primary],
        "expected": expect(primary, shadow, atol, rtol),
    })


p = probs(5, 3)
s = p + rng.normal(0, 2e-4, p.shape).astype(np.float32)
s[2] = s[2][::-1]  # one instance with another argmax
s[4, 0] += 0.01    # one instance out of tolerance, same argmax
for fmt, raw in (("oip", True), ("oip", False), ("rest", False)):
    case(f"FP32 probabilities, {fmt} {'raw' if raw else 'typed'}", fmt, [("probs", "FP32", p)], [("probs", "FP32", s)], 1e-3, 1e-3, raw)

h = rng.random((4, 2)).astype(np.float16)
h2 = h.copy()
h2[1, 1] = np.float16(float(h2[1, 1]) + 0.01)
case("FP16 raw, little-endian", "oip", [("y", "FP16", h)], [("y", "FP16", h2)], 1e-3, 0.0)

big = np.array([[2**60 + 1, 7], [-(2**62) - 3, 2**53 + 1]], dtype=np.int64)
big2 = big.copy()
big2[0, 0] += 1
for atol in (0.0, 1.0):
    case(f"INT64 beyond 2^53, typed, atol {atol}", "oip", [("ids", "INT64", big)], [("ids", "INT64", big2)], atol, 0.0, False)
    case(f"INT64 beyond 2^53, raw, atol {atol}", "oip", [("ids", "INT64", big)], [("ids", "INT64", big2)], atol, 0.0, True)

labels = np.array([b"cat", b"", "chien".encode(), "猫".encode()], dtype=object)
labels2 = labels.copy()
labels2[3] = b"dog"
case("BYTES length-prefixed raw", "oip", [("label", "BYTES", labels)], [("label", "BYTES", labels2)], 0.0, 0.0, True)
case("BYTES typed", "oip", [("label", "BYTES", labels)], [("label", "BYTES", labels)], 0.0, 0.0, False)

d = rng.random((3, 2))
case("FP64 typed; an output missing in the shadow, another of another shape, one extra", "oip",
     [("a", "FP64", d), ("b", "FP64", d), ("c", "FP64", d)],
     [("a", "FP64", d), ("c", "FP64", d.reshape(2, 3)), ("z", "FP64", d)], 1e-9, 0.0, False)
nan = np.array([[np.nan, 1.0, np.inf]], dtype=np.float32)
case("NaN and Inf", "oip", [("v", "FP32", nan)], [("v", "FP32", nan.copy())], 0.0, 0.0, True)
case("dtype differs", "oip", [("v", "FP32", d.astype(np.float32))], [("v", "FP64", d)], 1.0, 0.0, False)

tp = probs(3, 4)
ts = tp.copy()
ts[0] = ts[0][::-1]
for content in (False, True):
    case(f"TF Serving PredictResponse, {'tensor_content' if content else 'float_val'}", "tf",
         [("scores", "FP32", tp), ("classes", "INT64", np.array([[1], [2], [2**55 + 1]], dtype=np.int64))],
         [("scores", "FP32", ts), ("classes", "INT64", np.array([[1], [2], [2**55 + 1]], dtype=np.int64))], 1e-6, 0.0, content)
case("TF Serving half_val", "tf", [("h", "FP16", h)], [("h", "FP16", h2)], 1e-3, 0.0, False)
case("TF Serving string_val", "tf", [("s", "BYTES", labels)], [("s", "BYTES", labels2)], 0.0, 0.0, False)

print(json.dumps({"comment": "Generated by scripts/tensor_reference.py (hand-encoded protobuf, numpy.isclose/argmax as the oracle). Do not edit by hand.", "cases": cases}, indent=1, ensure_ascii=False))
