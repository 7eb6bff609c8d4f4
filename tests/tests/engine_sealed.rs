//! A signed and encrypted export from the REAL engine (nginx + ngx_wasm_module, `../shared/ngx-wasm`)
//! to the mock S3 over TCP, opened with the same core code the native tool uses
//! (`seal::unseal_all`, docs/sealed-exports.md): the bucket holds ciphertext, the metadata names
//! the keys, the signature verifies, the plaintext is the config byte for byte, and no key
//! material reaches the engine's log.
//!
//! `cargo test -p config-bridge-tests --test engine_sealed`. Without the engine the test prints
//! `SKIP real engine ...` and passes, unless `CI` is set (then it fails).

use config_bridge::document::base64;
use config_bridge::seal::keys::KeyEntry;
use config_bridge::seal::{self, sign, SealMeta, SealSettings};
use config_bridge_tests::real_engine::{
    assert_no_secrets_in_logs, engine_filter_config, known_secrets, tricky_doc, EngineNode,
    EngineSpec, LiveS3, EXPORTED, WAIT,
};
use config_bridge_tests::{payload_bytes, CONFIG_KEY};
use serde_json::json;

const SIGNING_SEED: [u8; 32] = [0x3c; 32];
const ENCRYPTION_KEY: [u8; 32] = [0xa5; 32];

#[test]
fn signed_and_encrypted_export_opens_with_the_native_core() {
    let s3 = LiveS3::start();
    let doc = tricky_doc(7);
    let mut cfg = engine_filter_config(&s3.endpoint(), &doc);
    cfg["export_signing_key"] = json!(format!("sig-e1:{}", base64(&SIGNING_SEED)));
    cfg["export_encryption_key"] = json!(format!("enc-e1:{}", base64(&ENCRYPTION_KEY)));
    let Some(node) = EngineNode::start(EngineSpec::new("sealed_export", cfg)) else {
        return;
    };
    node.wait_for_log(EXPORTED, WAIT);
    let object = s3.object().expect("the sealed export is in the bucket");
    let plain = payload_bytes(&doc);
    assert_ne!(object.body, plain, "the bucket holds ciphertext");
    let marker = b"\"_format_version\"";
    assert!(
        !object.body.windows(marker.len()).any(|w| w == marker),
        "no plaintext JSON in the stored object"
    );
    let meta_of = |name: &str| {
        object
            .metadata
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let seal_meta = SealMeta::read(meta_of);
    assert_eq!(seal_meta.signature_key.as_deref(), Some("sig-e1"));
    assert_eq!(seal_meta.encryption_key.as_deref(), Some("enc-e1"));
    assert!(seal_meta.signature.is_some(), "{:?}", object.metadata);

    let public = sign::public_key(&KeyEntry::new("sig-e1", SIGNING_SEED).unwrap());
    let importer = SealSettings {
        verification_keys: vec![KeyEntry::new("sig-e1", public).unwrap()],
        decryption_keys: vec![KeyEntry::new("enc-e1", ENCRYPTION_KEY).unwrap()],
        ..SealSettings::default()
    };
    let object_meta = |seal: SealMeta| seal::ObjectMeta {
        seal,
        applied_at: meta_of("config-applied-at").and_then(|v| v.parse().ok()),
        config_sha256: meta_of("config-sha256"),
    };
    let opened = seal::unseal_all(
        &importer,
        CONFIG_KEY,
        object.body.clone(),
        object_meta(seal_meta.clone()),
    );
    assert_eq!(opened.as_deref(), Ok(plain.as_slice()));

    // The same bytes under another key, or with a flipped byte, are refused.
    let moved = seal::unseal_all(
        &importer,
        "elsewhere/3.9.1/config.json",
        object.body.clone(),
        object_meta(seal_meta.clone()),
    );
    assert!(moved.is_err(), "an object moved to another key is refused");
    let mut tampered = object.body.clone();
    if let Some(b) = tampered.last_mut() {
        *b ^= 1;
    }
    let tampered = seal::unseal_all(&importer, CONFIG_KEY, tampered, object_meta(seal_meta));
    assert!(tampered.is_err(), "a flipped byte is refused");

    let mut secrets = known_secrets(&s3);
    secrets.push(base64(&SIGNING_SEED));
    secrets.push(base64(&ENCRYPTION_KEY));
    assert_no_secrets_in_logs(&node, &secrets);
    assert!(node.problems().is_empty(), "{:?}", node.problems().first());
}
