//! The entities the mock Kong knows: their flat-form name, Admin API path, keys, foreign keys and
//! every field with its default, as Kong OSS 3.4–3.9 defines them.
//!
//! Read in `Kong/kong` at 3.4.0 and 3.9.1 (the field lists of the core entities are the same at
//! both tags, except `certificates.snis`, a transient input-only field added after 3.4):
//!
//! | flat-form name (`schema.name`) | Admin API collection | nested under a parent | verified in |
//! |---|---|---|---|
//! | `services` | `/services` | `/certificates/{c}/services` | `kong/db/schema/entities/services.lua` (no `admin_api_name`: the path is the name, `kong/api/endpoints.lua` `generate_collection_endpoints`) |
//! | `routes` | `/routes` | `/services/{s}/routes` | `entities/routes.lua` |
//! | `consumers` | `/consumers` | — | `entities/consumers.lua` |
//! | `plugins` | `/plugins` | `/services/{s}/plugins`, `/routes/{r}/plugins`, `/consumers/{c}/plugins` | `entities/plugins.lua` |
//! | `upstreams` | `/upstreams` | — | `entities/upstreams.lua` |
//! | `targets` | **none**: `/targets`, `/targets/{t}` answer 404 | `/upstreams/{u}/targets` | `kong/api/routes/targets.lua` (`endpoints.disable` → `not_found()`), `kong/api/routes/upstreams.lua`, `kong/db/dao/targets.lua` |
//! | `certificates` | `/certificates` | — | `entities/certificates.lua`, `kong/db/dao/certificates.lua` (`page` adds `snis`) |
//! | `snis` | `/snis` | `/certificates/{c}/snis` | `entities/snis.lua` |
//! | `ca_certificates` | `/ca_certificates` | — | `entities/ca_certificates.lua` |
//! | `keys` | `/keys` | `/key-sets/{k}/keys` | `entities/keys.lua` |
//! | `key_sets` | `/key-sets` | — | `entities/key_sets.lua` (`admin_api_name = "key-sets"`) |
//! | `vaults` | `/vaults` | — | `entities/vaults.lua` (`admin_api_name = "vaults"`) |
//! | `filter_chains` | `/filter-chains` | `/services/{s}/filter-chains`, `/routes/{r}/filter-chains` | `entities/filter_chains.lua` (`admin_api_name = "filter-chains"`) |
//! | `keyauth_credentials` | `/key-auths` | `/consumers/{c}/key-auth` | `kong/plugins/key-auth/daos.lua` (`admin_api_name`, `admin_api_nested_name`) |
//! | `basicauth_credentials` | `/basic-auths` | `/consumers/{c}/basic-auth` | `kong/plugins/basic-auth/daos.lua` |
//! | `hmacauth_credentials` | `/hmac-auths` | `/consumers/{c}/hmac-auth` | `kong/plugins/hmac-auth/daos.lua` |
//! | `jwt_secrets` | `/jwts` | `/consumers/{c}/jwt` | `kong/plugins/jwt/daos.lua` |
//! | `oauth2_credentials` | `/oauth2` | `/consumers/{c}/oauth2` | `kong/plugins/oauth2/daos.lua` |
//! | `oauth2_tokens` | `/oauth2_tokens` | `/oauth2/{c}/oauth2_tokens` | `kong/plugins/oauth2/daos.lua` (`ttl = true`; `oauth2_authorization_codes` has `db_export = false` and is not exported) |
//! | `acls` | `/acls` | `/consumers/{c}/acls` | `kong/plugins/acl/daos.lua` (no `admin_api_name`) |
//! | `workspaces` | none in OSS 3.9 (`generate_admin_api = false`); exported by `export_config()` | — | `entities/workspaces.lua` |
//! | `consumer_groups` | `/consumer_groups` | — | Kong Enterprise only (not in the OSS source; kept for Enterprise documents) |
//!
//! Timestamps: `created_at`/`updated_at` are integer seconds (`typedefs.auto_timestamp_s`), except
//! targets' (`auto_timestamp_ms`: a number with milliseconds); the bundled plugins' credential
//! entities have `created_at` only.

use serde_json::{json, Value};

/// A foreign key of an entity: `field` holds a reference to an entity of `reference`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub field: &'static str,
    pub reference: &'static str,
    /// Required at the top level of the flat form (a nested child gets it from its parent).
    pub required: bool,
}

/// How an entity is timestamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamps {
    /// `created_at` and `updated_at`, integer seconds.
    Seconds,
    /// `created_at` only, integer seconds (the bundled plugins' credentials).
    CreatedOnly,
    /// `created_at` and `updated_at`, seconds with milliseconds (targets).
    Millis,
}

/// One entity type.
#[derive(Clone, Copy, Debug)]
pub struct EntityDef {
    /// The flat-form key and `schema.name` (`keyauth_credentials`).
    pub name: &'static str,
    /// The Admin API collection (`/key-auths`), `None` when Kong has no global list.
    pub admin_path: Option<&'static str>,
    /// The segment under a parent (`admin_api_nested_name or admin_api_name or name`).
    pub nested_segment: &'static str,
    /// `endpoint_key`: what `/{collection}/{key}` accepts besides the id.
    pub endpoint_key: Option<&'static str>,
    /// Whether the endpoint key is unique (then references may name it, and it keys errors).
    pub endpoint_key_unique: bool,
    /// `cache_key`, used for Kong's deterministic ids.
    pub cache_key: &'static [&'static str],
    /// `auto = true` string fields Kong fills with a random string.
    pub auto_strings: &'static [&'static str],
    pub foreign: &'static [Foreign],
    /// Required fields (besides foreign keys) with no default.
    pub required: &'static [&'static str],
    pub timestamps: Timestamps,
    /// `ttl = true` schemas.
    pub ttl: bool,
    /// Not in Kong OSS.
    pub enterprise_only: bool,
    /// The file of `Kong/kong` that defines it.
    pub source: &'static str,
    /// Every field except `id` and the timestamps, with its default (`null` when none).
    template: fn() -> Value,
}

impl EntityDef {
    /// Every field except `id` and timestamps, with Kong's default or `null`.
    pub fn template(&self) -> Value {
        (self.template)()
    }

    /// Kong's `singular()` for `flattened_errors[].entity_type`: the name minus a final `s`.
    pub fn singular(&self) -> &'static str {
        self.name.strip_suffix('s').unwrap_or(self.name)
    }

    /// The foreign key of `self` that points at `parent`, when `self` can nest under it.
    pub fn foreign_to(&self, parent: &str) -> Option<&'static Foreign> {
        self.foreign.iter().find(|f| f.reference == parent)
    }

    pub fn is_foreign(&self, field: &str) -> Option<&'static Foreign> {
        self.foreign.iter().find(|f| f.field == field)
    }

    /// Whether `field` is one of the entity's own fields.
    pub fn has_field(&self, field: &str) -> bool {
        matches!(field, "id" | "created_at")
            || (field == "updated_at" && self.timestamps != Timestamps::CreatedOnly)
            || (field == "ttl" && self.ttl)
            || self.template().get(field).is_some()
    }
}

const fn fk(field: &'static str, reference: &'static str, required: bool) -> Foreign {
    Foreign {
        field,
        reference,
        required,
    }
}

fn healthchecks() -> Value {
    json!({
        "active": {
            "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/",
            "https_sni": null, "https_verify_certificate": true, "headers": null,
            "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
            "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                          "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
        },
        "passive": {
            "type": "http",
            "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                          300, 301, 302, 303, 304, 305, 306, 307, 308],
                        "successes": 0},
            "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0,
                          "http_failures": 0},
        },
        "threshold": 0,
    })
}

/// Kong's default plugin protocols: the `http` subsystem's, sorted (`typedefs.protocols`).
pub const PLUGIN_PROTOCOLS: [&str; 4] = ["grpc", "grpcs", "http", "https"];

/// The default workspace id of a DB-less node (`DECLARATIVE_DEFAULT_WORKSPACE_ID`,
/// `kong/constants.lua`).
pub const DEFAULT_WORKSPACE_ID: &str = "0dc6f45b-8f8d-40d2-a504-473544ee190b";

/// Every entity, parents before children: the order the mock lists collections in the flat form
/// (Kong sorts its schemas topologically, `kong/db/schema/topological_sort.lua`; this order is one
/// such sort, not necessarily the one a given Kong process prints).
pub const ENTITIES: &[EntityDef] = &[
    EntityDef {
        name: "workspaces",
        admin_path: None,
        nested_segment: "workspaces",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &["name"],
        auto_strings: &[],
        foreign: &[],
        required: &["name"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/workspaces.lua",
        template: || json!({"name": null, "comment": null, "meta": {}, "config": {}}),
    },
    EntityDef {
        name: "consumers",
        admin_path: Some("/consumers"),
        nested_segment: "consumers",
        endpoint_key: Some("username"),
        endpoint_key_unique: true,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[],
        required: &[],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/consumers.lua",
        template: || json!({"username": null, "custom_id": null, "tags": null}),
    },
    EntityDef {
        name: "certificates",
        admin_path: Some("/certificates"),
        nested_segment: "certificates",
        endpoint_key: None,
        endpoint_key_unique: false,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[],
        required: &["cert", "key"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/certificates.lua",
        template: || json!({"cert": null, "key": null, "cert_alt": null, "key_alt": null, "tags": null}),
    },
    EntityDef {
        name: "ca_certificates",
        admin_path: Some("/ca_certificates"),
        nested_segment: "ca_certificates",
        endpoint_key: None,
        endpoint_key_unique: false,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[],
        required: &["cert"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/ca_certificates.lua",
        template: || json!({"cert": null, "cert_digest": null, "tags": null}),
    },
    EntityDef {
        name: "key_sets",
        admin_path: Some("/key-sets"),
        nested_segment: "key-sets",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[],
        required: &[],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/key_sets.lua",
        template: || json!({"name": null, "tags": null}),
    },
    EntityDef {
        name: "keys",
        admin_path: Some("/keys"),
        nested_segment: "keys",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &["kid", "set"],
        auto_strings: &[],
        foreign: &[fk("set", "key_sets", false)],
        required: &["kid"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/keys.lua",
        template: || json!({"set": null, "name": null, "kid": null, "jwk": null, "pem": null, "tags": null}),
    },
    EntityDef {
        name: "vaults",
        admin_path: Some("/vaults"),
        nested_segment: "vaults",
        endpoint_key: Some("prefix"),
        endpoint_key_unique: true,
        cache_key: &["prefix"],
        auto_strings: &[],
        foreign: &[],
        required: &["prefix", "name"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/vaults.lua",
        template: || json!({"prefix": null, "name": null, "description": null, "config": {}, "tags": null}),
    },
    EntityDef {
        name: "services",
        admin_path: Some("/services"),
        nested_segment: "services",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[fk("client_certificate", "certificates", false)],
        required: &["host"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/services.lua",
        template: || {
            json!({
                "name": null, "retries": 5, "protocol": "http", "host": null, "port": 80,
                "path": null, "connect_timeout": 60000, "write_timeout": 60000,
                "read_timeout": 60000, "tags": null, "client_certificate": null,
                "tls_verify": null, "tls_verify_depth": null, "ca_certificates": null,
                "enabled": true,
            })
        },
    },
    EntityDef {
        name: "routes",
        admin_path: Some("/routes"),
        nested_segment: "routes",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[fk("service", "services", false)],
        required: &[],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/routes.lua",
        template: || {
            json!({
                "name": null, "protocols": ["http", "https"], "https_redirect_status_code": 426,
                "strip_path": true, "preserve_host": false, "request_buffering": true,
                "response_buffering": true, "tags": null, "service": null, "snis": null,
                "sources": null, "destinations": null, "methods": null, "hosts": null,
                "paths": null, "headers": null, "regex_priority": 0, "path_handling": "v0",
            })
        },
    },
    EntityDef {
        name: "snis",
        admin_path: Some("/snis"),
        nested_segment: "snis",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[fk("certificate", "certificates", true)],
        required: &["name"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/snis.lua",
        template: || json!({"name": null, "tags": null, "certificate": null}),
    },
    EntityDef {
        name: "upstreams",
        admin_path: Some("/upstreams"),
        nested_segment: "upstreams",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[fk("client_certificate", "certificates", false)],
        required: &["name"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/upstreams.lua",
        template: || {
            json!({
                "name": null, "algorithm": "round-robin", "hash_on": "none",
                "hash_fallback": "none", "hash_on_header": null, "hash_fallback_header": null,
                "hash_on_cookie": null, "hash_on_cookie_path": "/", "hash_on_query_arg": null,
                "hash_fallback_query_arg": null, "hash_on_uri_capture": null,
                "hash_fallback_uri_capture": null, "slots": 10000,
                "healthchecks": healthchecks(), "tags": null, "host_header": null,
                "client_certificate": null, "use_srv_name": false,
            })
        },
    },
    EntityDef {
        name: "targets",
        admin_path: None,
        nested_segment: "targets",
        endpoint_key: Some("target"),
        endpoint_key_unique: false,
        cache_key: &["upstream", "target"],
        auto_strings: &[],
        foreign: &[fk("upstream", "upstreams", true)],
        required: &["target"],
        timestamps: Timestamps::Millis,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/targets.lua",
        template: || json!({"upstream": null, "target": null, "weight": 100, "tags": null}),
    },
    EntityDef {
        name: "consumer_groups",
        admin_path: Some("/consumer_groups"),
        nested_segment: "consumer_groups",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &[],
        auto_strings: &[],
        foreign: &[],
        required: &["name"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: true,
        source: "(Kong Enterprise; not in Kong/kong)",
        template: || json!({"name": null, "tags": null}),
    },
    EntityDef {
        name: "plugins",
        admin_path: Some("/plugins"),
        nested_segment: "plugins",
        endpoint_key: Some("instance_name"),
        endpoint_key_unique: true,
        cache_key: &["name", "route", "service", "consumer"],
        auto_strings: &[],
        foreign: &[
            fk("route", "routes", false),
            fk("service", "services", false),
            fk("consumer", "consumers", false),
        ],
        required: &["name"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/plugins.lua",
        template: || {
            json!({
                "name": null, "instance_name": null, "route": null, "service": null,
                "consumer": null, "config": {}, "protocols": PLUGIN_PROTOCOLS,
                "enabled": true, "tags": null,
            })
        },
    },
    EntityDef {
        name: "filter_chains",
        admin_path: Some("/filter-chains"),
        nested_segment: "filter-chains",
        endpoint_key: Some("name"),
        endpoint_key_unique: true,
        cache_key: &["route", "service"],
        auto_strings: &[],
        foreign: &[
            fk("route", "routes", false),
            fk("service", "services", false),
        ],
        required: &["filters"],
        timestamps: Timestamps::Seconds,
        ttl: false,
        enterprise_only: false,
        source: "kong/db/schema/entities/filter_chains.lua",
        template: || {
            json!({"name": null, "enabled": true, "route": null, "service": null,
                   "filters": null, "tags": null})
        },
    },
    EntityDef {
        name: "acls",
        admin_path: Some("/acls"),
        nested_segment: "acls",
        endpoint_key: None,
        endpoint_key_unique: false,
        cache_key: &["consumer", "group"],
        auto_strings: &[],
        foreign: &[fk("consumer", "consumers", true)],
        required: &["group"],
        timestamps: Timestamps::CreatedOnly,
        ttl: false,
        enterprise_only: false,
        source: "kong/plugins/acl/daos.lua",
        template: || json!({"consumer": null, "group": null, "tags": null}),
    },
    EntityDef {
        name: "basicauth_credentials",
        admin_path: Some("/basic-auths"),
        nested_segment: "basic-auth",
        endpoint_key: Some("username"),
        endpoint_key_unique: true,
        cache_key: &["username"],
        auto_strings: &[],
        foreign: &[fk("consumer", "consumers", true)],
        required: &["username", "password"],
        timestamps: Timestamps::CreatedOnly,
        ttl: false,
        enterprise_only: false,
        source: "kong/plugins/basic-auth/daos.lua",
        template: || json!({"consumer": null, "username": null, "password": null, "tags": null}),
    },
    EntityDef {
        name: "hmacauth_credentials",
        admin_path: Some("/hmac-auths"),
        nested_segment: "hmac-auth",
        endpoint_key: Some("username"),
        endpoint_key_unique: true,
        cache_key: &["username"],
        auto_strings: &["secret"],
        foreign: &[fk("consumer", "consumers", true)],
        required: &["username"],
        timestamps: Timestamps::CreatedOnly,
        ttl: false,
        enterprise_only: false,
        source: "kong/plugins/hmac-auth/daos.lua",
        template: || json!({"consumer": null, "username": null, "secret": null, "tags": null}),
    },
    EntityDef {
        name: "jwt_secrets",
        admin_path: Some("/jwts"),
        nested_segment: "jwt",
        endpoint_key: Some("key"),
        endpoint_key_unique: true,
        cache_key: &["key"],
        auto_strings: &["key", "secret"],
        foreign: &[fk("consumer", "consumers", true)],
        required: &[],
        timestamps: Timestamps::CreatedOnly,
        ttl: false,
        enterprise_only: false,
        source: "kong/plugins/jwt/daos.lua",
        template: || {
            json!({"consumer": null, "key": null, "secret": null, "rsa_public_key": null,
                   "algorithm": "HS256", "tags": null})
        },
    },
    EntityDef {
        name: "keyauth_credentials",
        admin_path: Some("/key-auths"),
        nested_segment: "key-auth",
        endpoint_key: Some("key"),
        endpoint_key_unique: true,
        cache_key: &["key"],
        auto_strings: &["key"],
        foreign: &[fk("consumer", "consumers", true)],
        required: &[],
        timestamps: Timestamps::CreatedOnly,
        ttl: true,
        enterprise_only: false,
        source: "kong/plugins/key-auth/daos.lua",
        template: || json!({"consumer": null, "key": null, "tags": null}),
    },
    EntityDef {
        name: "oauth2_credentials",
        admin_path: Some("/oauth2"),
        nested_segment: "oauth2",
        endpoint_key: Some("client_id"),
        endpoint_key_unique: true,
        cache_key: &["client_id"],
        auto_strings: &["client_id", "client_secret"],
        foreign: &[fk("consumer", "consumers", true)],
        required: &["name"],
        timestamps: Timestamps::CreatedOnly,
        ttl: false,
        enterprise_only: false,
        source: "kong/plugins/oauth2/daos.lua",
        template: || {
            json!({"consumer": null, "name": null, "client_id": null, "client_secret": null,
                   "hash_secret": false, "redirect_uris": null, "tags": null,
                   "client_type": "confidential"})
        },
    },
    EntityDef {
        name: "oauth2_tokens",
        admin_path: Some("/oauth2_tokens"),
        nested_segment: "oauth2_tokens",
        endpoint_key: Some("access_token"),
        endpoint_key_unique: true,
        cache_key: &["access_token"],
        auto_strings: &["access_token"],
        foreign: &[
            fk("service", "services", false),
            fk("credential", "oauth2_credentials", true),
        ],
        required: &["expires_in"],
        timestamps: Timestamps::CreatedOnly,
        ttl: true,
        enterprise_only: false,
        source: "kong/plugins/oauth2/daos.lua",
        template: || {
            json!({"service": null, "credential": null, "token_type": "bearer",
                   "expires_in": null, "access_token": null, "refresh_token": null,
                   "authenticated_userid": null, "scope": null})
        },
    },
];

/// The entity named `name` (flat-form key).
pub fn entity(name: &str) -> Option<&'static EntityDef> {
    ENTITIES.iter().find(|e| e.name == name)
}

/// The entity whose Admin API collection is `/{segment}`.
pub fn by_admin_segment(segment: &str) -> Option<&'static EntityDef> {
    ENTITIES
        .iter()
        .find(|e| e.admin_path.and_then(|p| p.strip_prefix('/')) == Some(segment))
}

/// The child entity listed as `/{parent}/{key}/{segment}`, with its foreign key to the parent.
pub fn nested_child(
    parent: &EntityDef,
    segment: &str,
) -> Option<(&'static EntityDef, &'static Foreign)> {
    ENTITIES.iter().find_map(|e| {
        if e.nested_segment != segment {
            return None;
        }
        e.foreign_to(parent.name).map(|f| (e, f))
    })
}

/// The children that may be nested inside an entity of `parent` in a declarative document
/// (`services[].routes[]`, `consumers[].keyauth_credentials[]`, ...), keyed by the child's
/// collection name, with the child's foreign key to the parent.
pub fn nestable_children(parent: &str) -> Vec<(&'static EntityDef, &'static Foreign)> {
    ENTITIES
        .iter()
        .filter_map(|e| e.foreign_to(parent).map(|f| (e, f)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_are_unique_and_children_follow_parents() {
        let mut paths: Vec<_> = ENTITIES.iter().filter_map(|e| e.admin_path).collect();
        paths.sort_unstable();
        let n = paths.len();
        paths.dedup();
        assert_eq!(paths.len(), n);
        for (i, e) in ENTITIES.iter().enumerate() {
            for f in e.foreign {
                let parent = ENTITIES.iter().position(|p| p.name == f.reference).unwrap();
                assert!(parent < i, "{} before {}", f.reference, e.name);
            }
        }
        assert_eq!(
            by_admin_segment("key-auths").unwrap().name,
            "keyauth_credentials"
        );
        assert!(by_admin_segment("targets").is_none());
        let up = entity("upstreams").unwrap();
        assert_eq!(nested_child(up, "targets").unwrap().0.name, "targets");
        assert_eq!(
            entity("keyauth_credentials").unwrap().singular(),
            "keyauth_credential"
        );
    }
}
