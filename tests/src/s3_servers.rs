//! The real S3 servers CI starts (`.ci/servers/s3.sh`: s3s-fs as `S3S_*`, moto as `MOTO_*`), read
//! from the environment. When a variable is missing the test FAILS if `CI` is set (CI must never
//! skip silently) and is skipped with a `SKIP ...` line otherwise.

/// One real S3 server.
#[derive(Clone, Debug)]
pub struct S3Server {
    pub name: &'static str,
    /// `http://host:port`.
    pub endpoint: String,
    /// `host:port`, the `dispatch_http_call` upstream.
    pub host_port: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

impl S3Server {
    /// The server whose variables start with `prefix` (`S3S`, `MOTO`); `None` means skip.
    pub fn from_env(name: &'static str, prefix: &str, test: &str) -> Option<S3Server> {
        let var = |suffix: &str| {
            let key = format!("{prefix}_{suffix}");
            std::env::var(&key)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or(key)
        };
        let got = (|| {
            Ok::<_, String>((
                var("ENDPOINT")?,
                var("ACCESS_KEY")?,
                var("SECRET_KEY")?,
                var("BUCKET").unwrap_or_else(|_| "interop".into()),
            ))
        })();
        let (endpoint, access_key, secret_key, bucket) = match got {
            Ok(v) => v,
            Err(missing) => {
                if std::env::var_os("CI").is_some() {
                    panic!(
                        "{test}: {missing} is not set and CI is: start the servers with \
                         `eval \"$(bash .ci/servers/s3.sh)\"` before the interop tests"
                    );
                }
                eprintln!(
                    "SKIP {test} ({name}): {missing} not set; run `eval \"$(bash \
                     .ci/servers/s3.sh)\"` first (with CI set this is a failure)"
                );
                return None;
            }
        };
        let host_port = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        assert!(
            !host_port.contains('/') && host_port.contains(':'),
            "{prefix}_ENDPOINT must be http://host:port, got {endpoint}"
        );
        Some(S3Server {
            name,
            endpoint,
            host_port,
            access_key,
            secret_key,
            bucket,
        })
    }
}
