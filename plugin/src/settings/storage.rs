//! Where exports live: parsing `s3://bucket/prefix`, `gcs://bucket/prefix` (or `gs://`) and the
//! Kong-compatible key layout `<prefix>/<gateway version>/config.json`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    S3,
    Gcs,
}

/// Where exports live (`location`), which `dispatch_http_call` upstream reaches the store
/// (`host:port` on ngx, a cluster name on Envoy), and the backend's own settings. The core builds
/// its store from this (`store::for_settings`) and never names a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageSettings {
    pub location: StorageUrl,
    pub upstream: String,
    pub backend: StorageBackend,
}

/// The backend's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageBackend {
    S3(super::S3Settings),
    Gcs(super::GcsSettings),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageUrl {
    pub backend: Backend,
    pub bucket: String,
    /// Normalised: no leading, trailing or doubled slashes; may be empty.
    pub prefix: String,
}

impl StorageUrl {
    pub fn parse(input: &str) -> Result<StorageUrl, String> {
        let input = input.trim();
        let (scheme, rest) = crate::text::split_once(input, "://").ok_or_else(|| {
            "must look like s3://bucket/prefix or gcs://bucket/prefix".to_string()
        })?;
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Backend::S3,
            "gcs" | "gs" => Backend::Gcs,
            other => {
                return Err(format!(
                    "unknown storage scheme '{other}' (use s3://, gcs:// or gs://)"
                ))
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        validate_bucket(bucket)?;
        let prefix = normalise_prefix(prefix);
        if prefix.split('/').any(|s| s == "." || s == "..") {
            return Err("prefix must not contain '.' or '..' segments".to_string());
        }
        if prefix.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("prefix must not contain control characters".to_string());
        }
        Ok(StorageUrl {
            backend,
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// `<prefix>/<version>/config.json` (no leading slash).
    pub fn config_key(&self, gateway_version: &str) -> String {
        join(&[&self.prefix, gateway_version, "config.json"])
    }

    /// `<prefix>/<version>/election/`: the leader election's registrations (docs/election.md).
    pub fn election_prefix(&self, gateway_version: &str) -> String {
        let mut p = join(&[&self.prefix, gateway_version, "election"]);
        p.push('/');
        p
    }
}

/// Drops empty segments, so `/a//b/` becomes `a/b`.
pub fn normalise_prefix(prefix: &str) -> String {
    let parts = prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    crate::text::join(&parts, "/")
}

fn join(parts: &[&str]) -> String {
    let parts = parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>();
    crate::text::join(&parts, "/")
}

/// The common subset of S3 and GCS bucket naming rules (3–63 lowercase letters, digits, `-`, `.`,
/// `_` for GCS), enough to catch typos and anything unsafe in a host name or path.
fn validate_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("bucket name is missing".to_string());
    }
    if bucket.len() < 3 || bucket.len() > 63 {
        return Err("bucket name must be 3 to 63 characters long".to_string());
    }
    if !bucket.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
    }) {
        return Err(
            "bucket name may only contain lowercase letters, digits, '-', '.' and '_'".to_string(),
        );
    }
    let edge_ok = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    if !edge_ok(bucket.as_bytes().first()) || !edge_ok(bucket.as_bytes().last()) {
        return Err("bucket name must start and end with a letter or digit".to_string());
    }
    Ok(())
}

/// A gateway version becomes one path segment of the key.
pub fn validate_gateway_version(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("must not be empty".to_string());
    }
    if v == "." || v == ".." || v.contains('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(
            "must be one path segment without '/', spaces or control characters".to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_and_normalises_prefix() {
        let s = StorageUrl::parse("s3://my-bucket//kong-configs//dp/").unwrap();
        assert_eq!(s.backend, Backend::S3);
        assert_eq!(s.bucket, "my-bucket");
        assert_eq!(s.prefix, "kong-configs/dp");
        assert_eq!(
            s.config_key("3.4.2.0"),
            "kong-configs/dp/3.4.2.0/config.json"
        );
        assert_eq!(
            s.election_prefix("3.4.2.0"),
            "kong-configs/dp/3.4.2.0/election/"
        );
    }

    #[test]
    fn empty_prefix_has_no_leading_slash() {
        let s = StorageUrl::parse("s3://bucket").unwrap();
        assert_eq!(s.prefix, "");
        assert_eq!(s.config_key("3.9"), "3.9/config.json");
        let s = StorageUrl::parse("s3://bucket/").unwrap();
        assert_eq!(s.config_key("3.9"), "3.9/config.json");
    }

    #[test]
    fn gcs_and_gs_are_the_same_backend() {
        assert_eq!(
            StorageUrl::parse("gcs://b-1/p").unwrap().backend,
            Backend::Gcs
        );
        assert_eq!(
            StorageUrl::parse("gs://b-1/p").unwrap().backend,
            Backend::Gcs
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "ftp://bucket/p",
            "bucket/p",
            "s3:///p",
            "s3://Bucket/p",
            "s3://ab/p",
            "s3://-abc/p",
            "s3://bucket/../x",
            "s3://bu cket/p",
        ] {
            assert!(StorageUrl::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn gateway_version_is_one_segment() {
        assert!(validate_gateway_version("3.4.2.0").is_ok());
        assert!(validate_gateway_version("").is_err());
        assert!(validate_gateway_version("3/4").is_err());
        assert!(validate_gateway_version("..").is_err());
    }
}
