#!/usr/bin/env python3
"""Independent check of protocol/vectors/*.json, written from shared/crypto-v1.md and
PROTOCOL.md section 2 without using the Rust code: Python `cryptography` for Ed25519,
X25519 and ChaCha20-Poly1305, hashlib/hmac for SHA-256/HKDF, a hand-written HChaCha20
for XChaCha20, and the Ed25519->X25519 maps written out.

Run: python3 protocol/vectors/reference_check.py [protocol/vectors]
"""
import json, hashlib, hmac, struct, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization as ser
D = sys.argv[1] if len(sys.argv) > 1 else __import__("os").path.dirname(__file__)
P = 2**255 - 19
raw = dict(encoding=ser.Encoding.Raw, format=ser.PublicFormat.Raw)
def hkdf(salt, ikm, info, L):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < L:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest(); out += t; i += 1
    return out[:L]
def ed_pub(seed): return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(**raw)
def ed_sign(seed, m): return Ed25519PrivateKey.from_private_bytes(seed).sign(m)
def ed_pk_to_x(pk):
    y = int.from_bytes(pk, 'little') & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, 'little')
def ed_sk_to_x(seed):
    h = bytearray(hashlib.sha512(seed).digest()[:32]); h[0] &= 248; h[31] &= 127; h[31] |= 64
    return bytes(h)
def xpub(priv): return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(**raw)
def dh(priv, pub):
    o = X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(pub))
    assert o != bytes(32); return o
def rotl(v, c): return ((v << c) & 0xffffffff) | (v >> (32 - c))
def qr(s, a, b, c, d):
    s[a]=(s[a]+s[b])&0xffffffff; s[d]=rotl(s[d]^s[a],16); s[c]=(s[c]+s[d])&0xffffffff; s[b]=rotl(s[b]^s[c],12)
    s[a]=(s[a]+s[b])&0xffffffff; s[d]=rotl(s[d]^s[a],8);  s[c]=(s[c]+s[d])&0xffffffff; s[b]=rotl(s[b]^s[c],7)
def hchacha(key, n16):
    s = [0x61707865,0x3320646e,0x79622d32,0x6b206574] + list(struct.unpack('<8I', key)) + list(struct.unpack('<4I', n16))
    for _ in range(10):
        qr(s,0,4,8,12); qr(s,1,5,9,13); qr(s,2,6,10,14); qr(s,3,7,11,15)
        qr(s,0,5,10,15); qr(s,1,6,11,12); qr(s,2,7,8,13); qr(s,3,4,9,14)
    return struct.pack('<8I', *(s[0:4] + s[12:16]))
def xchacha_seal(key, nonce, pt, aad):
    return ChaCha20Poly1305(hchacha(key, nonce[:16])).encrypt(b"\0"*4 + nonce[16:], pt, aad)
def xchacha_open(key, nonce, ct, aad):
    return ChaCha20Poly1305(hchacha(key, nonce[:16])).decrypt(b"\0"*4 + nonce[16:], ct, aad)
def kdf_rk(rk, d): o = hkdf(rk, d, b"agentroom/ratchet/v1", 64); return o[:32], o[32:]
def kdf_ck(ck): return hmac.new(ck, b"\x02", hashlib.sha256).digest(), hmac.new(ck, b"\x01", hashlib.sha256).digest()
def enc(mk, pt, aad):
    o = hkdf(bytes(32), mk, b"agentroom/message/v1", 56); return xchacha_seal(o[:32], o[32:], pt, aad)
def dec(mk, ct, aad):
    o = hkdf(bytes(32), mk, b"agentroom/message/v1", 56); return xchacha_open(o[:32], o[32:], ct, aad)
def x3dh(gs, hs, opk, ek):
    gpub, hpub = ed_pub(gs), ed_pub(hs)
    ikm = b"\xff"*32 + dh(ed_sk_to_x(gs), xpub(opk)) + dh(ek, ed_pk_to_x(hpub)) + dh(ek, xpub(opk))
    ikm2 = b"\xff"*32 + dh(opk, ed_pk_to_x(gpub)) + dh(ed_sk_to_x(hs), xpub(ek)) + dh(opk, xpub(ek))
    assert ikm == ikm2
    return hkdf(bytes(32), ikm, b"agentroom/x3dh/v1", 32), gpub + hpub
L = lambda n: json.load(open(f"{D}/{n}.json"))
x = bytes.fromhex
for v in L("kdf_rk"):
    a, b = kdf_rk(x(v["rk"]), x(v["dh_out"])); assert a.hex() == v["rk_next"] and b.hex() == v["ck"]
for v in L("kdf_ck"):
    a, b = kdf_ck(x(v["ck"])); assert a.hex() == v["ck_next"] and b.hex() == v["mk"]
for v in L("aead"):
    assert enc(x(v["mk"]), x(v["plaintext"]), x(v["ad"]) + x(v["header"])).hex() == v["ciphertext"]
for v in L("invite"):
    hp = ed_pub(x(v["host_seed"])); assert xpub(x(v["opk_priv"])).hex() == v["opk_pub"]
    u = v["relay_url"].encode()
    sb = b"agentroom/invite/v1" + x(v["invite_id"]) + hp + x(v["opk_pub"]) + struct.pack(">Q", v["expires_at"]) + struct.pack(">H", len(u)) + u
    assert sb.hex() == v["signed_bytes"]; assert ed_sign(x(v["host_seed"]), sb).hex() == v["signature"]
for v in L("x3dh"):
    sk, ad = x3dh(x(v["guest_seed"]), x(v["host_seed"]), x(v["opk_priv"]), x(v["ek_priv"]))
    assert sk.hex() == v["sk"] and ad.hex() == v["ad"]
class Party:
    def __init__(s, ad, privs): s.ad, s.privs, s.skipped = ad, list(privs), {}
    def draw(s): return s.privs.pop(0)
    def header(s): return None if s.cks is None else s.dhs_pub + struct.pack(">II", s.pn, s.ns)
    def encrypt(s, pt):
        h = s.header(); s.cks, mk = kdf_ck(s.cks); s.ns += 1; return h, enc(mk, pt, s.ad + h)
    def skip(s, until):
        assert until - s.nr <= 1000
        if s.ckr is not None:
            while s.nr < until:
                s.ckr, mk = kdf_ck(s.ckr); s.skipped[(s.dhr, s.nr)] = mk; s.nr += 1
    def decrypt(s, h, ct):
        d, pn, n = h[:32], *struct.unpack(">II", h[32:])
        if (d, n) in s.skipped: s.used += 1; return dec(s.skipped.pop((d, n)), ct, s.ad + h)
        if d != s.dhr:
            s.skip(pn); s.pn, s.ns, s.nr, s.dhr = s.ns, 0, 0, d
            s.rk, s.ckr = kdf_rk(s.rk, dh(s.dhs, d)); s.dhs = s.draw(); s.dhs_pub = xpub(s.dhs)
            s.rk, s.cks = kdf_rk(s.rk, dh(s.dhs, d)); s.steps += 1
        s.skip(n); s.ckr, mk = kdf_ck(s.ckr); s.nr += 1
        return dec(mk, ct, s.ad + h)
for v in L("session"):
    opk = x(v["opk_priv"]); sk, ad = x3dh(x(v["guest_seed"]), x(v["host_seed"]), opk, x(v["ek_priv"]))
    g = Party(ad, map(x, v["guest_ratchet_privs"])); hh = Party(ad, map(x, v["host_ratchet_privs"]))
    for p in (g, hh): p.ns = p.nr = p.pn = p.used = p.steps = 0; p.ckr = None
    g.dhs = g.draw(); g.dhs_pub = xpub(g.dhs); g.dhr = xpub(opk); g.rk, g.cks = kdf_rk(sk, dh(g.dhs, g.dhr))
    hh.dhs, hh.dhs_pub, hh.dhr, hh.rk, hh.cks = opk, xpub(opk), None, sk, None
    M, O = v["messages"], v["deliver_order"]; s = d = 0
    while s < len(M) or d < len(O):
        if s < len(M):
            m = M[s]; p = g if m["from"] == "guest" else hh
            if p.header() == x(m["header"]):
                h, c = p.encrypt(x(m["plaintext"])); assert h.hex() == m["header"] and c.hex() == m["ciphertext"], s
                s += 1; continue
        k = O[d]; assert k < s; m = M[k]; p = hh if m["from"] == "guest" else g
        assert p.decrypt(x(m["header"]), x(m["ciphertext"])).hex() == m["plaintext"]; d += 1
    assert not g.privs and not hh.privs
    print("session ok: msgs", len(M), "ratchet steps", g.steps + hh.steps, "stored-key decrypts", g.used + hh.used)
print("ALL VECTORS REPRODUCED")
