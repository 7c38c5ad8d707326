#!/usr/bin/env python3
"""The web view in a real headless Chromium, against real processes.

Two homes paired through a real relay (the agentroom binary for everything):
home A runs `daemon --http --on-message echo.sh` and is viewed in the browser
through the URL `agentroom ui --print-url` prints; home B runs `listen --json`
and sends with `agentroom send`.

Driver: chromedriver over the W3C WebDriver protocol, spoken with the standard
library's urllib (plain HTTP + JSON): no pip package, no browser download, and
the same Debian packages (`chromium`, `chromium-driver`) locally and in CI.

Usage: tests/ui/browser_test.py path/to/agentroom   (screenshots: target/ui-screenshots/)
"""

import base64
import json
import os
import queue
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/agentroom"))
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
SHOTS = os.path.join(ROOT, "target", "ui-screenshots")
WAIT = 20.0  # generous: a loaded 2-core CI machine

procs = []


def log(msg):
    print(f"ui-test: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, home=None):
    cmd = [BIN] + (["--home", home] if home else []) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr}")
    return out.stdout


def spawn(*args, home=None, **kw):
    cmd = [BIN] + (["--home", home] if home else []) + list(args)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def lines_of(pipe):
    """Every stdout line of a child, on a queue (a reader thread)."""
    q = queue.Queue()

    def pump():
        for line in pipe:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def wait_for(what, fn, timeout=WAIT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # keep polling; show the last error on timeout
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


class JsonLines:
    """NDJSON events of a child process, kept for later lookups."""

    def __init__(self, q):
        self.q, self.seen = q, []

    def find(self, pred, what, timeout=WAIT):
        def look():
            while True:
                try:
                    line = self.q.get_nowait()
                except queue.Empty:
                    break
                try:
                    self.seen.append(json.loads(line))
                except ValueError:
                    pass
            return next((e for e in self.seen if pred(e)), None)

        return wait_for(what, look, timeout)


def http(method, url, headers=None, body=None):
    """A raw request: (status, headers, body bytes); errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Browser:
    """A W3C WebDriver session on chromedriver."""

    def __init__(self, profile):
        self.port = free_port()
        self.driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        procs.append(self.driver)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for("chromedriver", lambda: http("GET", self.base + "/status")[0] == 200)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync",
                            "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                            "--window-size=1200,1060",
                        ],
                    },
                }
            }
        }
        self.sid = self.cmd("POST", "/session", caps)["sessionId"]

    def cmd(self, method, path, body=None):
        url = self.base + path
        status, _, raw = http(method, url, body=body if body is not None else ({} if method == "POST" else None))
        value = json.loads(raw or b"{}").get("value")
        if status != 200:
            raise WebDriverError(status, value)
        return value

    def s(self, method, path, body=None):
        return self.cmd(method, f"/session/{self.sid}{path}", body)

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        v = self.s("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(v.values()))

    def type(self, css, text):
        self.s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css):
        self.s("POST", f"/element/{self.find(css)}/click")

    def alert_open(self):
        try:
            self.s("GET", "/alert/text")
            return True
        except WebDriverError as e:
            if e.status == 404:
                return False
            raise

    def quit(self):
        try:
            self.s("DELETE", "")
        except Exception:
            pass


class WebDriverError(Exception):
    def __init__(self, status, value):
        super().__init__(f"WebDriver {status}: {value}")
        self.status = status


def png_is_not_blank(path):
    """A real PNG whose pixels are not all one colour (decoded with zlib)."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos : pos + 8])
        chunk = raw[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    pixels = zlib.decompress(idat)
    distinct = len(set(pixels[:: max(1, len(pixels) // 200000)]))
    assert width >= 300 and height >= 300, f"tiny screenshot {width}x{height}"
    assert distinct > 16, f"blank screenshot ({distinct} distinct byte values)"
    return width, height


def main():
    tmp = tempfile.mkdtemp(prefix="agentroom-ui-")
    home_a, home_b, relay_home = (os.path.join(tmp, d) for d in ("a", "b", "relay"))
    os.makedirs(relay_home)
    browser = None
    try:
        # A real relay on a free port.
        relay = spawn("relay", "--port", "0", "--json", "--home", relay_home,
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        relay_ev = JsonLines(lines_of(relay.stdout)).find(lambda e: e.get("event") == "listening", "relay")
        url = relay_ev["url"]
        run("setup", "--relay", url, home=home_a)
        run("setup", "--relay", url, home=home_b)
        invite = next(
            json.loads(l)["invite"] for l in run("--json", "invite", "create", "--label", "bob", home=home_a).splitlines()
            if '"invite"' in l and json.loads(l).get("invite")
        )
        run("invite", "accept", "--label", "alice", invite, home=home_b)

        # Home A: the daemon with loopback HTTP and a handler; home B listens.
        http_port = free_port()
        # The echo handler, except that text starting "fail" makes it fail.
        echo = os.path.join(tmp, "handler.sh")
        with open(echo, "w") as f:
            f.write('#!/bin/sh\ntext=$(cat)\ncase "$text" in fail*) echo "no can do" >&2; exit 3;; esac\n'
                    'printf "echo: %s\\n" "$text"\n')
        os.chmod(echo, 0o755)
        spawn("daemon", "--http", f"127.0.0.1:{http_port}", "--on-message", echo, home=home_a,
              stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "daemon-a.log"), "w"))
        wait_for("daemon A", lambda: '"running":true' in run("--json", "status", home=home_a).replace(" ", ""))
        listen_b = spawn("--json", "listen", home=home_b, stdout=subprocess.PIPE,
                         stderr=open(os.path.join(tmp, "listen-b.log"), "w"), text=True)
        b_events = JsonLines(lines_of(listen_b.stdout))
        b_events.find(lambda e: e.get("event") == "connected", "B connected")

        base = f"http://127.0.0.1:{http_port}"
        token = open(os.path.join(home_a, "http-token")).read().strip()
        bearer = {"Authorization": f"Bearer {token}"}
        peers = json.loads(http("GET", base + "/v1/peers", bearer)[2])["peers"]
        bob = next(p for p in peers if p["label"] == "bob")

        # `agentroom ui` asks the running daemon for a one-time link.
        link = run("ui", "--print-url", home=home_a).strip()
        assert link.startswith(base + "/ui/#code="), link
        code = link.split("#code=", 1)[1]

        # Security checks with plain HTTP.
        st, hdr, _ = http("GET", base + "/ui/")
        assert st == 200 and "default-src 'self'" in hdr.get("Content-Security-Policy", ""), hdr
        assert "'unsafe-inline'" not in hdr["Content-Security-Policy"]
        assert http("GET", base + "/v1/status")[0] == 401, "no cookie/token must be refused"
        assert http("GET", base + "/v1/status", {**bearer, "Host": "evil.example"})[0] == 403, "foreign Host"
        assert http("GET", base + "/ui/", {"Host": "evil.example:80"})[0] == 403, "foreign Host on the page"
        assert http("GET", base + "/v1/status", {"Cookie": f"agentroom_ui_{http_port}=" + "0" * 64})[0] == 401
        assert http("POST", base + "/ui/login", {"X-Agentroom": "1", "Origin": "http://evil.example"},
                    {"code": code})[0] == 403, "login from a foreign Origin"

        # The browser opens the printed link and logs in with its code.
        profile = os.path.join(tmp, "chromium-profile")
        browser = Browser(profile)
        browser.s("POST", "/url", {"url": link})
        wait_for("page ready", lambda: browser.js("return document.body.dataset.ready === '1'"))
        href = browser.js("return location.href")
        assert "code" not in href, f"the login code stayed in the address bar: {href}"
        sn = wait_for("safety number", lambda: browser.js("return document.getElementById('pc-sn').textContent"))
        assert sn == bob["safety_number"], (sn, bob["safety_number"])
        peer_text = browser.js("return document.getElementById('peers').textContent")
        assert "bob" in peer_text and bob["fingerprint"] in peer_text, peer_text
        # One-time: the code the page used does not work again.
        st, _, _ = http("POST", base + "/ui/login", {"X-Agentroom": "1", "Origin": base}, {"code": code})
        assert st == 401, f"second use of the login code gave {st}"

        # The session cookie is HttpOnly + SameSite=Strict; with it, reads pass and
        # writes need the custom header and this origin.
        cookies = browser.s("GET", "/cookie")
        ck = next(c for c in cookies if c["name"].startswith("agentroom_ui_"))
        assert ck["httpOnly"] and ck.get("sameSite") == "Strict", ck
        assert browser.js("return document.cookie") == "", "the session cookie must not be readable by JS"
        jar = {"Cookie": f"{ck['name']}={ck['value']}"}
        assert http("GET", base + "/v1/status", jar)[0] == 200
        assert http("POST", base + "/v1/handler/pause", {**jar, "X-Agentroom": "1",
                    "Origin": "http://evil.example"}, {})[0] == 403, "foreign Origin on a write"
        assert http("POST", base + "/v1/handler/pause", {**jar, "Origin": base}, {})[0] == 403, "no X-Agentroom"
        assert http("POST", base + "/v1/handler/pause", {**jar, "X-Agentroom": "1"}, {})[0] == 403, "no Origin"
        assert json.loads(http("GET", base + "/v1/handler", jar)[2])["paused"] is False

        in_texts = "return [...document.querySelectorAll('#log li.msg.in .text')].map(e => e.textContent)"
        out_texts = "return [...document.querySelectorAll('#log li.msg.out .text')].map(e => e.textContent)"

        # A message from B appears without reload; the handler's answer shows too.
        t0 = time.monotonic()
        run("send", "alice", "hello from B", home=home_b)
        wait_for("B's message in the page", lambda: "hello from B" in browser.js(in_texts), timeout=10)
        log(f"B's message shown {time.monotonic() - t0:.2f}s after `send` started")
        wait_for("the handler's reply in the page", lambda: "echo: hello from B" in browser.js(out_texts))
        wait_for("answered mark", lambda: "answered" in browser.js(
            "return document.querySelector('#log li.msg.in .result').textContent"))

        # A failing handler run shows its exit code and stderr tail.
        run("send", "alice", "fail this one", home=home_b)
        wait_for("handler failure shown", lambda: browser.js(
            "const li=[...document.querySelectorAll('#log li.msg.in')].find(l=>l.querySelector('.text').textContent==='fail this one');"
            "const r=li && li.querySelector('.result.failed'); return r && r.textContent.includes('exit code 3') && r.textContent.includes('no can do')"))

        # Typing in the send box + Enter delivers to B.
        browser.click("#compose-text")
        browser.type("#compose-text", "hi from the page\ue007")
        got = b_events.find(lambda e: e.get("text") == "hi from the page", "B got the page's message")
        wait_for("delivery state", lambda: browser.js(
            "const li=[...document.querySelectorAll('#log li.msg.out')].find(l=>l.querySelector('.text').textContent==='hi from the page');"
            "return li && ['delivered','stored'].includes(li.querySelector('.state').textContent)"))
        assert got["id"]

        # Pause: the message waits, leased to nobody; resume releases it.
        browser.click("#pause")
        wait_for("paused", lambda: json.loads(http("GET", base + "/v1/handler", jar)[2])["paused"])
        run("send", "alice", "while paused", home=home_b)
        wait_for("paused message in the page", lambda: "while paused" in browser.js(in_texts))
        wait_for("message waiting", lambda: json.loads(http("GET", base + "/v1/status", bearer)[2])["inbox_waiting"] >= 1)
        time.sleep(2.0)  # a window in which a handler that ignored the pause would answer
        st = json.loads(http("GET", base + "/v1/status", bearer)[2])
        assert st["inbox_waiting"] >= 1 and st["inbox_leased"] == 0, st
        assert not any(e.get("text") == "echo: while paused" for e in b_events.seen), "answered while paused"
        browser.click("#pause")
        b_events.find(lambda e: e.get("text") == "echo: while paused", "reply after resume")

        # The switch follows a pause set by another client (the `paused` and
        # `resumed` events on the stream the page listens to).
        checked = "return document.querySelector('#pause').checked"
        assert http("POST", base + "/v1/handler/pause", bearer, {})[0] == 200
        wait_for("the page's switch to show the pause", lambda: browser.js(checked) is True)
        assert http("POST", base + "/v1/handler/resume", bearer, {})[0] == 200
        wait_for("the page's switch to show the resume", lambda: browser.js(checked) is False)

        # Untrusted text stays text.
        evil = "<img src=x onerror=alert(1)>"
        run("send", "alice", evil, home=home_b)
        wait_for("the literal message", lambda: evil in browser.js(in_texts))
        wait_for("its echo", lambda: "echo: " + evil in browser.js(out_texts))
        assert browser.js("return document.querySelectorAll('#log img').length") == 0
        assert not browser.alert_open(), "a script ran"

        # The "verified" mark is the one `agentroom peers verify` sets: shown in
        # the page, in `peers --json` and in the API's PeerInfo.
        browser.click("#pc-verified")
        wait_for("verified mark", lambda: "verified" in browser.js(
            "return document.querySelector('#peers .verified')?.textContent || ''"))
        listed = [json.loads(l) for l in run("--json", "peers", home=home_a).splitlines()]
        assert next(p for p in listed if p["pk"] == bob["pk"])["verified"] is True, listed
        api_peers = json.loads(http("GET", base + "/v1/peers", bearer)[2])["peers"]
        assert next(p for p in api_peers if p["pk"] == bob["pk"])["verified"] is True, api_peers
        browser.click("#pc-verified")
        wait_for("mark removed", lambda: not any(
            p["pk"] == bob["pk"] and p["verified"]
            for p in json.loads(http("GET", base + "/v1/peers", bearer)[2])["peers"]))

        # Screenshot of the conversation.
        os.makedirs(SHOTS, exist_ok=True)
        shot = os.path.join(SHOTS, "conversation.png")
        with open(shot, "wb") as f:
            f.write(base64.b64decode(browser.s("GET", "/screenshot")))
        w, h = png_is_not_blank(shot)
        log(f"screenshot {shot} ({w}x{h})")
        # Narrow window: still usable (no horizontal scrolling of the page).
        browser.s("POST", "/window/rect", {"width": 420, "height": 800})
        overflow = browser.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"page scrolls sideways by {overflow}px at 420px"
        with open(os.path.join(SHOTS, "narrow.png"), "wb") as f:
            f.write(base64.b64decode(browser.s("GET", "/screenshot")))
        log("ok")
    finally:
        if browser:
            browser.quit()
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if os.environ.get("UI_TEST_KEEP"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
