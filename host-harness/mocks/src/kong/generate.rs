//! Big, valid Kong declarative documents for tests, deterministic by seed.
//!
//! `generate(n_services, seed)` writes what Kong Enterprise's `declarative.export_config()` would
//! hold for such a gateway, but with the disabled services kept (as `GET /config` and the Admin
//! API show them): the flat form (`_format_version: "3.0"`, `_transform: false`, foreign keys as
//! plain ids, every field with its default or `null`, credentials already hashed), a default
//! workspace, and by default:
//!
//! * `n_services` services, every 10th disabled, 2 routes each; a rate-limiting plugin on every
//!   service, a cors plugin on every first route, one disabled plugin, two global plugins;
//! * 1,200 consumers, each with a key-auth credential; basic-auth on every 4th, acls on every
//!   3rd, hmac-auth and jwt on every 10th, oauth2 on every 20th; a consumer plugin on every 100th;
//! * `max(1, n_services / 5)` upstreams with 3 targets each; 3 certificates with 2 SNIs each; a
//!   CA certificate; a key set with 2 keys; a vault; 2 filter chains (one on a disabled service).
//!
//! The PEM blobs are random bytes in PEM armour (nothing parses them); the basic-auth passwords
//! are `sha1(password .. consumer_id)` as Kong stores them.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::load::{basicauth_hash, format_uuid, pem_sha256};
use super::schema::{self, Timestamps, ENTITIES};

/// What `generate_with` makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateOptions {
    pub services: usize,
    pub routes_per_service: usize,
    pub consumers: usize,
    pub upstreams: usize,
    pub targets_per_upstream: usize,
    pub certificates: usize,
    pub snis_per_certificate: usize,
    /// Every `disabled_every`-th service (the 10th, 20th, ...) is disabled; 0: none.
    pub disabled_every: usize,
}

impl GenerateOptions {
    /// The defaults of `generate(services, _)`.
    pub fn new(services: usize) -> Self {
        GenerateOptions {
            services,
            routes_per_service: 2,
            consumers: 1200,
            upstreams: (services / 5).max(1),
            targets_per_upstream: 3,
            certificates: 3,
            snis_per_certificate: 2,
            disabled_every: 10,
        }
    }
}

/// A valid flat document with `n_services` services and the defaults of [`GenerateOptions`].
pub fn generate(n_services: usize, seed: u64) -> Value {
    generate_with(&GenerateOptions::new(n_services), seed)
}

struct Gen {
    rng: ChaCha8Rng,
    clock: u64,
    out: Map<String, Value>,
}

impl Gen {
    fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        format_uuid(&b)
    }

    fn hex(&mut self, bytes: usize) -> String {
        let mut b = vec![0u8; bytes];
        self.rng.fill_bytes(&mut b);
        hex::encode(b)
    }

    fn pem(&mut self, label: &str) -> String {
        use base64::Engine;
        let mut b = vec![0u8; 96];
        self.rng.fill_bytes(&mut b);
        let body = base64::engine::general_purpose::STANDARD.encode(b);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// Adds an entity of `collection`: the schema template, then `fields`, an id and timestamps.
    fn add(&mut self, collection: &str, fields: Value) -> String {
        let def = schema::entity(collection).unwrap_or(&ENTITIES[0]);
        let id = self.uuid();
        let mut e = def.template().as_object().cloned().unwrap_or_default();
        if let Value::Object(f) = fields {
            for (k, v) in f {
                e.insert(k, v);
            }
        }
        e.insert("id".into(), json!(id));
        self.clock += self.rng.gen_range(1..30);
        let updated = self.clock + self.rng.gen_range(0..3);
        match def.timestamps {
            Timestamps::Seconds => {
                e.insert("created_at".into(), json!(self.clock));
                e.insert("updated_at".into(), json!(updated));
            }
            Timestamps::CreatedOnly => {
                e.insert("created_at".into(), json!(self.clock));
            }
            Timestamps::Millis => {
                let ms = self.rng.gen_range(0..1000) as f64 / 1000.0;
                e.insert("created_at".into(), json!(self.clock as f64 + ms));
                e.insert("updated_at".into(), json!(updated as f64 + ms));
            }
        }
        if let Some(Value::Array(list)) = self.out.get_mut(collection) {
            list.push(Value::Object(e));
        } else {
            self.out
                .insert(collection.to_string(), json!([Value::Object(e)]));
        }
        id
    }
}

/// A valid flat document shaped by `opts`, deterministic by `seed`.
pub fn generate_with(opts: &GenerateOptions, seed: u64) -> Value {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let clock = 1_700_000_000 + rng.gen_range(0..10_000_000);
    let mut g = Gen {
        rng,
        clock,
        out: Map::new(),
    };
    g.add(
        "workspaces",
        json!({"name": "default", "config": {}, "meta": {}}),
    );

    let mut certs = Vec::new();
    for c in 0..opts.certificates {
        let cert = g.pem("CERTIFICATE");
        let key = g.pem("PRIVATE KEY");
        let id = g.add(
            "certificates",
            json!({"cert": cert, "key": key, "tags": ["generated"]}),
        );
        for s in 0..opts.snis_per_certificate {
            g.add(
                "snis",
                json!({"name": format!("c{c}-{s}.example.test"), "certificate": id}),
            );
        }
        certs.push(id);
    }
    let ca = g.pem("CERTIFICATE");
    let digest = pem_sha256(&ca);
    g.add(
        "ca_certificates",
        json!({"cert": ca, "cert_digest": digest}),
    );
    let set = g.add("key_sets", json!({"name": "jwks"}));
    for k in 0..2 {
        let secret = g.hex(32);
        g.add(
            "keys",
            json!({"set": set, "name": format!("key-{k}"), "kid": format!("kid-{k}"),
                   "jwk": json!({"kty": "oct", "kid": format!("kid-{k}"), "k": secret}).to_string()}),
        );
    }
    g.add(
        "vaults",
        json!({"prefix": "env-vault", "name": "env", "config": {"prefix": "KONG_VAULT_"}}),
    );

    let mut services = Vec::new();
    let mut first_disabled = None;
    for i in 0..opts.services {
        let disabled = opts.disabled_every > 0 && (i + 1) % opts.disabled_every == 0;
        // The first service presents a client certificate (a foreign key to certificates).
        let client_cert = match (i, certs.first()) {
            (0, Some(c)) => json!(c),
            _ => Value::Null,
        };
        let id = g.add(
            "services",
            json!({"name": format!("svc-{i:05}"), "host": format!("backend-{i}.internal"),
                   "port": 8080, "path": format!("/api/{i}"), "enabled": !disabled,
                   "tags": ["generated"], "client_certificate": client_cert}),
        );
        if disabled && first_disabled.is_none() {
            first_disabled = Some(id.clone());
        }
        services.push((id, disabled));
    }
    let mut first_routes = Vec::new();
    for (i, (sid, _)) in services.iter().enumerate() {
        for r in 0..opts.routes_per_service {
            let methods = if r % 2 == 1 {
                json!(["GET"])
            } else {
                Value::Null
            };
            let rid = g.add(
                "routes",
                json!({"name": format!("svc-{i:05}-r{r}"), "paths": [format!("/svc-{i}/r{r}")],
                       "methods": methods, "service": sid}),
            );
            if r == 0 {
                first_routes.push(rid);
            }
        }
    }
    for u in 0..opts.upstreams {
        let id = g.add(
            "upstreams",
            json!({"name": format!("upstream-{u}.internal")}),
        );
        for t in 0..opts.targets_per_upstream {
            g.add(
                "targets",
                json!({"upstream": id, "target": format!("10.{}.{}.{}:8080", u / 256, u % 256, t + 1)}),
            );
        }
    }

    let mut consumers = Vec::new();
    for c in 0..opts.consumers {
        let id = g.add(
            "consumers",
            json!({"username": format!("user-{c:05}"), "custom_id": format!("cid-{c}")}),
        );
        consumers.push(id);
    }

    g.add(
        "plugins",
        json!({"name": "correlation-id",
               "config": {"header_name": "Kong-Request-ID", "generator": "uuid#counter",
                          "echo_downstream": false}}),
    );
    g.add(
        "plugins",
        json!({"name": "prometheus", "config": {"per_consumer": false}}),
    );
    for (i, (sid, _)) in services.iter().enumerate() {
        g.add(
            "plugins",
            json!({"name": "rate-limiting", "service": sid,
                   "config": {"minute": 100 + i, "policy": "local"}}),
        );
    }
    for rid in &first_routes {
        g.add(
            "plugins",
            json!({"name": "cors", "route": rid, "config": {"origins": ["*"]}}),
        );
    }
    if let Some((sid, _)) = services.first() {
        g.add(
            "plugins",
            json!({"name": "request-termination", "service": sid, "enabled": false,
                   "config": {"status_code": 503}}),
        );
    }
    for (c, cid) in consumers.iter().enumerate().filter(|(c, _)| c % 100 == 0) {
        g.add(
            "plugins",
            json!({"name": "rate-limiting", "consumer": cid,
                   "config": {"minute": 10 + c, "policy": "local"}}),
        );
    }
    let filter = json!([{"name": "example_filter", "config": "{}", "enabled": true}]);
    if let Some((sid, _)) = services.get(1).or(services.first()) {
        g.add(
            "filter_chains",
            json!({"name": "chain-enabled", "service": sid, "filters": filter}),
        );
    }
    if let Some(sid) = first_disabled {
        g.add(
            "filter_chains",
            json!({"name": "chain-on-disabled", "service": sid, "filters": filter}),
        );
    }

    for (c, cid) in consumers.iter().enumerate() {
        if c % 3 == 0 {
            g.add(
                "acls",
                json!({"consumer": cid, "group": format!("group-{}", c % 5)}),
            );
        }
        if c % 4 == 0 {
            let password = basicauth_hash(cid, &format!("secret-{c}"));
            g.add(
                "basicauth_credentials",
                json!({"consumer": cid, "username": format!("basic-{c}"), "password": password}),
            );
        }
        if c % 10 == 0 {
            let secret = g.hex(16);
            g.add(
                "hmacauth_credentials",
                json!({"consumer": cid, "username": format!("hmac-{c}"), "secret": secret}),
            );
            let secret = g.hex(16);
            g.add(
                "jwt_secrets",
                json!({"consumer": cid, "key": format!("jwt-{c}"), "secret": secret}),
            );
        }
        let key = g.hex(16);
        g.add("keyauth_credentials", json!({"consumer": cid, "key": key}));
        if c % 20 == 0 {
            let (client_id, client_secret) = (g.hex(16), g.hex(16));
            g.add(
                "oauth2_credentials",
                json!({"consumer": cid, "name": format!("app-{c}"), "client_id": client_id,
                       "client_secret": client_secret,
                       "redirect_uris": [format!("https://app-{c}.example.test/cb")]}),
            );
        }
    }

    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));
    doc.insert("_transform".into(), json!(false));
    for def in ENTITIES {
        if let Some(list) = g.out.remove(def.name) {
            doc.insert(def.name.to_string(), list);
        }
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_big() {
        let a = generate(20, 7);
        assert_eq!(a, generate(20, 7));
        assert_ne!(a, generate(20, 8));
        assert_eq!(a["consumers"].as_array().unwrap().len(), 1200);
        assert_eq!(a["keyauth_credentials"].as_array().unwrap().len(), 1200);
        let types = a
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with('_'))
            .count();
        assert!(types >= 12, "{types}");
        assert!(super::super::declarative::validate(&a).is_ok());
    }
}
