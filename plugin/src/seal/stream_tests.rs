use super::*;
use crate::document::{hex, sha256};

fn key(id: &str, b: u8) -> KeyEntry {
    KeyEntry::new(id, [b; 32]).unwrap()
}

fn doc(n: usize) -> Rc<Vec<u8>> {
    Rc::new((0..n).map(|i| (i * 31 + i / 7) as u8).collect())
}

const OBJ: &str = "backups/3.9.1/config.json";

fn sealed(plain: &Rc<Vec<u8>>, k: &KeyEntry, segment: u32) -> Vec<u8> {
    let mut e = Encryptor::with_segment(plain.clone(), &sha256(plain), OBJ, k, segment);
    loop {
        if let Some(s) = e.step(usize::MAX) {
            return s.body.as_ref().clone();
        }
    }
}

fn open(body: Vec<u8>, object_key: &str, keys: &[KeyEntry]) -> Result<Vec<u8>, String> {
    open_all(Rc::new(body), object_key, keys)
}

/// Produced by an independent implementation of the format (Python `cryptography`: HMAC,
/// HKDF and AESGCM; `plugin/src/seal/reference.py`) for key id "k1", key 32 × 0x42, the object
/// key above, segment size 4096 and the 5000-byte document `doc(5000)`.
#[test]
fn known_answer_from_an_independent_implementation() {
    let plain = doc(5000);
    let body = sealed(&plain, &key("k1", 0x42), 4096);
    assert_eq!(body.len(), 46 + 5000 + 2 * 16);
    assert_eq!(hex(&sha256(&body)), KAT_SHA256, "the whole object");
    assert_eq!(hex_of(&body[..46]), KAT_HEADER);
    assert_eq!(open(body, OBJ, &[key("k1", 0x42)]).unwrap(), *plain);
}

const KAT_HEADER: &str =
    "43425345414c01026b3100001000155978e3a164a62eba9043f5e04ea1c8992c8b637b60713e18f20dd6a1c45d3d";
const KAT_SHA256: &str = "c27f2e8bd017352183433f4d4a024d66afe84f100773b82391f1146960c7c487";

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn round_trips_at_every_size_and_budget() {
    let k = key("k1", 1);
    for n in [0, 1, 4095, 4096, 4097, 8192, 12_345] {
        let plain = doc(n);
        let body = sealed(&plain, &k, 4096);
        assert_eq!(body.len(), 46 + n + n.div_ceil(4096).max(1) * 16, "{n}");
        assert_eq!(&body[..6], MAGIC);
        for budget in [1, 4096, 5000, usize::MAX] {
            // Sliced encryption gives the same bytes as one-shot, and the digest of them.
            let mut e = Encryptor::with_segment(plain.clone(), &sha256(&plain), OBJ, &k, 4096);
            let mut steps = 0;
            let s = loop {
                steps += 1;
                if let Some(s) = e.step(budget) {
                    break s;
                }
            };
            assert_eq!(*s.body, body, "{n} {budget}");
            assert_eq!(s.sha256, sha256(&body));
            assert_eq!(s.key_id, "k1");
            if budget == 1 {
                assert_eq!(steps, n.div_ceil(4096).max(1), "one segment per step");
            }
            let mut d =
                Decryptor::new(Rc::new(body.clone()), OBJ, std::slice::from_ref(&k)).unwrap();
            let out = loop {
                match d.step(budget) {
                    Opened::Working => {}
                    Opened::Done(v) => break v,
                    Opened::Failed(e) => panic!("{e}"),
                }
            };
            assert_eq!(out, *plain);
            assert!(matches!(d.step(1), Opened::Failed(_)), "handed out once");
        }
    }
}

#[test]
fn deterministic_per_document_key_and_object_key() {
    let (a, b) = (key("k1", 1), key("k1", 2));
    let plain = doc(10_000);
    assert_eq!(sealed(&plain, &a, 4096), sealed(&plain, &a, 4096));
    assert_ne!(sealed(&plain, &a, 4096), sealed(&plain, &b, 4096));
    let other = Rc::new({
        let mut v = plain.as_ref().clone();
        v[9_999] ^= 1;
        v
    });
    let (x, y) = (sealed(&plain, &a, 4096), sealed(&other, &a, 4096));
    assert_ne!(x[14..46], y[14..46], "another salt");
    assert_ne!(
        x[46..62],
        y[46..62],
        "another keystream from the first byte on"
    );
    // The default segment size is what the header says.
    let s = seal_all(plain.clone(), OBJ, &a);
    assert_eq!(Header::parse(&s.body).unwrap().segment, DEFAULT_SEGMENT);
    assert_eq!(open_all(s.body, OBJ, &[a]).unwrap(), *plain);
}

#[test]
fn tampering_is_detected() {
    let k = key("k1", 1);
    let keys = [key("k0", 9), k.clone()];
    let plain = doc(3 * 4096 + 100);
    let body = sealed(&plain, &k, 4096);
    let seg = 4096 + 16;
    let fails = |b: Vec<u8>, what: &str| {
        let e = open(b, OBJ, &keys).expect_err(what);
        assert!(!e.is_empty(), "{what}");
        e
    };
    // A flipped byte anywhere: header, salt, each segment's ciphertext and tag.
    for at in [
        7,
        9,
        12,
        20,
        46,
        46 + 4095,
        46 + 4096 + 3,
        46 + seg + 1,
        body.len() - 1,
    ] {
        let mut b = body.clone();
        b[at] ^= 0x01;
        fails(b, &format!("flipped byte {at}"));
    }
    // Truncated: at a segment boundary (the previous segment is not the last), inside one, header.
    let e = fails(body[..46 + 3 * seg].to_vec(), "truncated at a boundary");
    assert!(e.contains("segment 3 of 3 fails authentication"), "{e}");
    fails(body[..body.len() - 1].to_vec(), "one byte short");
    fails(body[..46 + 3 * seg + 5].to_vec(), "a partial last segment");
    fails(body[..30].to_vec(), "header only");
    fails(body[..46].to_vec(), "no segment");
    // An extra segment: the old last one is not last any more; a copy of segment 1 appended.
    let mut b = body.clone();
    b.extend_from_slice(&body[46..46 + seg]);
    fails(b, "extra segment");
    // Reordered segments.
    let mut b = body[..46].to_vec();
    b.extend_from_slice(&body[46 + seg..46 + 2 * seg]);
    b.extend_from_slice(&body[46..46 + seg]);
    b.extend_from_slice(&body[46 + 2 * seg..]);
    fails(b, "reordered");
    // Moved to another object key.
    let e = open(body.clone(), "backups/3.8.0/config.json", &keys).unwrap_err();
    assert!(e.contains("moved from another object key"), "{e}");
    // Wrong key under the right id; an id that is not configured.
    let e = open(body.clone(), OBJ, &[key("k1", 2)]).unwrap_err();
    assert!(
        e.contains("segment 1 of 4 fails authentication under key k1"),
        "{e}"
    );
    let e = open(body.clone(), OBJ, &[key("k2", 1)]).unwrap_err();
    assert_eq!(
        e,
        "is encrypted with key id k1, which is not among import_decryption_keys"
    );
    // The header's key id rewritten to another configured key (same length).
    let mut b = body.clone();
    b[9] = b'0';
    let e = open(b, OBJ, &keys).unwrap_err();
    assert!(e.contains("under key k0"), "{e}");
    // Not encrypted at all, an unknown version, a silly segment size.
    assert!(open(b"{\"_format_version\":\"3.0\"}".to_vec(), OBJ, &keys)
        .unwrap_err()
        .contains("not an encrypted export"));
    let mut b = body.clone();
    b[6] = 2;
    assert!(open(b, OBJ, &keys)
        .unwrap_err()
        .contains("unknown format version"));
    let mut b = body.clone();
    b[10..14].copy_from_slice(&0u32.to_be_bytes());
    assert!(open(b, OBJ, &keys).unwrap_err().contains("malformed"));
    // Still intact.
    assert_eq!(open(body, OBJ, &keys).unwrap(), *plain);
}

#[test]
fn headers_from_a_hostile_bucket_never_panic() {
    let k = key("k1", 1);
    let body = sealed(&doc(100), &k, 4096);
    for n in 0..body.len() {
        let _ = open(body[..n].to_vec(), OBJ, std::slice::from_ref(&k));
    }
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&[1, 200]);
    assert!(Header::parse(&b).is_err());
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&[1, 2, b' ', b'x']);
    b.extend_from_slice(&[0; 40]);
    assert!(Header::parse(&b).is_err(), "invalid id characters");
}
