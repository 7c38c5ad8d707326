//! The client as a library: an in-process relay reached over loopback by the
//! host while the invite names another URL, the host answering in a loop of its
//! own that its cancellation token stops.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::home::Home;
use super::payload::Payload;
use super::relay_url::RelayUrl;
use super::{Client, Incoming, identity, invites, send, store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_flow_with_in_process_relay_and_dial_override() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config =
        crate::relay::RelayConfig::new("127.0.0.1:0".parse().unwrap(), tmp.path().join("relay.db"));
    config.rate_limit = false;
    let relay = crate::relay::start(config).await.unwrap();
    let port = relay.local_addr().port();
    // What a tunnel would hand out, and where the host really dials.
    let public = RelayUrl::parse(&format!("http://localhost:{port}")).unwrap();
    let loopback = RelayUrl::parse(&relay.ws_url()).unwrap();

    let (host_home, guest_home) = (Home::at(tmp.path().join("h")), Home::at(tmp.path().join("g")));
    identity::load_or_create(&host_home).unwrap();
    identity::load_or_create(&guest_home).unwrap();
    let cancel = CancellationToken::new();
    let mut host = Client::open(&host_home, cancel.child_token()).unwrap();
    host.set_dial_override(&public, loopback);
    let created =
        invites::create(&mut host, &public, Duration::from_secs(600), Some("guest".into()))
            .await
            .unwrap();
    assert_eq!(created.row.relay_url, "ws://localhost:".to_owned() + &port.to_string() + "/ws");

    // The host answers every text with "echo: <text>": reply queued and the
    // message marked done before the relay gets its ack (store-then-ack).
    let serving = async {
        let mut handled = 0u64;
        let mut names = Vec::new();
        host.connect_all().unwrap();
        while let Some(inc) = host.next().await.unwrap() {
            names.push(match &inc {
                Incoming::Up { .. } => "connected",
                Incoming::Paired { .. } => "paired",
                Incoming::Message { .. } => "message",
                Incoming::Sent { .. } => "sent",
                _ => "other",
            });
            let Incoming::Message { relay, row, .. } = inc else { continue };
            let peer = store::get_peer(host.conn(), &row.peer).unwrap().unwrap();
            let text = format!("echo: {}", row.text);
            host.queue(&peer, &Payload::Text { text, reply_to: Some(row.id) }, None).unwrap();
            store::inbox_done(host.conn(), row.seq).unwrap();
            host.ack(&relay, &row.peer, &row.id);
            handled += 1;
        }
        (handled, names)
    };
    let guest_side = async {
        let mut guest = Client::open(&guest_home, cancel.child_token()).unwrap();
        let accepted =
            invites::accept(&mut guest, &created.row.encoded, Some("host".into())).await.unwrap();
        assert_eq!(accepted.peer.relay_url, created.row.relay_url);
        let out =
            send::send(&mut guest, "host", "ping", Some(Duration::from_secs(60))).await.unwrap();
        assert_eq!(out.reply.unwrap().text, "echo: ping");

        // The host's relay gets a new URL (here: the loopback spelling of the same
        // relay); the guest is told through the old one and keeps talking.
        let moved_to = RelayUrl::parse(&relay.ws_url()).unwrap();
        let host_pk = accepted.peer.pk;
        drop(guest);
        let mut host2 = Client::open(&host_home, cancel.child_token()).unwrap();
        host2.set_dial_override(&public, RelayUrl::parse(&relay.ws_url()).unwrap());
        let ids = host2.announce_relay_moved(&public, &moved_to).unwrap();
        assert_eq!(ids.len(), 1);
        host2
            .wait_for(Duration::from_secs(60), "sent", |_, inc| {
                matches!(inc, Incoming::Sent { id, .. } if *id == ids[0]).then_some(Ok(()))
            })
            .await
            .unwrap();
        let mut guest2 = Client::open(&guest_home, cancel.child_token()).unwrap();
        guest2.sync(Duration::from_secs(60)).await.unwrap();
        let peer = store::get_peer(guest2.conn(), &host_pk).unwrap().unwrap();
        assert_eq!(peer.relay_url, moved_to.as_str());
        let out =
            send::send(&mut guest2, "host", "again", Some(Duration::from_secs(60))).await.unwrap();
        assert_eq!(out.reply.unwrap().text, "echo: again");

        cancel.cancel();
    };
    let ((handled, names), ()) = tokio::join!(serving, guest_side);
    assert_eq!(handled, 2);
    for want in ["connected", "paired", "message", "sent"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    relay.shutdown().await;
}
