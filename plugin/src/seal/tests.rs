use super::*;
use crate::document::sha256;

const OBJ: &str = "backups/3.9.1/config.json";

fn key(id: &str, b: u8) -> KeyEntry {
    KeyEntry::new(id, [b; 32]).unwrap()
}

fn public(seed: &KeyEntry) -> KeyEntry {
    KeyEntry::new(&seed.id, sign::public_key(seed)).unwrap()
}

fn exporter(sign: bool, encrypt: bool) -> SealSettings {
    SealSettings {
        signing_key: sign.then(|| key("sig-1", 1)),
        encryption_key: encrypt.then(|| key("enc-1", 2)),
        ..SealSettings::default()
    }
}

fn importer(verify: bool, decrypt: bool) -> SealSettings {
    SealSettings {
        verification_keys: if verify {
            vec![public(&key("sig-0", 7)), public(&key("sig-1", 1))]
        } else {
            Vec::new()
        },
        decryption_keys: if decrypt {
            vec![key("enc-0", 8), key("enc-1", 2)]
        } else {
            Vec::new()
        },
        ..SealSettings::default()
    }
}

/// What an exporter stores: the bytes and their metadata.
fn export(settings: &SealSettings, plain: &[u8], at: u64) -> (Vec<u8>, ObjectMeta) {
    let mut sealer = ExportSealer::new(settings, OBJ);
    let mut doc = sealer.offer(Document::new(Rc::new(plain.to_vec()), at));
    while doc.is_none() {
        doc = sealer.step();
    }
    let doc = doc.unwrap();
    let meta = export_metadata(settings, OBJ, &doc.body, &doc.sha256, doc.seen_at).unwrap();
    let get = |n: &str| meta.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
    let om = ObjectMeta {
        seal: SealMeta::read(get),
        applied_at: Some(doc.seen_at),
        config_sha256: Some(doc.sha256_hex.clone()),
    };
    (doc.body.as_ref().clone(), om)
}

fn import(settings: &SealSettings, body: Vec<u8>, meta: ObjectMeta) -> Result<Vec<u8>, String> {
    unseal_all(settings, OBJ, body, meta)
}

const DOC: &[u8] = br#"{"_format_version":"3.0","services":[{"name":"s","url":"http://x"}]}"#;

#[test]
fn signed_and_encrypted_round_trips_and_refusals() {
    let (body, meta) = export(&exporter(true, true), DOC, 42);
    assert!(stream::is_sealed(&body));
    assert!(!body.windows(8).any(|w| w == b"services"), "ciphertext");
    assert_eq!(meta.seal.signature_key.as_deref(), Some("sig-1"));
    assert_eq!(meta.seal.encryption_key.as_deref(), Some("enc-1"));
    assert_eq!(
        meta.seal.describe(),
        "signed (key sig-1), encrypted (key enc-1)"
    );
    assert_eq!(
        import(&importer(true, true), body.clone(), meta.clone()).unwrap(),
        DOC
    );
    // Each requirement alone also accepts it... except a verifying-only importer: encrypted.
    assert_eq!(
        import(&importer(false, true), body.clone(), meta.clone()).unwrap(),
        DOC
    );
    let e = import(&importer(true, false), body.clone(), meta.clone()).unwrap_err();
    assert!(e.contains("import_decryption_keys is not set"), "{e}");
    let e = import(&SealSettings::default(), body.clone(), meta.clone()).unwrap_err();
    assert_eq!(
        e,
        "it is encrypted (key id enc-1) and import_decryption_keys is not set"
    );

    // Tampered ciphertext: with a fresh config-sha256 (a writer can set metadata) the signature
    // fails; without signatures, decryption fails.
    let mut t = body.clone();
    let last = t.len() - 20;
    t[last] ^= 1;
    let fresh = ObjectMeta {
        config_sha256: Some(crate::document::sha256_hex(&t)),
        ..meta.clone()
    };
    let e = import(&importer(true, true), t.clone(), fresh.clone()).unwrap_err();
    assert!(
        e.contains("signature does not verify under key sig-1"),
        "{e}"
    );
    let e = import(&importer(false, true), t.clone(), fresh).unwrap_err();
    assert!(e.contains("fails authentication under key enc-1"), "{e}");
    // A stale config-sha256 is caught first.
    let e = import(&importer(true, true), t, meta.clone()).unwrap_err();
    assert!(e.contains("does not match its config-sha256"), "{e}");
}

#[test]
fn unsigned_wrongly_signed_and_unknown_keys_are_refused() {
    let imp = importer(true, false);
    // Unsigned (a plain export, or signature metadata stripped).
    let (body, meta) = export(&exporter(false, false), DOC, 42);
    let e = import(&imp, body.clone(), meta).unwrap_err();
    assert!(e.contains("is not signed"), "{e}");
    // Signed by a key that is not trusted, under its own id, and under a trusted id.
    let rogue = SealSettings {
        signing_key: Some(key("rogue", 9)),
        ..SealSettings::default()
    };
    let (body, meta) = export(&rogue, DOC, 42);
    let e = import(&imp, body.clone(), meta.clone()).unwrap_err();
    assert!(e.contains("key id rogue, which is not among"), "{e}");
    let impostor = SealSettings {
        signing_key: Some(key("sig-1", 9)),
        ..SealSettings::default()
    };
    let (body, meta) = export(&impostor, DOC, 42);
    let e = import(&imp, body, meta).unwrap_err();
    assert!(e.contains("does not verify under key sig-1"), "{e}");
    // A signed object with its applied-at changed, or copied to another key.
    let (body, meta) = export(&exporter(true, false), DOC, 42);
    let later = ObjectMeta {
        applied_at: Some(43),
        ..meta.clone()
    };
    assert!(import(&imp, body.clone(), later).is_err());
    let e = unseal_all(
        &imp,
        "backups/3.8.0/config.json",
        body.clone(),
        meta.clone(),
    )
    .unwrap_err();
    assert!(e.contains("does not verify"), "{e}");
    // Signed but not encrypted: a decrypting importer refuses plaintext.
    let e = import(&importer(true, true), body.clone(), meta.clone()).unwrap_err();
    assert!(e.contains("is not encrypted"), "{e}");
    assert_eq!(import(&imp, body, meta).unwrap(), DOC);
    // Key rotation: an object signed with the older trusted key.
    let old = SealSettings {
        signing_key: Some(key("sig-0", 7)),
        ..SealSettings::default()
    };
    let (body, meta) = export(&old, DOC, 42);
    assert_eq!(import(&imp, body, meta).unwrap(), DOC);
}

#[test]
fn an_unconfigured_importer_takes_plain_objects_as_they_are() {
    let (body, meta) = export(&exporter(true, false), DOC, 42);
    match Unsealer::start(&SealSettings::default(), OBJ, body.clone(), meta) {
        Start::Plain(b) => assert_eq!(b, body),
        other => panic!("{other:?}"),
    }
    assert!(
        export_metadata(&SealSettings::default(), OBJ, DOC, &sha256(DOC), 1)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn unsealing_and_sealing_proceed_in_slices() {
    let plain: Vec<u8> = (0..5 * SEAL_SLICE_BYTES + 17).map(|i| i as u8).collect();
    let settings = exporter(true, true);
    let mut sealer = ExportSealer::new(&settings, OBJ);
    let doc = Document::new(Rc::new(plain.clone()), 5);
    assert!(sealer.offer(doc.clone()).is_none(), "not at once");
    assert!(sealer.busy());
    assert!(
        sealer.offer(doc.clone()).is_none(),
        "the same document keeps going"
    );
    let mut steps = 0;
    let sealed = loop {
        steps += 1;
        if let Some(d) = sealer.step() {
            break d;
        }
    };
    assert_eq!(steps, 6, "a slice per step");
    assert!(!sealer.busy());
    assert_eq!(sealed.seen_at, 5);
    // Applied again: the cached encryption, at once, with the same digest.
    let again = sealer
        .offer(Document::new(Rc::new(plain.clone()), 9))
        .unwrap();
    assert_eq!(again.sha256, sealed.sha256);
    assert!(Rc::ptr_eq(&again.body, &sealed.body));

    let meta = export_metadata(&settings, OBJ, &sealed.body, &sealed.sha256, 5).unwrap();
    let get = |n: &str| meta.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
    let om = ObjectMeta {
        seal: SealMeta::read(get),
        applied_at: Some(5),
        config_sha256: Some(sealed.sha256_hex.clone()),
    };
    let Start::Unseal(mut u) =
        Unsealer::start(&importer(true, true), OBJ, sealed.body.to_vec(), om)
    else {
        panic!("unseal")
    };
    let mut steps = 0;
    let out = loop {
        steps += 1;
        match u.step(SEAL_SLICE_BYTES) {
            Unsealed::Working => {}
            Unsealed::Done(v) => break v,
            Unsealed::Failed(e) => panic!("{e}"),
        }
    };
    assert_eq!(out, plain);
    assert_eq!(
        steps, 7,
        "hashed in one step (2 MiB), then decrypted 128 KiB a step"
    );
    assert_eq!(u.verified_by.as_deref(), Some("sig-1"));
    assert_eq!(u.decrypted_with.as_deref(), Some("enc-1"));
}
