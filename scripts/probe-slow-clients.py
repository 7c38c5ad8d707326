#!/usr/bin/env python3
"""Slow-client probe for the relay (issue 12 item 4): slowloris and /health under load.

Starts `agentroom relay` on loopback with a low open-file limit, opens N slowloris
connections from 127.0.0.1 (a partial request, one more header line every 2 s),
and meanwhile asks /health from another loopback address (127.0.0.2). Reports how
many slow connections the relay closed within the hold time and how many /health
requests were answered. Loopback only; bounded in count and time.

    python3 scripts/probe-slow-clients.py --bin target/debug/agentroom
    python3 scripts/probe-slow-clients.py --bin target/debug/agentroom --slow 1100 --nofile 1024

The relay inherits this environment: MAX_UNUPGRADED_PER_IP=100000 takes the
per-address cap out, leaving the header-read timeout and the EMFILE back-off.
Measured (1100 slow, 50 /health, ulimit -n 1024, 14 s): previous relay 0 closed,
0 of 50; this relay 1100 closed, 50 of 50; without the cap 1012 closed (the rest
were still in the listen backlog), 46 of 50.
"""

import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time


def start_relay(binary, db, nofile, both, env_extra):
    def limit():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile if both else hard))

    env = dict(os.environ, LOG_LEVEL="error", **env_extra)
    env.pop("PORT", None)
    env.pop("BIND", None)
    proc = subprocess.Popen(
        [binary, "relay", "--json", "--port", "0", "--db", db],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, preexec_fn=limit,
    )
    line = json.loads(proc.stdout.readline())
    return proc, line["port"]


def health(port, timeout):
    try:
        s = socket.socket()
        s.settimeout(timeout)
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        data = s.recv(64)
        s.close()
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/agentroom")
    ap.add_argument("--slow", type=int, default=1100, help="slowloris connections")
    ap.add_argument("--health", type=int, default=50, help="/health requests during the hold")
    ap.add_argument("--hold", type=float, default=15.0, help="seconds to keep trickling")
    ap.add_argument("--nofile", type=int, default=1024, help="the relay's open-file limit")
    ap.add_argument("--soft-only", action="store_true",
                    help="lower only the soft limit (the relay may raise it back)")
    ap.add_argument("--header-timeout-ms", type=int, default=None,
                    help="HEADER_READ_TIMEOUT_MS for the relay (default: its own)")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    extra = {}
    if a.header_timeout_ms is not None:
        extra["HEADER_READ_TIMEOUT_MS"] = str(a.header_timeout_ms)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_relay(a.bin, os.path.join(tmp, "relay.db"), a.nofile,
                                 not a.soft_only, extra)
        try:
            sel = selectors.DefaultSelector()
            opened = 0
            for _ in range(a.slow):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, {"sent": False})
                opened += 1
            closed = 0
            start = time.monotonic()
            next_trickle = start
            health_every = a.hold / max(a.health, 1)
            next_health = start + 1.0
            asked = answered = 0
            while time.monotonic() - start < a.hold:
                now = time.monotonic()
                trickle = now >= next_trickle
                if trickle:
                    next_trickle = now + 2.0
                for key, ev in sel.select(timeout=0.05):
                    s = key.fileobj
                    if ev & selectors.EVENT_READ:
                        try:
                            data = s.recv(4096)
                        except OSError:
                            data = b""
                        if not data:
                            sel.unregister(s)
                            s.close()
                            closed += 1
                            continue
                    if ev & selectors.EVENT_WRITE and not key.data["sent"]:
                        try:
                            s.send(b"GET /health HTTP/1.1\r\nHost: slow\r\n")
                        except OSError:
                            pass
                        key.data["sent"] = True
                        sel.modify(s, selectors.EVENT_READ, key.data)
                if trickle:
                    for key in list(sel.get_map().values()):
                        try:
                            key.fileobj.send(b"X-Slow: 1\r\n")
                        except OSError:
                            pass
                if asked < a.health and now >= next_health:
                    asked += 1
                    answered += health(port, 2.0)
                    next_health = now + health_every
            while asked < a.health:
                asked += 1
                answered += health(port, 2.0)
            print(f"slowloris: relay closed {closed} of {opened} slow connections within {a.hold:.0f} s")
            print(f"/health from another address during the flood: {answered} of {asked} answered")
            print(f"(relay open-file limit {a.nofile}, {'soft only' if a.soft_only else 'soft and hard'})")
            for key in list(sel.get_map().values()):
                key.fileobj.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
