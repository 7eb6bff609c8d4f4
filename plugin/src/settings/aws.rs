//! The AWS credential provider the settings select (docs/credentials.md): what is configured,
//! not how credentials are fetched (`store/aws_credentials.rs` does that).

use crate::http_url::HttpUrl;
use crate::secret::Secret;

/// The ECS/EKS container-credentials host for `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
pub const ECS_CREDENTIALS_HOST: &str = "http://169.254.170.2";
/// The instance metadata service (`AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides it).
pub const IMDS_URL: &str = "http://169.254.169.254";
/// One set of AWS keys. `Debug` shows none of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsKeys {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// Where credentials come from, in the order the settings select them (docs/credentials.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwsProvider {
    /// `aws_access_key_id` / `AWS_ACCESS_KEY_ID` and friends: used as they are.
    Static(AwsKeys),
    /// `GET <url>` with `Authorization: <token>` when there is one (ECS task roles:
    /// `169.254.170.2` + the relative URI; EKS Pod Identity: a full URI and a token).
    Container {
        url: HttpUrl,
        upstream: String,
        authorization: Option<Secret>,
    },
    /// IMDSv2 at `url` (its base).
    Imds { url: HttpUrl, upstream: String },
    /// STS `AssumeRoleWithWebIdentity` (unsigned) at `sts`.
    WebIdentity {
        sts: HttpUrl,
        upstream: String,
        role_arn: String,
        session_name: String,
        token: Secret,
    },
}

impl AwsProvider {
    /// For log lines: the provider and its endpoint, never a credential.
    pub fn describe(&self) -> String {
        match self {
            AwsProvider::Static(_) => "static keys (settings or environment)".to_string(),
            AwsProvider::Container { url, .. } => {
                format!("container credentials at {}", endpoint(url))
            }
            AwsProvider::Imds { url, .. } => {
                format!("the instance metadata service {}", endpoint(url))
            }
            AwsProvider::WebIdentity { sts, role_arn, .. } => {
                format!("STS web identity at {} for {role_arn}", endpoint(sts))
            }
        }
    }
}

fn endpoint(url: &HttpUrl) -> String {
    format!("{}://{}", url.scheme, url.authority())
}
