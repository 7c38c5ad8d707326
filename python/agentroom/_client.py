"""The client: home and socket resolution, HTTP over AF_UNIX, typed answers, SSE."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

__all__ = [
    "AgentroomError",
    "DaemonNotRunning",
    "ApiError",
    "NotSupported",
    "connect",
    "resolve_home",
    "socket_path",
    "Client",
]

SOCKET_FILE = "agentroom.sock"
TOKEN_FILE = "http-token"
# `sun_path` holds 104 bytes on macOS including the NUL; the daemon keeps to 103
# and puts the socket of a longer home elsewhere (src/daemon/paths.rs).
MAX_SOCKET_PATH = 103
# Added to a request's own wait (next, send with wait_reply) for the socket timeout.
SLACK_SECS = 60.0


# ----------------------------------------------------------------------------- errors


class AgentroomError(Exception):
    """Every error this module raises."""


class DaemonNotRunning(AgentroomError):
    """No daemon answers on the home's socket (start one: ``agentroom daemon``)."""

    def __init__(self, path: str, cause: Optional[BaseException] = None) -> None:
        self.path = path
        why = f" ({cause.strerror or cause})" if isinstance(cause, OSError) else ""
        super().__init__(
            f"no agentroom daemon answers on {path}{why}; start one with `agentroom daemon`"
        )


class ApiError(AgentroomError):
    """The daemon answered with an HTTP error.

    ``status`` is the HTTP status, ``code`` the API's error class (``usage``,
    ``failure``, ``network``, ``no_session``; ``None`` without a JSON body) and
    ``message`` its sentence for a person.
    """

    def __init__(self, status: int, code: Optional[str], message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"HTTP {status}" + (f" {code}" if code else "") + f": {message}")


class NotSupported(ApiError):
    """The daemon has no such endpoint (an older agentroom)."""


# ----------------------------------------------------------------------------- paths


def resolve_home(home: Optional[str] = None) -> str:
    """The home directory as the CLI finds it: ``home`` (like ``--home``), else
    ``$AGENTROOM_HOME``, else ``$XDG_CONFIG_HOME/agentroom``, else
    ``~/.config/agentroom``."""
    if home is not None:
        return os.fspath(home)
    env = os.environ.get("AGENTROOM_HOME")
    if env:
        return env
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return os.path.join(xdg, "agentroom")
    user = os.environ.get("HOME")
    if not user:
        raise AgentroomError("cannot find a home directory: pass home= or set AGENTROOM_HOME")
    return os.path.join(user, ".config", "agentroom")


def socket_path(home: str) -> str:
    """The daemon's socket for ``home``: ``<home>/agentroom.sock``, or for a home
    whose path is too long for a socket address, the daemon's private fallback
    ``$XDG_RUNTIME_DIR/agentroom/<hash>.sock`` (``/tmp/agentroom-<uid>/`` without it)."""
    direct = os.path.join(home, SOCKET_FILE)
    if len(os.fsencode(direct)) <= MAX_SOCKET_PATH:
        return direct
    absolute = home if os.path.isabs(home) else os.path.join(os.getcwd(), home)
    digest = hashlib.sha256(os.fsencode(absolute)).hexdigest()[:16]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        base = os.path.join(runtime, "agentroom")
    else:
        base = os.path.join(tempfile.gettempdir(), f"agentroom-{os.getuid()}")
    return os.path.join(base, f"{digest}.sock")


# ----------------------------------------------------------------------------- transport


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix stream socket."""

    def __init__(self, path: str, timeout: Optional[float]) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


# ----------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class RelayLink:
    """One relay link of the daemon."""

    url: str
    up: bool
    last_error: Optional[str] = None


@dataclass(frozen=True)
class Status:
    """``GET /v1/status``."""

    pid: int
    home: str
    pk: str
    fingerprint: str
    relays: List[RelayLink]
    inbox_waiting: int
    inbox_leased: int
    outbox_pending: int
    http: Optional[str]
    raw: Dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Peer:
    """A paired peer (``GET /v1/peers``)."""

    pk: str
    fingerprint: str
    label: Optional[str]
    relay: str
    role: str
    safety_number: str
    verified: bool
    paired_at: int
    last_seen: Optional[int]
    unread: int
    expire_secs: Optional[int]


@dataclass(frozen=True)
class AckResult:
    """``POST /v1/messages/ack``: ``status`` is ``acked`` or ``already_acked``."""

    status: str
    reply_id: Optional[str]


@dataclass
class Message:
    """A received message; a leased one (from :meth:`Client.next`) has a
    ``lease_id`` and :meth:`ack`."""

    seq: int
    id: str
    sender: str
    fingerprint: str
    sent_at: int
    text: str
    label: Optional[str] = None
    reply_to: Optional[str] = None
    lease_id: Optional[str] = None
    lease_until: Optional[int] = None
    delivery: Optional[int] = None
    _client: Optional["Client"] = field(default=None, repr=False, compare=False)

    @classmethod
    def _from(cls, d: Dict[str, Any], client: Optional["Client"] = None) -> "Message":
        return cls(
            seq=d["seq"],
            id=d["id"],
            sender=d["from"],
            fingerprint=d["fingerprint"],
            sent_at=d["sent_at"],
            text=d["text"],
            label=d.get("label"),
            reply_to=d.get("reply_to"),
            lease_id=d.get("lease_id"),
            lease_until=d.get("lease_until"),
            delivery=d.get("delivery"),
            _client=client,
        )

    def ack(self, reply: Optional[str] = None) -> AckResult:
        """Consume this leased message, optionally answering it (at most once)."""
        if self._client is None or self.lease_id is None:
            raise AgentroomError("this message is not leased: only messages from next() can be acked")
        return self._client.ack(self.lease_id, reply=reply)


@dataclass(frozen=True)
class SendResult:
    """``POST /v1/send``: ``status`` is ``delivered``, ``stored`` or ``queued``;
    with ``wait_reply``, ``reply`` (already consumed) or ``reply_error``."""

    id: str
    to: str
    status: str
    reply: Optional[Message]
    reply_error: Optional[str]


@dataclass(frozen=True)
class Invite:
    """An invite this identity created (``GET /v1/invites``)."""

    id: str
    relay: str
    status: str
    created_at: int
    expires_at: int
    label: Optional[str]
    claimed_by: Optional[str]


@dataclass(frozen=True)
class InviteCreated:
    """``POST /v1/invites``: ``invite`` is the secret string to hand over."""

    id: str
    invite: str = field(repr=False)
    relay: str = ""
    expires_at: int = 0
    label: Optional[str] = None


@dataclass(frozen=True)
class InviteAccepted:
    """``POST /v1/invites/accept``: the host we paired with."""

    peer: str
    fingerprint: str
    safety_number: str
    relay: str
    label: Optional[str]


@dataclass(frozen=True)
class InviteRevoked:
    """``DELETE /v1/invites/{id}``."""

    id: str
    relay_confirmed: bool


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: ``event`` (its name, ``message`` when unnamed),
    ``data`` (lines joined by newlines), ``id`` (the last event id seen)."""

    event: str
    data: str
    id: Optional[str] = None

    def json(self) -> Any:
        """``data`` parsed as JSON (the daemon sends a ``DaemonEvent`` object)."""
        return json.loads(self.data)


# ----------------------------------------------------------------------------- SSE


class EventStream:
    """An iterator over ``GET /v1/events``; close it (or use ``with``) to stop."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self._pending = b""
        self._closed = False
        self._events = parse_sse(self._lines())

    def __iter__(self) -> "EventStream":
        return self

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; iteration then ends."""
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
            except OSError:
                pass
        self._resp.close()
        self._conn.close()

    def _lines(self) -> Iterator[str]:
        # SSE ends a line with CRLF, LF or CR.
        while True:
            try:
                chunk = self._resp.readline()
            except (OSError, ValueError, AttributeError, http.client.HTTPException) as e:
                if self._closed:
                    return
                raise AgentroomError(f"GET /v1/events: {e}") from e
            if not chunk:
                if self._pending:
                    line, self._pending = self._pending, b""
                    yield line.decode("utf-8", "replace")
                return
            buf = self._pending + chunk
            self._pending = b""
            parts = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            self._pending = parts.pop()
            for p in parts:
                yield p.decode("utf-8", "replace")

    def __next__(self) -> Event:
        return next(self._events)


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Parse SSE lines (without their line ends) into events: ``event``,
    ``data`` (several lines joined by newlines), ``id``; comments (``:``) and
    unknown fields are skipped, and a blank line ends an event."""
    name = ""
    data: List[str] = []
    last_id: Optional[str] = None
    for line in lines:
        if line == "":
            if data:
                yield Event(name or "message", "\n".join(data), last_id)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
        elif key == "id" and "\0" not in value:
            last_id = value


# ----------------------------------------------------------------------------- client


def _ms(secs: Optional[float]) -> Optional[int]:
    return None if secs is None else int(secs * 1000)


def _peer(d: Dict[str, Any]) -> Peer:
    return Peer(
        pk=d["pk"],
        fingerprint=d["fingerprint"],
        label=d.get("label"),
        relay=d["relay"],
        role=d["role"],
        safety_number=d["safety_number"],
        verified=d["verified"],
        paired_at=d["paired_at"],
        last_seen=d.get("last_seen"),
        unread=d["unread"],
        expire_secs=d.get("expire_secs"),
    )


class Invites:
    """Invite operations: ``client.invites.create()`` / ``accept()`` / ``list()`` / ``revoke()``."""

    def __init__(self, client: "Client") -> None:
        self._c = client

    def create(
        self,
        label: Optional[str] = None,
        relay: Optional[str] = None,
        ttl_secs: Optional[int] = None,
    ) -> InviteCreated:
        """Create a single-use invite and publish it to the relay."""
        body = {"label": label, "relay": relay, "ttl_secs": ttl_secs}
        d = self._c._request("POST", "/v1/invites", body)
        return InviteCreated(
            id=d["id"],
            invite=d["invite"],
            relay=d["relay"],
            expires_at=d["expires_at"],
            label=d.get("label"),
        )

    def accept(self, invite: str, label: Optional[str] = None) -> InviteAccepted:
        """Accept an invite string (``ar1.…``): pair with its host."""
        d = self._c._request("POST", "/v1/invites/accept", {"invite": invite, "label": label})
        return InviteAccepted(
            peer=d["peer"],
            fingerprint=d["fingerprint"],
            safety_number=d["safety_number"],
            relay=d["relay"],
            label=d.get("label"),
        )

    def list(self) -> List[Invite]:
        """Invites this identity created, oldest first."""
        d = self._c._request("GET", "/v1/invites")
        return [
            Invite(
                id=i["id"],
                relay=i["relay"],
                status=i["status"],
                created_at=i["created_at"],
                expires_at=i["expires_at"],
                label=i.get("label"),
                claimed_by=i.get("claimed_by"),
            )
            for i in d["invites"]
        ]

    def revoke(self, invite_id: str) -> InviteRevoked:
        """Revoke an open invite (by id or a unique prefix)."""
        path = "/v1/invites/" + urllib.parse.quote(invite_id, safe="")
        d = self._c._request("DELETE", path)
        return InviteRevoked(id=d["id"], relay_confirmed=d["relay_confirmed"])


class Client:
    """A connection to one home's daemon. Each call is one HTTP request on a
    fresh connection, so a client may be shared between threads."""

    def __init__(
        self,
        home: str,
        *,
        http: Optional[str] = None,
        timeout: float = 60.0,
    ) -> None:
        """``home``: the resolved home directory. ``http``: talk to the
        daemon's loopback listener (``agentroom daemon --http ADDR``) at this
        ``host:port`` with the bearer token in ``<home>/http-token``, instead
        of the Unix socket. ``timeout``: seconds per request (plus any wait the
        request itself asks for)."""
        self.home = home
        self.socket_path = socket_path(home)
        self.timeout = timeout
        self._http = http
        self._token: Optional[str] = None
        if http is not None:
            token_file = os.path.join(home, TOKEN_FILE)
            try:
                with open(token_file, encoding="utf-8") as f:
                    self._token = f.read().strip()
            except OSError as e:
                raise AgentroomError(
                    f"{token_file}: {e.strerror}; the daemon writes it when started with --http"
                ) from e
        self.invites = Invites(self)

    def __repr__(self) -> str:
        where = self._http if self._http is not None else self.socket_path
        return f"agentroom.Client({where!r})"

    # -- transport

    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._http is not None:
            host, _, port = self._http.rpartition(":")
            return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
        return _UnixConnection(self.socket_path, timeout)

    def _headers(self, body: Optional[bytes]) -> Dict[str, str]:
        h = {"Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if self._token is not None:
            h["Authorization"] = f"Bearer {self._token}"
        return h

    def _open(
        self, method: str, path: str, body: Optional[Dict[str, Any]], timeout: Optional[float]
    ) -> "tuple[http.client.HTTPConnection, http.client.HTTPResponse]":
        raw = None
        if body is not None:
            raw = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
        conn = self._connection(timeout)
        try:
            conn.request(method, path, body=raw, headers=self._headers(raw))
            resp = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as e:
            conn.close()
            raise DaemonNotRunning(self._http or self.socket_path, e) from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise AgentroomError(f"{method} {path}: {e}") from e
        if resp.status >= 400:
            try:
                payload = resp.read()
            finally:
                conn.close()
            raise _api_error(resp.status, payload)
        return conn, resp

    def _request(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]] = None,
        wait: float = 0.0,
    ) -> Any:
        conn, resp = self._open(method, path, body, self.timeout + wait)
        try:
            payload = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise AgentroomError(f"{method} {path}: {e}") from e
        finally:
            conn.close()
        try:
            return json.loads(payload)
        except ValueError as e:
            raise AgentroomError(f"{method} {path}: the daemon's answer is not JSON: {e}") from e

    # -- the API

    def status(self) -> Status:
        """The daemon: pid, identity, relay links, queue counts."""
        d = self._request("GET", "/v1/status")
        return Status(
            pid=d["pid"],
            home=d["home"],
            pk=d["pk"],
            fingerprint=d["fingerprint"],
            relays=[RelayLink(r["url"], r["up"], r.get("last_error")) for r in d["relays"]],
            inbox_waiting=d["inbox_waiting"],
            inbox_leased=d["inbox_leased"],
            outbox_pending=d["outbox_pending"],
            http=d.get("http"),
            raw=d,
        )

    def peers(self) -> List[Peer]:
        """Paired peers, with safety numbers and unread counts."""
        return [_peer(p) for p in self._request("GET", "/v1/peers")["peers"]]

    def verify_peer(
        self, peer: str, safety_number: Optional[str] = None, verified: bool = True
    ) -> Peer:
        """Mark ``peer`` verified after comparing the safety number out of band
        (``verified=False`` takes the mark away). With ``safety_number`` (what the
        other side read out), the mark is set only if it matches; otherwise the
        call fails and nothing changes."""
        body: Dict[str, Any] = {"peer": peer, "verified": verified}
        if safety_number is not None:
            body["safety_number"] = safety_number
        return _peer(self._request("POST", "/v1/peers/verify", body))

    def send(
        self,
        peer: str,
        text: str,
        wait_reply: Optional[float] = None,
        wait_sent: Optional[float] = None,
    ) -> SendResult:
        """Send ``text`` to ``peer`` (label, key, or a unique prefix). Returns once
        the relay holds it (or ``queued`` after ``wait_sent`` seconds, default 30).
        With ``wait_reply`` (seconds), also waits for the reply to this very
        message and returns it, consumed, in ``reply``."""
        body = {
            "peer": peer,
            "text": text,
            "wait_reply_ms": _ms(wait_reply),
            "wait_sent_ms": _ms(wait_sent),
        }
        wait = (wait_sent if wait_sent is not None else 30.0) + (wait_reply or 0.0)
        d = self._request("POST", "/v1/send", body, wait=wait)
        reply = d.get("reply")
        return SendResult(
            id=d["id"],
            to=d["to"],
            status=d["status"],
            reply=Message._from(reply) if reply else None,
            reply_error=d.get("reply_error"),
        )

    def next(
        self,
        lease_secs: float = 60.0,
        wait_secs: float = 0.0,
        from_peer: Optional[str] = None,
    ) -> Optional[Message]:
        """Lease the next unconsumed message, waiting up to ``wait_secs``; ``None``
        when none came. Ack it (``msg.ack()``) before ``lease_secs`` pass, or it
        is offered again."""
        body = {"lease_ms": _ms(lease_secs), "wait_ms": _ms(wait_secs), "from": from_peer}
        d = self._request("POST", "/v1/messages/next", body, wait=wait_secs)
        m = d.get("message")
        return Message._from(m, self) if m else None

    def ack(self, lease_id: str, reply: Optional[str] = None) -> AckResult:
        """Consume a leased message by its ``lease_id``, optionally with a reply
        sealed in the same transaction."""
        d = self._request("POST", "/v1/messages/ack", {"lease_id": lease_id, "reply": reply})
        return AckResult(status=d["status"], reply_id=d.get("reply_id"))

    def events(self, timeout: Optional[float] = None) -> EventStream:
        """Server-Sent Events (``GET /v1/events``): every daemon event, each an
        :class:`Event` whose ``json()`` is a ``DaemonEvent``. Observing never
        consumes a message. ``timeout``: seconds without a byte (the daemon
        sends a keep-alive comment every 15 s) before the socket read fails."""
        conn, resp = self._open("GET", "/v1/events", None, timeout)
        return EventStream(conn, resp)

    def history(
        self,
        peer: Optional[str] = None,
        since: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> Any:
        """``GET /v1/history`` (both directions, as the daemon stores them).
        Raises :class:`NotSupported` when the daemon has no history endpoint."""
        query = {k: v for k, v in (("peer", peer), ("since", since), ("limit", limit)) if v is not None}
        path = "/v1/history" + ("?" + urllib.parse.urlencode(query) if query else "")
        return self._request("GET", path)


def _api_error(status: int, payload: bytes) -> ApiError:
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ApiError(status, body.get("class"), body["error"])
    if status == 404:
        return NotSupported(status, None, "this daemon has no such endpoint (an older agentroom?)")
    text = payload.decode("utf-8", "replace").strip() or http.client.responses.get(status, "")
    return ApiError(status, None, text)


def connect(
    home: Optional[str] = None,
    *,
    http: Optional[str] = None,
    timeout: float = 60.0,
) -> Client:
    """A :class:`Client` for the daemon of ``home`` (resolved like the CLI's
    ``--home``: else ``$AGENTROOM_HOME``, else ``~/.config/agentroom``).

    Checks that a daemon answers and raises :class:`DaemonNotRunning` (with the
    socket path) when none does. ``http="127.0.0.1:PORT"`` uses the daemon's
    loopback listener (``agentroom daemon --http``) and the home's token file
    instead of the socket."""
    client = Client(resolve_home(home), http=http, timeout=timeout)
    client.status()
    return client
