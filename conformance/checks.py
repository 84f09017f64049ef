"""Comparing what a peer observed in a run with what its steps in the case
say it must observe."""

import hashlib
from dataclasses import dataclass, field

import casebook


@dataclass
class Party:
    """One role in one run of a case."""

    name: str          # "server (c)", "client 2 (go)"
    role: str          # "server" or "client"
    language: str
    id: object         # uuid.UUID
    group: dict = field(default_factory=dict)  # the client group; empty for the server

    @property
    def impl(self):
        return "netqueue" if self.language == "netqueue" else "libnq"


def wanted(step, key, default, party):
    """The expectation key of a step for this party: "key@netqueue" wins
    for the net-queue peer, "key@libnq" for the others."""
    return step.get(f"{key}@{party.impl}", step.get(key, default))


def _senders(ref, parties):
    if ref == "server":
        return [p for p in parties if p.role == "server"]
    if ref == "clients":
        return [p for p in parties if p.role == "client"]
    return [p for p in parties if p.role == "client" and p.group.get("label") == ref]


def expected_messages(items, receiver, parties):
    """Sender id -> the messages the receiver must get from it, in order."""
    out = {}
    for item in items:
        for sender in _senders(item["from"], parties):
            base = casebook.payload(item["data"], sender.id, receiver.id)
            sequence = out.setdefault(sender.id, [])
            repeat = item.get("repeat")
            if repeat is None:
                sequence.append(base)
            else:
                sequence.extend(casebook.message(base, k) for k in range(repeat))
    return out


def _summary(sequence):
    h = hashlib.sha256()
    for data in sequence:
        casebook.digest_update(h, data)
    items = [[len(d), d[:casebook.ITEM_PREFIX].hex()] for d in sequence[:casebook.ITEMS_MAX]]
    return {"count": len(sequence), "digest": h.hexdigest(), "items": items}


def _describe_items(items):
    return ", ".join(f"{n} bytes {prefix or '-'}" for n, prefix in items[:4]) + (" ..." if len(items) > 4 else "")


def compare_messages(observed, items, receiver, parties):
    """Problems with the messages a receiver got (the "from" of an expect or
    drain observation), sender by sender."""
    names = {str(p.id): p.name for p in parties}
    want = {str(sender): _summary(seq) for sender, seq in expected_messages(items, receiver, parties).items()}
    got = {g["peer"]: g for g in observed or []}
    problems = []
    for sender, summary in want.items():
        who = names.get(sender, sender)
        group = got.get(sender)
        if group is None:
            problems.append(f"nothing from {who}, want {summary['count']} messages")
        elif group["count"] != summary["count"]:
            problems.append(f"{group['count']} messages from {who}, want {summary['count']} "
                            f"(got {_describe_items(group['items'])})")
        elif group["digest"] != summary["digest"]:
            at = next((i for i, (g, w) in enumerate(zip(group["items"], summary["items"])) if g != w), None)
            where = (f"; message {at + 1} is {group['items'][at][0]} bytes {group['items'][at][1]}, "
                     f"want {summary['items'][at][0]} bytes {summary['items'][at][1]}") if at is not None else ""
            problems.append(f"the {group['count']} messages from {who} differ in content or order{where}")
    for sender, group in got.items():
        if sender not in want:
            problems.append(f"{group['count']} unexpected messages from {names.get(sender, sender)} "
                            f"({_describe_items(group['items'])})")
    return problems


def compare_identities(observed, items, parties):
    """Problems with the identities a peer reported for the peers it knows
    (the "peers" of an identity observation): every party an item names by
    "of" must be there, its identity holding the item's "contains"."""
    names = {str(p.id): p.name for p in parties}
    got = {entry["peer"]: entry.get("identity", "") for entry in observed or []}
    problems = []
    for item in items:
        for party in _senders(item["of"], parties):
            identity = got.get(str(party.id))
            if identity is None:
                problems.append(f"no identity reported for {party.name}")
            elif item["contains"] not in identity:
                problems.append(f"the identity of {party.name} is {identity!r}, "
                                f"want one holding {item['contains']!r}")
    unknown = [names.get(peer, peer) for peer in got if peer not in names]
    if unknown:
        problems.append(f"identities reported for peers of no party: {', '.join(unknown)}")
    return problems


def _result_problem(observed, want, what):
    result = observed.get("result")
    if result == want:
        return []
    detail = f" ({observed['detail']})" if observed.get("detail") else ""
    return [f"{what}: {result}{detail}, want {want}"]


def check_party(party, steps, events, parties, clients):
    """Problems with one party's run: every step reported, each as wanted."""
    problems = []
    by_step = {}
    for event in events:
        if "step" in event:
            by_step[event["step"]] = event
        elif event.get("event") in ("error", "exit"):
            problems.append(f"{event['event']}: {event.get('detail', '')}".strip())
    if not any(e.get("event") in ("done", "exit") for e in events):
        problems.append("did not finish in time")
    opened = by_step.get(-1)
    if opened is None:
        return problems + ["no report of its open"]
    if opened.get("result") != "ok":
        if opened.get("result") == party.group.get("open_may_fail"):
            return problems
        return problems + _result_problem(opened, "ok", "open")
    for index, step in enumerate(steps):
        op = casebook.op_of(step)
        observed = by_step.get(index)
        what = f"step {index + 1} ({op})"
        if observed is None:
            problems.append(f"{what}: not reported")
            continue
        if op in ("put", "echo"):
            problems += _result_problem(observed, wanted(step, "result", "ok", party), what)
        elif op == "expect":
            found = compare_messages(observed.get("from"), wanted(step, "messages", [], party), party, parties)
            if found or observed.get("result") != "ok":
                count = casebook.expect_count(step, clients)
                found.insert(0, f"got {observed.get('count')} of {count} "
                                f"({observed.get('result')}{': ' + observed['detail'] if observed.get('detail') else ''})")
            problems += [f"{what}: {p}" for p in found]
        elif op == "close":
            problems += _result_problem(observed, wanted(step, "result", "ok", party), what)
            least = step.get("min_ms")
            if least is not None and observed.get("ms", 0) < least:
                problems.append(f"{what}: returned after {observed.get('ms')} ms, want at least {least}")
        elif op == "drain":
            found = compare_messages(observed.get("from"), wanted(step, "messages", [], party), party, parties)
            end = wanted(step, "end", "closed", party)
            if observed.get("end") != end:
                found.append(f"ended with {observed.get('end')} ({observed.get('detail', '')}), want {end}")
            problems += [f"{what}: {p}" for p in found]
        elif op == "identity":
            problems += _result_problem(observed, "ok", what)
            problems += [f"{what}: {p}" for p in compare_identities(
                observed.get("peers"), wanted(step, "identities", [], party), parties)]
        elif op == "reopen":
            problems += _result_problem(observed, "ok", what)
            if observed.get("close", "ok") != "ok":
                problems.append(f"{what}: its close gave {observed['close']}, want ok")
    return problems
