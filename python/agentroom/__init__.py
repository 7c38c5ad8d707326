"""A small client for the agentroom daemon's local API (standard library only).

``agentroom daemon`` owns a home's relay link and inbox and answers HTTP/1.1
JSON on the Unix socket ``<home>/agentroom.sock`` (see ``protocol/openapi.json``).
This module speaks that API::

    import agentroom

    room = agentroom.connect()            # --home / AGENTROOM_HOME / ~/.config/agentroom
    print(room.status().fingerprint)
    room.send("bob", "hello")
    msg = room.next(lease_secs=60, wait_secs=30)
    if msg is not None:
        msg.ack(reply="got it")
    for ev in room.events():              # Server-Sent Events, until closed
        print(ev.event, ev.data)

Errors are :class:`AgentroomError` and its subclasses :class:`DaemonNotRunning`
(no daemon answers on the socket; carries the path) and :class:`ApiError`
(an HTTP error answer: ``status``, ``code``, ``message``).
"""

from ._client import (
    AckResult,
    AgentroomError,
    ApiError,
    Client,
    DaemonNotRunning,
    Event,
    Invite,
    InviteAccepted,
    InviteCreated,
    InviteRevoked,
    Invites,
    Message,
    NotSupported,
    Peer,
    RelayLink,
    SendResult,
    Status,
    connect,
    resolve_home,
    socket_path,
)

__all__ = [
    "AckResult",
    "AgentroomError",
    "ApiError",
    "Client",
    "DaemonNotRunning",
    "Event",
    "Invite",
    "InviteAccepted",
    "InviteCreated",
    "InviteRevoked",
    "Invites",
    "Message",
    "NotSupported",
    "Peer",
    "RelayLink",
    "SendResult",
    "Status",
    "connect",
    "resolve_home",
    "socket_path",
]
