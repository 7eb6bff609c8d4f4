//! The cost of sealed exports natively (docs/sealed-exports.md, "Cost"): encrypting and
//! decrypting (with the digest of the stored bytes the export and the import compute) a document
//! of `SEAL_MB` MiB (default 50), per MiB, and one Ed25519 signature and verification.
//! Run: `cargo bench -p config-bridge --bench seal`.

// Test code may panic; the crate's no-panic lints (plugin/Cargo.toml) are for the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable
)]
use std::rc::Rc;
use std::time::Instant;

use config_bridge::seal::keys::KeyEntry;
use config_bridge::seal::{sign, stream, unseal_all, ObjectMeta, SealSettings};

fn main() {
    let mb: usize = std::env::var("SEAL_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let plain: Vec<u8> = (0..mb << 20).map(|i| (i * 131 + i / 4093) as u8).collect();
    let key = KeyEntry::new("enc-1", [7; 32]).expect("key");
    let obj = "backups/3.9.1/config.json";
    let digest = config_bridge::document::sha256(&plain);
    let per_mib = |ms: f64| format!("{ms:.1} ms ({:.2} ms/MiB)", ms / mb as f64);

    let t = Instant::now();
    let sealed = stream::seal_all(Rc::new(plain.clone()), obj, &key);
    let enc = t.elapsed().as_secs_f64() * 1e3;
    let settings = SealSettings {
        decryption_keys: vec![key],
        ..SealSettings::default()
    };
    let t = Instant::now();
    let opened = unseal_all(&settings, obj, sealed.body.to_vec(), ObjectMeta::default());
    let dec = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(opened.as_deref(), Ok(plain.as_slice()));

    let seed = KeyEntry::new("sig-1", [9; 32]).expect("key");
    let public = KeyEntry::new("sig-1", sign::public_key(&seed)).expect("key");
    let n = 200;
    let t = Instant::now();
    let mut sig = String::new();
    for i in 0..n {
        sig = sign::sign(&seed, obj, &digest, i).expect("sign");
    }
    let sign_ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    let claimed = sign::Claimed {
        signature: Some(&sig),
        key_id: Some("sig-1"),
        applied_at: Some(n - 1),
    };
    let t = Instant::now();
    for _ in 0..n {
        sign::verify(std::slice::from_ref(&public), claimed, obj, &digest).expect("verify");
    }
    let verify_ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    println!("{mb} MiB natively (release):");
    println!("  encrypt + SHA-256 of the ciphertext: {}", per_mib(enc));
    println!("  SHA-256 of the ciphertext + decrypt: {}", per_mib(dec));
    println!("  Ed25519 sign: {sign_ms:.3} ms, verify: {verify_ms:.3} ms");
}
