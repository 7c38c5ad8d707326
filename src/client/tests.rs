//! The client as a library, the way `room open` drives it: an in-process relay
//! reached over loopback by the host while the invite names another URL, a serve
//! loop spawned as a task and stopped by its cancellation token.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::events::Event;
use super::home::Home;
use super::relay_url::RelayUrl;
use super::serve::{ServeOptions, serve};
use super::{Client, identity, invites, send};
use crate::handler::HandlerCommand;

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

    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/handlers/echo.sh");
    let opts = ServeOptions {
        handler: HandlerCommand::new(echo, Duration::from_secs(30)),
        seed: None,
        max_turns: None,
        once: false,
        concurrency: 2,
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    // Served in this task, as `room open` does (the emit callback need not be Send).
    let mut emit = move |ev| {
        let _ = tx.send(ev);
    };
    let serving = serve(&mut host, &opts, &mut emit);
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
                matches!(inc, super::Incoming::Sent { id, .. } if *id == ids[0]).then_some(Ok(()))
            })
            .await
            .unwrap();
        let mut guest2 = Client::open(&guest_home, cancel.child_token()).unwrap();
        guest2.sync(Duration::from_secs(60)).await.unwrap();
        let peer = super::store::get_peer(guest2.conn(), &host_pk).unwrap().unwrap();
        assert_eq!(peer.relay_url, moved_to.as_str());
        let out =
            send::send(&mut guest2, "host", "again", Some(Duration::from_secs(60))).await.unwrap();
        assert_eq!(out.reply.unwrap().text, "echo: again");

        cancel.cancel();
    };
    let (handled, ()) = tokio::join!(serving, guest_side);
    let handled = handled.unwrap();
    assert_eq!(handled, 2);
    let mut names = Vec::new();
    while let Ok(ev) = events.try_recv() {
        names.push(serde_json::to_value(&ev).unwrap()["event"].as_str().unwrap().to_owned());
        if let Event::Done { reason, .. } = ev {
            assert_eq!(reason, "cancelled");
        }
    }
    for want in ["connected", "paired", "message", "replied", "done"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    relay.shutdown().await;
}
