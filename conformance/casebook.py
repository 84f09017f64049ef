"""The conformance cases (cases.json) as the runner and the Python peers read
them: finding a role's steps, building payloads, and summarising received
messages the way every peer reports them.  conformance/README.md is the
description of the format; the C, Go and Java peers implement the same rules.
"""

import hashlib
import json
import struct
import uuid
from pathlib import Path

DEFAULT_FILE = Path(__file__).resolve().with_name("cases.json")

# The operations a step may hold; exactly one per step.
OPS = ("put", "expect", "echo", "close", "drain", "sleep", "reopen", "identity")

# libnq's error codes by the names observations use.
ERROR_NAMES = {
    0: "ok", -1: "invalid", -2: "no_memory", -3: "timeout", -4: "closed",
    -5: "connection_reset", -6: "no_peer", -7: "tls", -8: "protocol", -9: "refused",
    -10: "address", -11: "address_in_use", -12: "not_supported", -13: "system",
    -14: "full", -15: "serialize", -16: "pending", -17: "replaced", -18: "canceled", -19: "auth",
}

# At most this many messages per sender are listed one by one in a summary
# (the digest covers all of them), each with its first ITEM_PREFIX bytes.
ITEMS_MAX = 16
ITEM_PREFIX = 8

_PATTERN = bytes(range(251))


def error_name(code):
    """The observation name of a libnq error code."""
    return ERROR_NAMES.get(code, f"error{code}")


def load(path=None):
    """The case book: cases.json parsed."""
    with open(path or DEFAULT_FILE, encoding="utf-8") as f:
        return json.load(f)


def find(book, name):
    """The case called name; KeyError when there is none."""
    for case in book["cases"]:
        if case["name"] == name:
            return case
    raise KeyError(f"no case named {name!r}")


def client_groups(case):
    """The case's client groups, each with its label and count filled in."""
    groups = []
    for group in case.get("clients", []):
        filled = dict(group)
        filled.setdefault("label", "client")
        filled.setdefault("count", 1)
        groups.append(filled)
    return groups


def steps_of(case, role, part=None):
    """The steps of role ("server" or "client") in case; for a client, those
    of the group labelled part (the first group when part is empty)."""
    if role == "server":
        return case["server"]
    groups = client_groups(case)
    if not part:
        return groups[0]["steps"]
    for group in groups:
        if group["label"] == part:
            return group["steps"]
    raise KeyError(f"case {case['name']!r} has no client group {part!r}")


def op_of(step):
    """The operation a step holds."""
    ops = [op for op in OPS if op in step]
    if len(ops) != 1:
        raise ValueError(f"a step holds exactly one of {OPS}: {step}")
    return ops[0]


def expect_count(step, clients):
    """How many messages an expect step takes: a number, or per_client times
    the number of clients in the run."""
    count = step["expect"]
    if isinstance(count, dict):
        return count["per_client"] * clients
    return count


def pattern(size):
    """size bytes where byte i is i % 251."""
    return (_PATTERN * (size // 251 + 1))[:size]


def payload(spec, self_id, to_id=None):
    """The bytes of a payload spec, built by the sender self_id for the
    receiver to_id (which "{to}" names; empty when the put has no single
    receiver)."""
    if "text" in spec:
        text = spec["text"].replace("{self}", str(self_id))
        text = text.replace("{to}", "" if to_id is None else str(to_id))
        return text.encode()
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    if "size" in spec:
        return pattern(spec["size"])
    if spec.get("own_id"):
        return uuid.UUID(str(self_id)).bytes
    raise ValueError(f"unknown payload spec {spec}")


def message(base, index):
    """A message built from payload bytes: with a repeat, message index k
    starts with k as 8 big-endian bytes."""
    return base if index is None else struct.pack(">Q", index) + base


def digest_update(h, data):
    """Adds one message to a running digest: its length as 8 big-endian
    bytes, then its bytes (so order and boundaries both count)."""
    h.update(struct.pack(">Q", len(data)))
    h.update(data)


class Tally:
    """Received messages grouped by sender, in order of each sender's first
    message: a count, a digest and the first few items per sender."""

    def __init__(self):
        self._groups = {}

    def add(self, peer, data):
        group = self._groups.get(peer)
        if group is None:
            group = self._groups[peer] = {"count": 0, "hash": hashlib.sha256(), "items": []}
        group["count"] += 1
        digest_update(group["hash"], data)
        if len(group["items"]) < ITEMS_MAX:
            group["items"].append([len(data), bytes(data[:ITEM_PREFIX]).hex()])

    def summary(self):
        return [
            {"peer": str(peer), "count": g["count"], "digest": g["hash"].hexdigest(), "items": g["items"]}
            for peer, g in self._groups.items()
        ]
