#!/usr/bin/env python3
"""Connection abuse against the customer API, for scripts/bench-api-abuse.sh (issue 15).

Holds IDLE connections open that never send a byte (reopening each one the server closes) and
runs SLOW slowloris connections that send a request head one byte per DRIP seconds and never
finish it (reopened likewise). Prints a JSON summary on SIGTERM/SIGINT: how many connections
were opened, how many the server closed, and how long the closed ones had lived.

usage: api_abuse.py HOST PORT [IDLE=500] [SLOW=20] [DRIP=1.0]
"""
import json, selectors, signal, socket, statistics, sys, time

host, port = sys.argv[1], int(sys.argv[2])
IDLE = int(sys.argv[3]) if len(sys.argv) > 3 else 500
SLOW = int(sys.argv[4]) if len(sys.argv) > 4 else 20
DRIP = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000

sel = selectors.DefaultSelector()
stats = {"idle": {"opened": 0, "closed_by_server": 0, "lifetimes": []},
         "slow": {"opened": 0, "closed_by_server": 0, "lifetimes": [], "bytes_sent": 0},
         "connect_errors": 0}
conns = {}  # sock -> [kind, opened_at, next_drip, offset]
stop = False

def on_signal(*_):
    global stop
    stop = True

signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)

def open_one(kind):
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError:
        stats["connect_errors"] += 1
        return
    s.setblocking(False)
    now = time.monotonic()
    conns[s] = [kind, now, now, 0]
    stats[kind]["opened"] += 1
    sel.register(s, selectors.EVENT_READ)

def closed(s):
    kind, opened, _, _ = conns.pop(s)
    sel.unregister(s)
    s.close()
    stats[kind]["closed_by_server"] += 1
    stats[kind]["lifetimes"].append(time.monotonic() - opened)
    open_one(kind)

for _ in range(IDLE):
    open_one("idle")
for _ in range(SLOW):
    open_one("slow")

while not stop:
    for key, _ in sel.select(timeout=0.1):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if not data:
            closed(s)
    now = time.monotonic()
    for s, st in list(conns.items()):
        if st[0] == "slow" and now >= st[2]:
            try:
                s.send(HEAD[st[3]:st[3] + 1])
                st[3] += 1
                stats["slow"]["bytes_sent"] += 1
            except OSError:
                closed(s)
                continue
            st[2] = now + DRIP
    # keep the population up if connects failed earlier
    for kind, want in (("idle", IDLE), ("slow", SLOW)):
        have = sum(1 for v in conns.values() if v[0] == kind)
        for _ in range(want - have):
            open_one(kind)

out = {"open_at_end": {"idle": sum(1 for v in conns.values() if v[0] == "idle"),
                       "slow": sum(1 for v in conns.values() if v[0] == "slow")},
       "connect_errors": stats["connect_errors"]}
for kind in ("idle", "slow"):
    lt = stats[kind]["lifetimes"]
    out[kind] = {"opened": stats[kind]["opened"],
                 "closed_by_server": stats[kind]["closed_by_server"],
                 "median_lifetime_s": round(statistics.median(lt), 2) if lt else None}
print(json.dumps(out))
