//! The AWS credential sources only a process can use (docs/credentials.md): files. The filter's
//! chain (keys, container credentials, web identity, IMDSv2) runs in the core; the tool adds, in
//! the AWS SDKs' order, before the core sees the settings:
//!
//! 1. keys in the environment or the settings: nothing to add;
//! 2. `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (EKS IRSA): the token is read from the file and
//!    handed to the core's web-identity provider (`aws_web_identity_token`);
//! 3. a profile (`AWS_PROFILE`, else `default`) of the shared credentials file
//!    (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`) or config file (`AWS_CONFIG_FILE`,
//!    else `~/.aws/config`, sections `[profile NAME]`): its static keys, and its `region` when none
//!    is set;
//! 4. `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (EKS Pod Identity): the token for the container
//!    endpoint;
//! 5. the rest (container credentials, IMDSv2) is the core's.
//!
//! The INI files are read with `rust-ini` (a small pure-Rust reader) rather than `aws-config`,
//! whose runtime (tokio, hyper, the smithy client) would double the tool's build time on CI's two
//! cores and grow the binary, for the one thing the core does not already do: read two INI files.
//! Files are read once per run (a run ends within `--timeout`); nothing read is ever printed.

use std::path::PathBuf;

use ini::{Ini, ParseOption};

/// What the files add to the settings: (setting, value) pairs, secrets among them.
pub type Additions = Vec<(&'static str, String)>;

/// `env`: the process environment; `has`: whether the settings (file or flags) set a key.
pub fn credential_settings(
    env: &dyn Fn(&str) -> Option<String>,
    has: &dyn Fn(&str) -> bool,
) -> Result<Additions, String> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut out = Additions::new();
    let keys_given = (set("AWS_ACCESS_KEY_ID").is_some() && set("AWS_SECRET_ACCESS_KEY").is_some())
        || has("aws_access_key_id");
    let region_given =
        set("AWS_REGION").is_some() || set("AWS_DEFAULT_REGION").is_some() || has("aws_region");
    let profile = read_profile(env)?;
    if !region_given {
        if let Some(region) = profile.as_ref().and_then(|p| p.region.clone()) {
            out.push(("aws_region", region));
        }
    }
    if keys_given {
        return Ok(out);
    }
    if let (Some(file), false) = (
        set("AWS_WEB_IDENTITY_TOKEN_FILE"),
        has("aws_web_identity_token"),
    ) {
        let token = read_token(&file, "AWS_WEB_IDENTITY_TOKEN_FILE")?;
        out.push(("aws_web_identity_token", token));
        return Ok(out);
    }
    if let Some(p) = profile {
        if let (Some(ak), Some(sk)) = (p.access_key_id, p.secret_access_key) {
            out.push(("aws_access_key_id", ak));
            out.push(("aws_secret_access_key", sk));
            if let Some(t) = p.session_token {
                out.push(("aws_session_token", t));
            }
            return Ok(out);
        }
    }
    if let (Some(file), false) = (
        set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        has("aws_container_authorization_token")
            || set("AWS_CONTAINER_AUTHORIZATION_TOKEN").is_some(),
    ) {
        let token = read_token(&file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")?;
        out.push(("aws_container_authorization_token", token));
    }
    Ok(out)
}

/// A token file's content, trimmed; the error names the variable and the path, never content.
fn read_token(path: &str, variable: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {variable} ({path}): {e}"))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(format!("{variable} ({path}) is empty"));
    }
    Ok(token)
}

/// The settings of one profile.
#[derive(Debug, Default, PartialEq, Eq)]
struct Profile {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
}

/// The selected profile from the credentials and config files (credentials win, as in the CLI);
/// `None` when neither file has it. A profile named by `AWS_PROFILE` that no file has is an error.
fn read_profile(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Profile>, String> {
    let explicit = env("AWS_PROFILE").filter(|p| !p.trim().is_empty());
    let name = explicit.clone().unwrap_or_else(|| "default".to_string());
    let home = env("HOME").map(PathBuf::from);
    let file = |var: &str, rel: &str| {
        env(var)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(rel)))
    };
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let config = file("AWS_CONFIG_FILE", ".aws/config");
    let mut found = false;
    let mut profile = Profile::default();
    // The config file names its sections `[profile NAME]` (and `[default]`).
    let config_section = if name == "default" {
        "default".to_string()
    } else {
        format!("profile {name}")
    };
    for (path, section) in [(credentials, name.clone()), (config, config_section)] {
        let Some(path) = path.filter(|p| p.is_file()) else {
            continue;
        };
        let options = ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..ParseOption::default()
        };
        // The reader's error may quote a line (a secret): only the path is reported.
        let ini = Ini::load_from_file_opt(&path, options)
            .map_err(|_| format!("cannot parse the AWS shared file {}", path.display()))?;
        let Some(props) = ini.section(Some(section.as_str())) else {
            continue;
        };
        found = true;
        let get = |k: &str| {
            props
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        profile.access_key_id = profile.access_key_id.or(get("aws_access_key_id"));
        profile.secret_access_key = profile.secret_access_key.or(get("aws_secret_access_key"));
        profile.session_token = profile.session_token.or(get("aws_session_token"));
        profile.region = profile.region.or(get("region"));
    }
    match (found, explicit) {
        (true, _) => Ok(Some(profile)),
        (false, Some(name)) => Err(format!(
            "AWS_PROFILE names the profile {name:?}, which neither the shared credentials file nor the config file has"
        )),
        (false, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(env: &[(&str, String)], has: &[&str]) -> Result<Additions, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let has: Vec<String> = has.iter().map(|s| s.to_string()).collect();
        credential_settings(&|k| env.get(k).cloned(), &|k| has.iter().any(|h| h == k))
    }

    fn files(dir: &std::path::Path) -> Vec<(&'static str, String)> {
        std::fs::write(
            dir.join("credentials"),
            "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = default/secret+key\n\n\
             # a comment\n[ci]\naws_access_key_id=AKIACI\naws_secret_access_key=ci-secret\naws_session_token = ci-token\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("config"),
            "[default]\nregion = eu-west-1\n[profile ci]\nregion = us-west-2\ns3 =\n  max_concurrent_requests = 10\n[profile only-config]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = config-secret\n",
        )
        .unwrap();
        vec![
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("credentials").display().to_string(),
            ),
            ("AWS_CONFIG_FILE", dir.join("config").display().to_string()),
        ]
    }

    fn get<'a>(a: &'a Additions, k: &str) -> Option<&'a str> {
        a.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn profiles_from_the_shared_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = files(dir.path());
        let a = run(&env, &[]).unwrap();
        assert_eq!(get(&a, "aws_access_key_id"), Some("AKIADEFAULT"));
        assert_eq!(get(&a, "aws_secret_access_key"), Some("default/secret+key"));
        assert_eq!(get(&a, "aws_region"), Some("eu-west-1"));
        env.push(("AWS_PROFILE", "ci".into()));
        let a = run(&env, &[]).unwrap();
        assert_eq!(get(&a, "aws_session_token"), Some("ci-token"));
        assert_eq!(get(&a, "aws_region"), Some("us-west-2"));
        env.last_mut().unwrap().1 = "only-config".into();
        let a = run(&env, &[]).unwrap();
        assert_eq!(get(&a, "aws_access_key_id"), Some("AKIACONFIG"));
        env.last_mut().unwrap().1 = "nope".into();
        let e = run(&env, &[]).unwrap_err();
        assert!(e.contains("\"nope\""), "{e}");
        // Keys in the environment win; the profile's region still applies when none is set.
        env.pop();
        env.push(("AWS_ACCESS_KEY_ID", "AKIAENV".into()));
        env.push(("AWS_SECRET_ACCESS_KEY", "env-secret".into()));
        let a = run(&env, &[]).unwrap();
        assert_eq!(get(&a, "aws_access_key_id"), None);
        assert_eq!(get(&a, "aws_region"), Some("eu-west-1"));
        env.push(("AWS_REGION", "ap-south-1".into()));
        assert!(run(&env, &[]).unwrap().is_empty());
    }

    #[test]
    fn token_files_of_irsa_and_pod_identity() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "eyJ.web.identity\n").unwrap();
        let env = vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r".into()),
            ("HOME", dir.path().display().to_string()),
        ];
        let a = run(&env, &[]).unwrap();
        assert_eq!(get(&a, "aws_web_identity_token"), Some("eyJ.web.identity"));
        let env = vec![
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token.display().to_string(),
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials".into(),
            ),
        ];
        let a = run(&env, &[]).unwrap();
        assert_eq!(
            get(&a, "aws_container_authorization_token"),
            Some("eyJ.web.identity")
        );
        let env = vec![(
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "/nonexistent/token".to_string(),
        )];
        let e = run(&env, &[]).unwrap_err();
        assert!(e.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{e}");
    }
}
