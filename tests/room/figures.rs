//! Figures, not assertions: how long `room open` takes to be ready, and to stop.
//! Run by hand: `cargo test --test room figures -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::fixtures::{RoomProc, fake_with_modes};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "prints figures; run by hand"]
#[allow(clippy::print_stdout)]
fn room_open_ready_and_stop_latency() {
    for tunnel in ["none", "cloudflared"] {
        let (mut ready, mut stop) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            let dir = tempfile::tempdir().unwrap();
            let fake = fake_with_modes(&dir.path().join("fake"), "serve", "serve");
            let fake = fake.display().to_string();
            let start = Instant::now();
            let mut room = RoomProc::start(
                &dir.path().join("host"),
                &["room", "open", "--tunnel", tunnel, "--on-message", "cat"],
                &[("CLOUDFLARED_BIN", fake.as_str())],
            );
            room.wait_event("room_ready");
            ready.push(start.elapsed());
            let t = Instant::now();
            room.signal(Signal::SIGTERM);
            room.wait_exit();
            stop.push(t.elapsed());
        }
        println!(
            "room open --tunnel {tunnel}: ready in {:?} (median of 7, fresh home), stopped in {:?}",
            median(ready),
            median(stop)
        );
    }
}
