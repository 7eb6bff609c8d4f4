#!/usr/bin/env python3
"""An independent implementation of config-bridge's sealed exports (docs/sealed-exports.md),
written from the documentation with the `cryptography` package, not from the Rust code.

    reference.py kat                      # the known-answer vector of plugin/src/seal/stream_tests.rs
    reference.py open KEYID:BASE64KEY OBJECT_KEY < object > config.json
    reference.py verify KEYID:BASE64PUB OBJECT_KEY SHA256HEX APPLIED_AT SIGNATURE_B64

It is also a way to read a backup without config-bridge at all (disaster recovery)."""
import base64, hashlib, hmac, struct, sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC, VERSION, TAG = b"CBSEAL", 1, 16


def _hmac(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def _derive(key, header, salt, object_key):
    prk = _hmac(salt, key)
    info = b"config-bridge seal v1\0" + header + struct.pack(">Q", len(object_key)) + object_key
    t1 = _hmac(prk, info, b"\x01")
    t2 = _hmac(prk, t1, info, b"\x02")
    return AESGCM(t1), t2[:7]


def _nonce(prefix, counter, last):
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


def seal(key_id, key, object_key, plain, segment=65536):
    salt_key = _hmac(key, b"config-bridge seal v1 synthetic salt")
    salt = _hmac(salt_key, struct.pack(">Q", len(object_key)), object_key, hashlib.sha256(plain).digest())
    header = MAGIC + bytes([VERSION, len(key_id)]) + key_id + struct.pack(">I", segment) + salt
    aead, prefix = _derive(key, header, salt, object_key)
    count = max(1, -(-len(plain) // segment))
    out = [header]
    for i in range(count):
        chunk = plain[i * segment:(i + 1) * segment]
        out.append(aead.encrypt(_nonce(prefix, i, i == count - 1), chunk, None))
    return b"".join(out)


def open_(keys, object_key, data):
    if data[:6] != MAGIC or data[6] != VERSION:
        raise ValueError("not an encrypted export")
    n = data[7]
    key_id = data[8:8 + n]
    segment, = struct.unpack(">I", data[8 + n:12 + n])
    salt = data[12 + n:44 + n]
    header = data[:44 + n]
    aead, prefix = _derive(keys[key_id], header, salt, object_key)
    rest = data[44 + n:]
    full = segment + TAG
    k, rem = divmod(len(rest), full)
    if rem == 0 and k > 0:
        count = k
    elif rem >= TAG:
        count = k + 1
    else:
        raise ValueError("truncated")
    out = []
    for i in range(count):
        seg = rest[i * full:(i + 1) * full] if i < count - 1 else rest[i * full:]
        out.append(aead.decrypt(_nonce(prefix, i, i == count - 1), seg, None))
    return b"".join(out)


def message(object_key, sha256_hex, applied_at, key_id):
    return ("config-bridge export signature v1\nkey: %s\nsha256: %s\napplied-at: %d\nsigning-key: %s\n"
            % (object_key, sha256_hex, applied_at, key_id)).encode()


def _key(arg):
    i, b = arg.split(":", 1)
    return i.encode(), base64.b64decode(b)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "kat":
        plain = bytes(((i * 31 + i // 7) & 0xFF) for i in range(5000))
        body = seal(b"k1", b"\x42" * 32, b"backups/3.9.1/config.json", plain, 4096)
        print("header", body[:46].hex())
        print("sha256", hashlib.sha256(body).hexdigest())
        assert open_({b"k1": b"\x42" * 32}, b"backups/3.9.1/config.json", body) == plain
    elif cmd == "open":
        kid, key = _key(sys.argv[2])
        sys.stdout.buffer.write(open_({kid: key}, sys.argv[3].encode(), sys.stdin.buffer.read()))
    elif cmd == "verify":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        kid, pub = _key(sys.argv[2])
        msg = message(sys.argv[3], sys.argv[4], int(sys.argv[5]), kid.decode())
        Ed25519PublicKey.from_public_bytes(pub).verify(base64.b64decode(sys.argv[6]), msg)
        print("signature verifies under", kid.decode())
