//! Checks: recompute every field of an entry from that entry's inputs.

use super::*;

// ---------- checks: recompute each entry from its own inputs ----------

pub(super) fn check_kdf_rk(v: &KdfRk) {
    let (next, ck) = kdf_rk(&RootKey::from_bytes(unhex(&v.rk)), &unhex(&v.dh_out));
    assert_eq!(h(next.as_bytes()), v.rk_next);
    assert_eq!(h(ck.as_bytes()), v.ck);
}

pub(super) fn check_kdf_ck(v: &KdfCk) {
    let (next, mk) = kdf_ck(&ChainKey::from_bytes(unhex(&v.ck)));
    assert_eq!(h(next.as_bytes()), v.ck_next);
    assert_eq!(h(mk.as_bytes()), v.mk);
}

pub(super) fn check_aead(v: &AeadVec) {
    let mk = MessageKey::from_bytes(unhex(&v.mk));
    let ad = hex::decode(&v.ad).expect("hex");
    let header = hex::decode(&v.header).expect("hex");
    let pt = hex::decode(&v.plaintext).expect("hex");
    let ct = aead::seal(&mk, &ad, &header, &pt).expect("seal");
    assert_eq!(h(&ct), v.ciphertext);
    assert_eq!(aead::open(&mk, &ad, &header, &ct).expect("open"), pt);
}

pub(super) fn check_invite(v: &InviteVec) {
    let host = IdentityKeyPair::from_seed(&unhex(&v.host_seed)).expect("seed");
    let mut rng = FixedRng::new([
        hex::decode(&v.invite_id).expect("hex"),
        hex::decode(&v.opk_priv).expect("hex"),
    ]);
    let (invite, opk) =
        Invite::create(&host, &v.relay_url, v.expires_at, &mut rng).expect("create");
    assert_eq!(rng.remaining(), 0);
    assert_eq!(h(invite.id().as_bytes()), v.invite_id);
    assert_eq!(h(invite.opk_pub()), v.opk_pub);
    assert_eq!(h(opk.public()), v.opk_pub);
    assert_eq!(h(invite.signed_bytes()), v.signed_bytes);
    assert_eq!(
        h(signed_bytes(
            &invite.id(),
            &host.public(),
            &unhex(&v.opk_pub),
            v.expires_at,
            &v.relay_url
        )),
        v.signed_bytes
    );
    assert_eq!(h(invite.signature().as_bytes()), v.signature);
    let parsed = Invite::parse(&invite.encode()).expect("own string form parses");
    assert_eq!(parsed, invite);
}

pub(super) fn check_x3dh(v: &X3dhVec) {
    let guest = IdentityKeyPair::from_seed(&unhex(&v.guest_seed)).expect("seed");
    let host = IdentityKeyPair::from_seed(&unhex(&v.host_seed)).expect("seed");
    let opk = DhKeyPair::from_secret(unhex(&v.opk_priv)).expect("opk");
    let ek = DhKeyPair::from_secret(unhex(&v.ek_priv)).expect("ek");
    let g = guest_agree(&guest, &ek, &host.public(), &opk.public()).expect("guest");
    let hs = host_agree(&host, &opk, &guest.public(), &ek.public()).expect("host");
    assert_eq!(h(g.as_bytes()), v.sk);
    assert_eq!(h(hs.as_bytes()), v.sk);
    assert_eq!(h(associated_data(&guest.public(), &host.public())), v.ad);
}

/// What a replay observed, so the test can check the transcript exercises the cases
/// crypto-v1 requires.
#[derive(Default)]
pub(super) struct ReplayStats {
    pub(super) ratchet_steps: usize,
    pub(super) stored_key_decrypts: usize,
}

/// Replay one transcript. Sends happen in `messages` order and deliveries in
/// `deliver_order`; the next message is sent as soon as its header equals what its
/// sender would put on its next message (a party's sending header changes only when
/// it sends or ratchets, so this recovers the interleaving), otherwise the next
/// delivery happens.
pub(super) fn check_session(v: &SessionVec) -> ReplayStats {
    let guest_id = IdentityKeyPair::from_seed(&unhex(&v.guest_seed)).expect("seed");
    let host_id = IdentityKeyPair::from_seed(&unhex(&v.host_seed)).expect("seed");
    let opk = DhKeyPair::from_secret(unhex(&v.opk_priv)).expect("opk");
    let ek = DhKeyPair::from_secret(unhex(&v.ek_priv)).expect("ek");
    let ad = associated_data(&guest_id.public(), &host_id.public());
    let privs = |l: &Vec<String>| FixedRng::new(l.iter().map(|p| hex::decode(p).expect("hex")));
    let mut grng = privs(&v.guest_ratchet_privs);
    let mut hrng = privs(&v.host_ratchet_privs);
    let sk_g = guest_agree(&guest_id, &ek, &host_id.public(), &opk.public()).expect("x3dh");
    let sk_h = host_agree(&host_id, &opk, &guest_id.public(), &ek.public()).expect("x3dh");
    let mut guest = Ratchet::init_alice(sk_g, ad, opk.public(), &mut grng).expect("init");
    let mut host = Ratchet::init_bob(sk_h, ad, opk);

    let mut stats = ReplayStats::default();
    let (mut s, mut d) = (0, 0);
    while s < v.messages.len() || d < v.deliver_order.len() {
        if let Some(m) = v.messages.get(s) {
            let sender = if m.from == Party::Guest { &mut guest } else { &mut host };
            let want: [u8; 40] = unhex(&m.header);
            if sender.next_header().map(Header::to_bytes) == Some(want) {
                let (hdr, ct) =
                    sender.encrypt(&hex::decode(&m.plaintext).expect("hex")).expect("encrypt");
                assert_eq!(h(hdr), m.header, "message {s} header");
                assert_eq!(h(ct), m.ciphertext, "message {s} ciphertext");
                s += 1;
                continue;
            }
        }
        let k = *v.deliver_order.get(d).unwrap_or_else(|| panic!("message {s} can never be sent"));
        assert!(k < s, "message {k} delivered before it can have been sent");
        let m = &v.messages[k];
        let (r, rng): (&mut Ratchet, &mut dyn CryptoRng) = match m.from {
            Party::Guest => (&mut host, &mut hrng),
            Party::Host => (&mut guest, &mut grng),
        };
        let (dhs_before, skipped_before) = (r.ratchet_public(), r.skipped_len());
        let pt = r
            .decrypt(
                &hex::decode(&m.header).expect("hex"),
                &hex::decode(&m.ciphertext).expect("hex"),
                rng,
            )
            .unwrap_or_else(|e| panic!("delivery of message {k}: {e}"));
        assert_eq!(h(pt), m.plaintext, "message {k} plaintext");
        stats.ratchet_steps += usize::from(r.ratchet_public() != dhs_before);
        stats.stored_key_decrypts += usize::from(r.skipped_len() < skipped_before);
        d += 1;
    }
    assert_eq!(grng.remaining(), 0, "unused guest ratchet keys");
    assert_eq!(hrng.remaining(), 0, "unused host ratchet keys");
    stats
}

pub(super) fn has_reversed_pair(v: &SessionVec) -> bool {
    let o = &v.deliver_order;
    (0..o.len()).any(|p| {
        (p + 1..o.len()).any(|q| o[p] > o[q] && v.messages[o[p]].from == v.messages[o[q]].from)
    })
}
