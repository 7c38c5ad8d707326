//! Valid starting inputs for each target, built with the crate's own types so they
//! follow the wire format as it is today.

use agentroom::crypto::{IdentityKeyPair, IdentityPublicKey, Invite, SystemRng};
use agentroom::protocol::frames::InviteIdClaim;
use agentroom::protocol::{
    ClientFrame, DeliveryStatus, EnvelopeId, ErrorCode, InviteHash, ServerFrame, encode_frame,
};

fn pk(n: u8) -> IdentityPublicKey {
    IdentityKeyPair::from_seed(&[n; 32]).unwrap().public()
}

/// One encoding of every client and relay frame type.
pub(crate) fn frames() -> Vec<Vec<u8>> {
    let client = [
        ClientFrame::Login { v: 1, identity: pk(1), ts: 1_700_000_000, signature: [7; 64] },
        ClientFrame::Resume { v: 1, token: "v1.abc.def".into() },
        ClientFrame::Send { id: EnvelopeId([1; 16]), to: pk(2), body: vec![1, 2, 3], claim: None },
        ClientFrame::Send {
            id: EnvelopeId([2; 16]),
            to: pk(2),
            body: vec![0; 40],
            claim: Some(InviteIdClaim([3; 16])),
        },
        ClientFrame::Ack { id: EnvelopeId([1; 16]), from: pk(3) },
        ClientFrame::InvitePublish {
            rid: Some("r1".into()),
            invite: InviteHash([4; 32]),
            expires_at: 1_800_000_000,
        },
        ClientFrame::InviteRevoke { rid: None, invite: InviteHash([5; 32]) },
        ClientFrame::PeerRevoke { rid: Some("p".into()), peer: pk(4) },
        ClientFrame::Ping { rid: Some("x".into()) },
    ];
    let server = [
        ServerFrame::Challenge {
            protocol: "agentroom/relay/v1".into(),
            versions: vec![1],
            challenge: [9; 32],
            max_frame: 65_536,
        },
        ServerFrame::Welcome {
            identity: pk(1),
            token: "v1.abc.def".into(),
            token_expires_at: 1_800_000_000,
            pending: 2,
            server_time: 1_700_000_000,
        },
        ServerFrame::Sent { id: EnvelopeId([1; 16]), status: DeliveryStatus::Stored },
        ServerFrame::Deliver { id: EnvelopeId([1; 16]), from: pk(2), body: vec![5; 20], ts: 1 },
        ServerFrame::Ok { rid: Some("r1".into()) },
        ServerFrame::Presence { peer: pk(2), online: true },
        ServerFrame::Pong { rid: None },
        ServerFrame::Error {
            code: ErrorCode::QueueFull,
            message: "queue full".into(),
            id: Some(EnvelopeId([1; 16])),
            rid: None,
        },
    ];
    let mut out: Vec<Vec<u8>> = client.iter().map(|f| encode_frame(f).into_bytes()).collect();
    out.extend(server.iter().map(|f| encode_frame(f).into_bytes()));
    out
}

/// A few real invites, with short and long relay URLs.
pub(crate) fn invites() -> Vec<Vec<u8>> {
    ["ws://127.0.0.1:8787/ws", "wss://relay.example.com/ws", "wss://[::1]:443/a/b?c=d"]
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let host = IdentityKeyPair::from_seed(&[i as u8 + 1; 32]).unwrap();
            let (invite, _) = Invite::create(&host, url, 4_000_000_000, &mut SystemRng).unwrap();
            invite.encode().into_bytes()
        })
        .collect()
}

/// One input per mode of `decrypt_body` (the first byte picks it); mode 3 with a
/// zero mask is the genuine body itself.
pub(crate) fn bodies() -> Vec<Vec<u8>> {
    vec![vec![3, 0], vec![3, 0, 0, 0, 0]]
}
