//! Generators: fixed inputs in, vector entries out. `salt` prefixes every label the
//! inputs are derived from: `""` gives the committed files, anything else a different
//! but equally valid set (what another implementation's vectors look like to us).

use super::*;

// ---------- generators ----------

pub(super) fn gen_kdf_rk(salt: &str) -> Vec<KdfRk> {
    (0..4)
        .map(|i| {
            let rk = RootKey::from_bytes(det_s(salt, "kdf_rk/rk", i));
            let dh = det_s(salt, "kdf_rk/dh_out", i);
            let (next, ck) = kdf_rk(&rk, &dh);
            KdfRk {
                rk: h(rk.as_bytes()),
                dh_out: h(dh),
                rk_next: h(next.as_bytes()),
                ck: h(ck.as_bytes()),
            }
        })
        .collect()
}

pub(super) fn gen_kdf_ck(salt: &str) -> Vec<KdfCk> {
    // Entry 0 starts from all zeros; the rest continue one chain, as a ratchet would.
    let mut out = Vec::new();
    let mut ck = ChainKey::from_bytes([0; 32]);
    for i in 0..4 {
        if i == 1 {
            ck = ChainKey::from_bytes(det_s(salt, "kdf_ck/ck", 1));
        }
        let (next, mk) = kdf_ck(&ck);
        out.push(KdfCk { ck: h(ck.as_bytes()), ck_next: h(next.as_bytes()), mk: h(mk.as_bytes()) });
        ck = next;
    }
    out
}

pub(super) fn gen_aead(salt: &str) -> Vec<AeadVec> {
    let cases: [(usize, usize, Vec<u8>); 4] = [
        (64, 40, b"hello, agentroom".to_vec()),
        (64, 40, Vec::new()),
        (0, 0, b"no associated data at all".to_vec()),
        (3, 7, (0..=255u8).cycle().take(300).collect()),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (ad_len, hdr_len, pt))| {
            let i = u32::try_from(i).expect("few cases");
            let mk = MessageKey::from_bytes(det_s(salt, "aead/mk", i));
            let ad: Vec<u8> = det_s(salt, "aead/ad", i)
                .iter()
                .chain(det_s(salt, "aead/ad2", i).iter())
                .copied()
                .take(ad_len)
                .collect();
            let header: Vec<u8> = det_s(salt, "aead/header", i)
                .iter()
                .chain(det_s(salt, "aead/header2", i).iter())
                .copied()
                .take(hdr_len)
                .collect();
            let ct = aead::seal(&mk, &ad, &header, &pt).expect("seal");
            AeadVec {
                mk: h(mk.as_bytes()),
                ad: h(ad),
                header: h(header),
                plaintext: h(pt),
                ciphertext: h(ct),
            }
        })
        .collect()
}

pub(super) fn gen_invite(salt: &str) -> Vec<InviteVec> {
    let cases = [
        (1_767_225_600u64, "wss://relay.example.com/ws"),
        ((1u64 << 53) - 1, "https://a-long-tunnel-name.trycloudflare.com"),
        (1, "ws://127.0.0.1:8787/ws?q=ünïcødé"),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (expires_at, url))| {
            let i = u32::try_from(i).expect("few cases");
            let seed = det_s(salt, "invite/host_seed", i);
            let host = IdentityKeyPair::from_seed(&seed).expect("seed");
            let mut rng = RecordingRng::new(&format!("{salt}invite/rng/{i}"));
            let (invite, _opk) = Invite::create(&host, url, expires_at, &mut rng).expect("create");
            InviteVec {
                host_seed: h(seed),
                invite_id: h(invite.id().as_bytes()),
                opk_priv: h(&rng.drawn[1]),
                opk_pub: h(invite.opk_pub()),
                expires_at,
                relay_url: url.to_owned(),
                signed_bytes: h(invite.signed_bytes()),
                signature: h(invite.signature().as_bytes()),
            }
        })
        .collect()
}

pub(super) fn gen_x3dh(salt: &str) -> Vec<X3dhVec> {
    (0..3)
        .map(|i| {
            let guest_seed = det_s(salt, "x3dh/guest_seed", i);
            let host_seed = det_s(salt, "x3dh/host_seed", i);
            let opk_priv = det_s(salt, "x3dh/opk_priv", i);
            let ek_priv = det_s(salt, "x3dh/ek_priv", i);
            let guest = IdentityKeyPair::from_seed(&guest_seed).expect("seed");
            let host = IdentityKeyPair::from_seed(&host_seed).expect("seed");
            let opk = DhKeyPair::from_secret(opk_priv).expect("opk");
            let ek = DhKeyPair::from_secret(ek_priv).expect("ek");
            let sk = guest_agree(&guest, &ek, &host.public(), &opk.public()).expect("x3dh");
            X3dhVec {
                guest_seed: h(guest_seed),
                host_seed: h(host_seed),
                opk_priv: h(opk_priv),
                ek_priv: h(ek_priv),
                sk: h(sk.as_bytes()),
                ad: h(associated_data(&guest.public(), &host.public())),
            }
        })
        .collect()
}

// ---------- session transcripts ----------

/// One step of a generator script: a party sends its next message, or message `k`
/// (index in send order) is delivered to the other party.
#[derive(Clone, Copy)]
enum Step {
    G,
    H,
    D(usize),
}
use Step::{D, G, H};

/// Three transcripts. Each has ≥12 messages both ways, several DH ratchet steps,
/// reversed pairs, lost messages and decrypts with stored skipped keys (including a
/// key skipped from the *old* chain during a DH ratchet step, via `pn`).
fn scripts() -> Vec<Vec<Step>> {
    vec![
        // Host gets g2 first (skips g0, g1), then g0 from the store; guest gets h4 before
        // h3; g1 arrives last from the store. No loss.
        vec![
            G,
            G,
            G,
            D(2),
            D(0),
            H,
            H,
            D(4),
            D(3),
            G,
            G,
            G,
            D(5),
            D(7),
            D(6),
            H,
            D(8),
            G,
            D(9),
            H,
            H,
            D(11),
            D(10),
            G,
            D(12),
            D(1),
        ],
        // h2 and h8 are lost; guest stores h1/h2, host stores g4; late deliveries use them.
        vec![
            G,
            D(0),
            H,
            H,
            H,
            D(3),
            G,
            G,
            D(5),
            H,
            D(6),
            D(1),
            G,
            D(7),
            D(4),
            H,
            H,
            H,
            D(10),
            G,
            G,
            D(12),
            D(11),
            D(9),
            H,
            D(13),
        ],
        // The host's ratchet step on g5 skips g1 of the old chain (pn = 2 > nr = 1) and
        // g3, g4 of the new one; h7 arrives only at the very end.
        vec![
            G,
            G,
            D(0),
            H,
            D(2),
            G,
            G,
            G,
            D(5),
            D(3),
            H,
            H,
            H,
            D(8),
            D(6),
            G,
            D(9),
            D(1),
            D(4),
            H,
            D(10),
            G,
            D(11),
            G,
            D(12),
            D(7),
        ],
    ]
}

fn plaintext_for(i: usize, k: usize, from: Party) -> Vec<u8> {
    match k % 5 {
        // An empty message is legal and must still authenticate.
        3 => Vec::new(),
        4 => format!("{from:?} #{k} of transcript {i}: {}", "~".repeat(100)).into_bytes(),
        _ => format!("{from:?} message {k} (transcript {i})").into_bytes(),
    }
}

pub(super) fn gen_session(salt: &str) -> Vec<SessionVec> {
    scripts()
        .into_iter()
        .enumerate()
        .map(|(i, script)| {
            let label = |what: &str| format!("{salt}session/{i}/{what}");
            let ix = u32::try_from(i).expect("few");
            let guest_seed = det_s(salt, "session/guest_seed", ix);
            let host_seed = det_s(salt, "session/host_seed", ix);
            let opk_priv = det_s(salt, "session/opk_priv", ix);
            let ek_priv = det_s(salt, "session/ek_priv", ix);
            let guest_id = IdentityKeyPair::from_seed(&guest_seed).expect("seed");
            let host_id = IdentityKeyPair::from_seed(&host_seed).expect("seed");
            let opk = DhKeyPair::from_secret(opk_priv).expect("opk");
            let ek = DhKeyPair::from_secret(ek_priv).expect("ek");
            let ad = associated_data(&guest_id.public(), &host_id.public());
            let mut grng = RecordingRng::new(&label("guest"));
            let mut hrng = RecordingRng::new(&label("host"));
            let sk_g = guest_agree(&guest_id, &ek, &host_id.public(), &opk.public()).expect("x3dh");
            let sk_h = host_agree(&host_id, &opk, &guest_id.public(), &ek.public()).expect("x3dh");
            let mut guest = Ratchet::init_alice(sk_g, ad, opk.public(), &mut grng).expect("init");
            let mut host = Ratchet::init_bob(sk_h, ad, opk.clone());
            let mut messages: Vec<MessageVec> = Vec::new();
            let mut deliver_order = Vec::new();
            for step in script {
                match step {
                    G | H => {
                        let from = if matches!(step, G) { Party::Guest } else { Party::Host };
                        let pt = plaintext_for(i, messages.len(), from);
                        let r = if from == Party::Guest { &mut guest } else { &mut host };
                        let (hdr, ct) = r.encrypt(&pt).expect("encrypt");
                        messages.push(MessageVec {
                            from,
                            plaintext: h(&pt),
                            header: h(hdr),
                            ciphertext: h(ct),
                        });
                    }
                    D(k) => {
                        let m = &messages[k];
                        let (r, rng): (&mut Ratchet, &mut dyn CryptoRng) = match m.from {
                            Party::Guest => (&mut host, &mut hrng),
                            Party::Host => (&mut guest, &mut grng),
                        };
                        let hdr = hex::decode(&m.header).expect("hex");
                        let ct = hex::decode(&m.ciphertext).expect("hex");
                        let pt = r.decrypt(&hdr, &ct, rng).expect("scripted delivery decrypts");
                        assert_eq!(h(pt), m.plaintext);
                        deliver_order.push(k);
                    }
                }
            }
            SessionVec {
                guest_seed: h(guest_seed),
                host_seed: h(host_seed),
                opk_priv: h(opk_priv),
                ek_priv: h(ek_priv),
                guest_ratchet_privs: grng.drawn.iter().map(h).collect(),
                host_ratchet_privs: hrng.drawn.iter().map(h).collect(),
                messages,
                deliver_order,
            }
        })
        .collect()
}
