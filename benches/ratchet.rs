//! Double Ratchet throughput: `cargo bench --bench ratchet`.
//!
//! - `steady_chain_256B`: one encrypt + one decrypt of 256 bytes in a chain that does
//!   not ratchet (the common case: a burst of messages one way). Criterion's
//!   `thrpt` line for it is encrypt+decrypt pairs per second (target ≥ 100k/s).
//! - `dh_ratchet_step_256B`: a reply after a message from the other side, so the
//!   receiver performs a full DH ratchet step (two X25519, two KDF_RK, a keypair).

use std::hint::black_box;
use std::time::Duration;

use agentroom::crypto::{IdentityKeyPair, Invite, Session, SystemRng};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn pair() -> (Session, Session) {
    let guest_id = IdentityKeyPair::from_seed(&[1; 32]).expect("seed");
    let host_id = IdentityKeyPair::from_seed(&[2; 32]).expect("seed");
    let (invite, opk) =
        Invite::create(&host_id, "wss://bench.invalid/ws", u64::from(u32::MAX), &mut SystemRng)
            .expect("invite");
    let mut guest = Session::initiate(&guest_id, &invite, &mut SystemRng).expect("initiate");
    let first = guest.encrypt(b"hi", &mut SystemRng).expect("encrypt");
    let (mut host, _) = Session::respond(&host_id, &opk, &first, &mut SystemRng).expect("respond");
    let reply = host.encrypt(b"hello", &mut SystemRng).expect("encrypt");
    guest.decrypt(&reply, &mut SystemRng).expect("decrypt");
    (guest, host)
}

fn bench(c: &mut Criterion) {
    agentroom::crypto::init().expect("libsodium");
    let payload = [0x5au8; 256];
    let mut group = c.benchmark_group("ratchet");
    group.throughput(Throughput::Elements(1));

    let (mut guest, mut host) = pair();
    group.bench_function("steady_chain_256B", |b| {
        b.iter(|| {
            let body = guest.encrypt(black_box(&payload), &mut SystemRng).expect("encrypt");
            black_box(host.decrypt(&body, &mut SystemRng).expect("decrypt"))
        })
    });

    let (mut guest, mut host) = pair();
    let mut guest_turn = true;
    group.bench_function("dh_ratchet_step_256B", |b| {
        b.iter(|| {
            let (from, to) =
                if guest_turn { (&mut guest, &mut host) } else { (&mut host, &mut guest) };
            guest_turn = !guest_turn;
            let body = from.encrypt(black_box(&payload), &mut SystemRng).expect("encrypt");
            black_box(to.decrypt(&body, &mut SystemRng).expect("decrypt"))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
