//! `room open --tunnel bore` through a real bore server (the bore-cli library,
//! in-process, on 127.0.0.1): a guest pairs and talks through the hop.
//!
//! bore's control port is fixed (7835). Test binaries of this crate run one after
//! another, but several checkouts may test at once on one machine: the server is
//! held under an exclusive lock on `/tmp/agentroom-bore-7835.lock` (tests/children
//! should take the same lock).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::fixtures::{RoomProc, echo_handler, guest_accepts, guest_round_trip, public_key};

const CONTROL_PORT: u16 = 7835;
const SECRET: &str = "room-test-bore-secret";
const LOCK: &str = "/tmp/agentroom-bore-7835.lock";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_talks_through_a_bore_tunnel() {
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK).unwrap();
    tokio::task::block_in_place(|| lock.lock()).unwrap();
    let mut server = bore_cli::server::Server::new(20000..=60000, Some(SECRET));
    server.set_bind_addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
    server.set_bind_tunnels(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let _server = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        if let Err(e) = server.listen().await {
            panic!("bore server failed (is port {CONTROL_PORT} taken?): {e}");
        }
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", CONTROL_PORT)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "bore server never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    tokio::task::block_in_place(|| {
        let dir = tempfile::tempdir().unwrap();
        let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
        let handler = echo_handler();
        let mut room = RoomProc::start(
            &home,
            &[
                "room",
                "open",
                "--tunnel",
                "bore",
                "--bore-server",
                "127.0.0.1",
                "--on-message",
                &handler,
            ],
            &[("BORE_SECRET", SECRET)],
        );
        let ready = room.wait_event("room_ready");
        assert_eq!(ready["tunnel"], "bore");
        let relay = ready["relay"].as_str().unwrap();
        assert!(relay.starts_with("ws://127.0.0.1:"), "{ready}");
        assert_ne!(ready["relay"], ready["local_url"], "the guest goes through bore");
        assert!(room.stderr().contains("bore tunnel up"));
        assert!(!room.stderr().contains(SECRET), "the bore secret is never logged");
        let accepted = guest_accepts(&guest, ready["invite"].as_str().unwrap());
        assert_eq!(accepted["relay"], relay);
        let reply = guest_round_trip(&guest, &public_key(&home), "over bore");
        assert_eq!(reply, "echo: over bore");
        room.signal(Signal::SIGTERM);
        assert_eq!(room.wait_exit(), 143);
    });
}
