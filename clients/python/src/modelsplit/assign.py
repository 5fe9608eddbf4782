"""The router's assignment rules: which model a user id goes to.

Two algorithms, exactly as the router runs them (``src/assign/`` in the router's repository):

``hash="rendezvous"`` (the default): weighted rendezvous hashing. For each model ``m``::

    h_m     = murmurhash3_x86_32(UTF-8 of "<salt>:<model>:<user id>", seed 0)
    score_m = -ln((h_m + 0.5) / 2**32) / weight_m

and the user goes to the lowest score (a weight of 0 never wins; exact ties go to the smaller
model name).

``hash="nginx"``: nginx's ``split_clients``. The key ``"<user id><salt>"`` is hashed with
MurmurHash2 (seed 0); each model's share becomes a percentage to 0.01% (cumulative boundaries
rounded), turned into cumulative uint32 thresholds in list order, and the last model with a
positive weight takes the rest (``*``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, Union

from ._hash import murmur2, murmur3_32, utf8

__all__ = ["Assigner", "assign", "explain", "HashAlgorithm", "SplitLike", "nginx_percents"]

HashAlgorithm = Literal["rendezvous", "nginx"]

#: A split as the config writes it: ``[("a", 90), ("b", 10)]``, ``[{"model": "a", "weight": 90}, ...]``
#: or a mapping ``{"a": 90, "b": 10}`` (in that order).
SplitLike = Union[Sequence[Union[tuple[str, float], Mapping[str, Any]]], Mapping[str, float]]

_TWO_32 = 4294967296.0
_BASIS = 10000  # 1 unit = 0.01%, the resolution of split_clients
_UINT32_MAX = 0xFFFFFFFF


def _normalise_split(split: SplitLike) -> tuple[tuple[str, float], ...]:
    items: Iterable[Any]
    if isinstance(split, Mapping):
        items = split.items()
    elif isinstance(split, (str, bytes)):
        raise TypeError("split must be a list of (model, weight) pairs or {'model', 'weight'} dicts")
    else:
        items = split
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            if "model" not in item or "weight" not in item:
                raise ValueError(f"split[{i}] must have 'model' and 'weight', got {dict(item)!r}")
            model, weight = item["model"], item["weight"]
        else:
            try:
                model, weight = item
            except (TypeError, ValueError):
                raise TypeError(f"split[{i}] must be a (model, weight) pair or a dict, got {item!r}") from None
        if not isinstance(model, str) or model == "":
            raise ValueError(f"split[{i}].model must be a non-empty string, got {model!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"split[{i}].weight must be a number, got {weight!r}")
        w = float(weight)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"split[{i}].weight must be a finite number >= 0, got {weight!r}")
        if model in seen:
            raise ValueError(f"split[{i}]: model {model!r} appears twice")
        seen.add(model)
        out.append((model, w))
    if not out:
        raise ValueError("split must list at least one (model, weight)")
    if not any(w > 0 for _, w in out):
        raise ValueError("at least one weight must be positive")
    return tuple(out)


def _user_id_text(user_id: Union[str, int]) -> str:
    if isinstance(user_id, str):
        return user_id
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        return str(user_id)  # as the router uses a numeric id from a JSON body: its decimal digits
    raise TypeError(f"user_id must be a str or an int, got {type(user_id).__name__}")


def _js_round(x: float) -> int:
    """JavaScript's Math.round for x >= 0: the nearest integer, halves up (Python's round() halves to even)."""
    f = math.floor(x)
    return int(f + 1 if x - f >= 0.5 else f)


def _format_percent(units: int) -> str:
    return f"{units // 100}.{units % 100:02d}"


class _NginxSplit:
    __slots__ = ("indices", "thresholds", "percents")

    def __init__(self, indices: list[int], thresholds: list[int], percents: list[str]) -> None:
        self.indices = indices
        self.thresholds = thresholds
        self.percents = percents


def _build_nginx(weights: Sequence[float]) -> _NginxSplit:
    live = [i for i, w in enumerate(weights) if w > 0]
    total = 0.0
    for i in live:
        total += weights[i]

    def too_small(index: int) -> ValueError:
        minimum = (total * 0.5) / _BASIS
        share = 100 * weights[index] / total
        return ValueError(
            f"weight {index} ({weights[index]:g}) is below nginx split_clients' 0.01% resolution "
            f"(share {share:.3g}%): raise it to about {minimum:.3g} or more, or set it to 0 to drop the model"
        )

    n = len(live)
    thresholds = [0] * n
    percents: list[str] = []
    cum_weight = 0.0
    boundary = 0
    last = 0
    for p, index in enumerate(live):
        if p == n - 1:
            if boundary >= _BASIS:
                raise too_small(index)
            percents.append("*")  # threshold 0: nginx's `*`
            break
        cum_weight += weights[index]
        nxt = min(_BASIS, _js_round((cum_weight * _BASIS) / total))
        percent = nxt - boundary
        if percent <= 0:
            raise too_small(index)
        boundary = nxt
        # ngx_conf_split_clients_block(): last += percent * (uint64_t) 0xffffffff / 10000
        last += (percent * _UINT32_MAX) // _BASIS
        thresholds[p] = last
        percents.append(_format_percent(percent) + "%")
    return _NginxSplit(live, thresholds, percents)


class Assigner:
    """One route's assignment table, built once; :meth:`assign` is then cheap per user id.

    >>> a = Assigner(salt="churn-2026-11", split=[("churn-v1", 90), ("churn-v2", 10)])
    >>> a.assign("alice")
    'churn-v2'
    """

    def __init__(self, *, salt: str, split: SplitLike, hash: HashAlgorithm = "rendezvous") -> None:
        if not isinstance(salt, str):
            raise TypeError(f"salt must be a str, got {type(salt).__name__}")
        if hash not in ("rendezvous", "nginx"):
            raise ValueError(f"hash must be 'rendezvous' or 'nginx', got {hash!r}")
        pairs = _normalise_split(split)
        self.salt: str = salt
        self.hash: HashAlgorithm = hash
        self.models: tuple[str, ...] = tuple(m for m, _ in pairs)
        self.weights: tuple[float, ...] = tuple(w for _, w in pairs)
        total = 0.0
        for w in self.weights:
            total += w
        shares = [w / total for w in self.weights]
        self._nginx: _NginxSplit | None = None
        if hash == "nginx":
            self._nginx = _build_nginx(self.weights)
            shares = [0.0] * len(self.weights)
            for pct, index in zip(self._nginx.percents, self._nginx.indices):
                shares[index] = 0.0 if pct == "*" else float(pct[:-1]) / 100
            star = self._nginx.indices[-1]
            shares[star] = max(0.0, 1 - sum(shares))
        #: Each model's share of users, 0..1 (nginx: the share its 0.01% percentage gives).
        self.shares: tuple[float, ...] = tuple(shares)
        self._prefixes = tuple(utf8(f"{salt}:{m}:") for m in self.models)
        # Ties (equal hashes and weights) go to the smaller name in JavaScript's UTF-16 order.
        self._order_keys = tuple(m.encode("utf-16-be", "surrogatepass") for m in self.models)

    @property
    def percents(self) -> tuple[str, ...] | None:
        """``hash="nginx"``: the ``split_clients`` percentages in list order (``"90.00%"``, ..., ``"*"``)."""
        return None if self._nginx is None else tuple(self._nginx.percents)

    def index(self, user_id: Union[str, int]) -> int:
        """Index (in split order) of the model ``user_id`` is assigned to."""
        text = _user_id_text(user_id)
        if self._nginx is not None:
            # One string, as the router builds it: the key is "<user id><salt>".
            return self._nginx_pick(murmur2(utf8(text + self.salt)))
        uid = utf8(text)
        best = -1
        best_score = math.inf
        for i, w in enumerate(self.weights):
            if w <= 0:
                continue
            h = murmur3_32(self._prefixes[i] + uid, 0)
            score = -math.log((h + 0.5) / _TWO_32) / w
            if score < best_score or (score == best_score and best >= 0 and self._order_keys[i] < self._order_keys[best]):
                best, best_score = i, score
        return best

    def assign(self, user_id: Union[str, int]) -> str:
        """The model ``user_id`` is assigned to."""
        return self.models[self.index(user_id)]

    def _nginx_pick(self, h: int) -> int:
        split = self._nginx
        assert split is not None
        for p, t in enumerate(split.thresholds):
            if h < t or t == 0:
                return split.indices[p]
        return -1  # pragma: no cover - a split built here always ends in `*`

    def explain(self, user_id: Union[str, int]) -> dict[str, Any]:
        """The numbers that decided the assignment, in the shape of the router's ``GET /admin/assign``
        (without ``route`` and ``user_id``): ``model``, ``index``, ``algorithm``, ``salt`` and per model
        its ``weight``, ``share``, hashed ``key`` and ``hash``, plus ``score`` (rendezvous; None for a
        weight of 0) or ``threshold`` and ``percent`` (nginx; absent for a weight of 0)."""
        text = _user_id_text(user_id)
        index = self.index(text)
        uid = utf8(text)
        candidates: list[dict[str, Any]] = []
        if self._nginx is None:
            for i, (model, w) in enumerate(zip(self.models, self.weights)):
                h = murmur3_32(self._prefixes[i] + uid, 0)
                score = -math.log((h + 0.5) / _TWO_32) / w if w > 0 else None
                candidates.append({"model": model, "weight": w, "share": self.shares[i],
                                   "key": f"{self.salt}:{model}:{text}", "hash": h, "score": score})
        else:
            split = self._nginx
            key = text + self.salt
            h = murmur2(utf8(key))
            for i, (model, w) in enumerate(zip(self.models, self.weights)):
                c: dict[str, Any] = {"model": model, "weight": w, "share": self.shares[i], "key": key, "hash": h}
                if i in split.indices:
                    p = split.indices.index(i)
                    c["threshold"] = split.thresholds[p]
                    c["percent"] = split.percents[p]
                candidates.append(c)
        return {"model": self.models[index], "index": index, "algorithm": self.hash, "salt": self.salt, "candidates": candidates}


@lru_cache(maxsize=256)
def _cached(salt: str, pairs: tuple[tuple[str, float], ...], hash: HashAlgorithm) -> Assigner:
    return Assigner(salt=salt, split=pairs, hash=hash)


def _assigner(salt: str, split: SplitLike, hash: HashAlgorithm) -> Assigner:
    return _cached(salt, _normalise_split(split), hash)


def assign(user_id: Union[str, int], *, salt: str, split: SplitLike, hash: HashAlgorithm = "rendezvous") -> str:
    """The model the router assigns ``user_id`` to on a route with this ``salt``, ``split`` and ``hash``.

    ``split`` is the route's split, in config order: ``[("churn-v1", 90), ("churn-v2", 10)]`` or
    ``[{"model": "churn-v1", "weight": 90}, ...]``. ``salt`` is the route's ``salt`` as the router
    uses it: when the config leaves it out, the route's name for ``rendezvous`` and ``""`` for
    ``nginx``. A numeric ``user_id`` is used as its decimal digits, as the router reads a number
    from a JSON body.

    >>> assign("alice", salt="churn-2026-11", split=[("churn-v1", 90), ("churn-v2", 10)])
    'churn-v2'

    For many ids, build an :class:`Assigner` once (this function caches the last 256 splits).
    """
    if not isinstance(salt, str):
        raise TypeError(f"salt must be a str, got {type(salt).__name__}")
    return _assigner(salt, split, hash).assign(user_id)


def explain(user_id: Union[str, int], *, salt: str, split: SplitLike, hash: HashAlgorithm = "rendezvous") -> dict[str, Any]:
    """What decided ``user_id``'s assignment (see :meth:`Assigner.explain`)."""
    if not isinstance(salt, str):
        raise TypeError(f"salt must be a str, got {type(salt).__name__}")
    return _assigner(salt, split, hash).explain(user_id)


def nginx_percents(split: SplitLike) -> list[str]:
    """The ``split_clients`` percentages the router writes for this split (``["90.00%", "*"]``).
    Raises ValueError for a positive weight below nginx's 0.01% resolution, as the router refuses it."""
    return list(_build_nginx([w for _, w in _normalise_split(split)]).percents)
