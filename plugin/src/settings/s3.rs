//! S3 settings: credentials, region, endpoint, and `cluster_fallback_export_s3_config` mapped to
//! PutObject headers.

use std::fmt;

use crate::json::{Map, Value};

use super::aws::{AwsKeys, AwsProvider, ECS_CREDENTIALS_HOST, IMDS_URL};
use super::lookup::{object_or_json_string, Field, Lookup};
use super::{err, Fail, Secret};
use crate::http_url::{percent_encode, HttpUrl};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// Where the signing keys come from (docs/credentials.md).
    pub credentials: AwsProvider,
    pub region: String,
    /// `AWS_CONFIG_STORAGE_ENDPOINT`: an S3-compatible endpoint (always path-style).
    pub endpoint: Option<HttpUrl>,
    pub force_path_style: bool,
    /// Send `If-Match` / `If-None-Match` (stores without conditional writes: turn off).
    pub conditional_writes: bool,
    /// `cluster_fallback_export_s3_config` mapped to (header name, value), in a stable order.
    pub extra_headers: HeaderList,
}

impl S3Settings {
    /// The configured keys, when they are static.
    pub fn keys(&self) -> Option<&AwsKeys> {
        match &self.credentials {
            AwsProvider::Static(k) => Some(k),
            _ => None,
        }
    }
}

/// Headers whose values may be secret (`SSECustomerKey`): `Debug` shows only the names.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, String)>);

impl fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// Metadata keys config-bridge writes itself; an operator may not override them.
pub const RESERVED_METADATA: &[&str] = &[
    "uploader",
    "config-applied-at",
    "config-sha256",
    "config-sequence",
    "config-updated-at",
    "config-supersedes",
    // Sealed exports (docs/sealed-exports.md).
    crate::seal::META_SIGNATURE,
    crate::seal::META_SIGNATURE_KEY,
    crate::seal::META_ENCRYPTION_KEY,
];

pub(crate) fn default_s3_upstream(s3: &S3Settings) -> String {
    match &s3.endpoint {
        Some(e) => e.upstream(),
        None => format!("s3.{}.amazonaws.com:443", s3.region),
    }
}

pub(crate) fn parse_s3(l: &Lookup<'_>, required: bool) -> Result<S3Settings, Fail> {
    let region = l.string("aws_region", &["AWS_REGION", "AWS_DEFAULT_REGION"])?;
    let endpoint = match l.string("storage_endpoint", &["AWS_CONFIG_STORAGE_ENDPOINT"])? {
        None => None,
        Some((raw, field)) => Some(HttpUrl::parse(&raw).or_else(|r| err(field, r))?),
    };
    let region = match region {
        Some((r, field)) => {
            if !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return err(field, "must contain only letters, digits and '-'");
            }
            r
        }
        None if required => {
            return err(
                "aws_region",
                "S3 region is not configured (set aws_region or AWS_REGION)",
            )
        }
        None => String::new(),
    };
    let credentials = parse_credentials(l, &region, required)?;
    let force_path_style = l.bool("s3_force_path_style", &[], false)?;
    let conditional_writes = l.bool("s3_conditional_writes", &[], true)?;
    let extra_headers = match l.get(
        "cluster_fallback_export_s3_config",
        &["KONG_CLUSTER_FALLBACK_EXPORT_S3_CONFIG"],
    ) {
        None => HeaderList::default(),
        Some(raw) => {
            let Some(map) = object_or_json_string(raw.value) else {
                return err(
                    raw.field,
                    "expected a JSON object (or a JSON string holding one)",
                );
            };
            HeaderList(s3_params_to_headers(
                &map,
                "cluster_fallback_export_s3_config",
            )?)
        }
    };
    Ok(S3Settings {
        credentials,
        region,
        endpoint,
        force_path_style,
        conditional_writes,
        extra_headers,
    })
}

/// A URL setting; `default` when unset.
fn url_setting<'k>(
    l: &Lookup<'_>,
    key: &'k str,
    env: &[&'k str],
) -> Result<Option<(HttpUrl, Field<'k>)>, Fail> {
    match l.string(key, env)? {
        None => Ok(None),
        Some((raw, field)) => match HttpUrl::parse(&raw) {
            Ok(u) => Ok(Some((u, field))),
            Err(r) => err(field, r),
        },
    }
}

/// The upstream of a credentials endpoint: its setting (an Envoy cluster name), else the URL's
/// `host:port`.
fn upstream_of(l: &Lookup<'_>, key: &str, url: &HttpUrl) -> Result<String, Fail> {
    Ok(match l.string(key, &[])? {
        Some((u, _)) => u,
        None => url.upstream(),
    })
}

/// The credential provider chain (docs/credentials.md), decided from what is configured:
/// keys → container credentials → web identity (a token the filter can read) → IMDSv2.
fn parse_credentials(l: &Lookup<'_>, region: &str, required: bool) -> Result<AwsProvider, Fail> {
    if let Some(keys) = static_keys(l)? {
        return Ok(keys);
    }
    if let Some(container) = container_provider(l)? {
        return Ok(container);
    }
    if let Some(web) = web_identity_provider(l, region)? {
        return Ok(web);
    }
    imds_provider(l, required)
}

/// Both keys, or neither (then the chain goes on).
fn static_keys(l: &Lookup<'_>) -> Result<Option<AwsProvider>, Fail> {
    let access_key_id = l.secret("aws_access_key_id", &["AWS_ACCESS_KEY_ID"])?;
    let secret_access_key = l.secret("aws_secret_access_key", &["AWS_SECRET_ACCESS_KEY"])?;
    let session_token = l.secret("aws_session_token", &["AWS_SESSION_TOKEN"])?;
    match (access_key_id, secret_access_key) {
        (Some(access_key_id), Some(secret_access_key)) => {
            if !access_key_id.expose().bytes().all(|b| b.is_ascii_alphanumeric()) {
                return err("aws_access_key_id", "must contain only letters and digits");
            }
            Ok(Some(AwsProvider::Static(AwsKeys {
                access_key_id,
                secret_access_key,
                session_token,
            })))
        }
        (Some(_), None) => err(
                "aws_secret_access_key",
                "is not configured (set it or AWS_SECRET_ACCESS_KEY, or neither key to use the credential chain)",
            ),
        (None, Some(_)) => err(
                "aws_access_key_id",
                "is not configured (set it or AWS_ACCESS_KEY_ID, or neither key to use the credential chain)",
            ),
        (None, None) => Ok(None),
    }
}

/// The container credentials endpoint (ECS, EKS Pod Identity), if configured.
fn container_provider(l: &Lookup<'_>) -> Result<Option<AwsProvider>, Fail> {
    let container = match url_setting(
        l,
        "aws_container_credentials_uri",
        &["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
    )? {
        Some((url, _)) => Some(url),
        None => match l.string(
            "aws_container_credentials_relative_uri",
            &["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
        )? {
            None => None,
            Some((rel, field)) => {
                if !rel.starts_with('/') {
                    return err(field, "must be a path starting with '/'");
                }
                Some(
                    HttpUrl::parse(&format!("{ECS_CREDENTIALS_HOST}{rel}"))
                        .or_else(|r| err(field, r))?,
                )
            }
        },
    };
    let Some(url) = container else {
        return Ok(None);
    };
    let upstream = upstream_of(l, "aws_container_credentials_upstream", &url)?;
    let authorization = l.secret(
        "aws_container_authorization_token",
        &["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
    )?;
    Ok(Some(AwsProvider::Container {
        url,
        upstream,
        authorization,
    }))
}

/// STS AssumeRoleWithWebIdentity, if a token is configured.
fn web_identity_provider(l: &Lookup<'_>, region: &str) -> Result<Option<AwsProvider>, Fail> {
    let Some(token) = l.secret("aws_web_identity_token", &[])? else {
        return Ok(None);
    };
    let Some((role_arn, _)) = l.string("aws_role_arn", &["AWS_ROLE_ARN"])? else {
        return err(
            "aws_role_arn",
            "is not configured (aws_web_identity_token needs the role to assume; set it or AWS_ROLE_ARN)",
        );
    };
    let session_name = match l.string("aws_role_session_name", &["AWS_ROLE_SESSION_NAME"])? {
        Some((n, field)) => {
            let ok = n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"=,.@-_".contains(&b));
            if !ok {
                return err(
                    field,
                    "must be 2 to 64 characters of letters, digits and =,.@-_",
                );
            }
            n
        }
        None => "config-bridge".to_string(),
    };
    let sts = match url_setting(l, "aws_sts_endpoint", &["AWS_ENDPOINT_URL_STS"])? {
        Some((u, _)) => u,
        None if region.is_empty() => {
            HttpUrl::parse("https://sts.amazonaws.com").or_else(|r| err("aws_sts_endpoint", r))?
        }
        None => HttpUrl::parse(&format!("https://sts.{region}.amazonaws.com"))
            .or_else(|r| err("aws_sts_endpoint", r))?,
    };
    let upstream = upstream_of(l, "aws_sts_upstream", &sts)?;
    Ok(Some(AwsProvider::WebIdentity {
        sts,
        upstream,
        role_arn,
        session_name,
        token,
    }))
}

/// IMDSv2, unless disabled (then no credentials: an error if they are required).
fn imds_provider(l: &Lookup<'_>, required: bool) -> Result<AwsProvider, Fail> {
    let imds_off = l.bool("aws_imds_disabled", &["AWS_EC2_METADATA_DISABLED"], false)?;
    if imds_off {
        if required {
            return err(
                "aws_access_key_id",
                "no AWS credentials: no keys, no container credentials, no web identity token, and the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)",
            );
        }
        return Ok(AwsProvider::Static(AwsKeys {
            access_key_id: Secret::new(String::new()),
            secret_access_key: Secret::new(String::new()),
            session_token: None,
        }));
    }
    let url = match url_setting(
        l,
        "aws_imds_endpoint",
        &["AWS_EC2_METADATA_SERVICE_ENDPOINT"],
    )? {
        Some((u, field)) => {
            if u.path_and_query.contains('?') {
                return err(field, "must not have a query string");
            }
            u
        }
        None => HttpUrl::parse(IMDS_URL).or_else(|r| err("aws_imds_endpoint", r))?,
    };
    let upstream = upstream_of(l, "aws_imds_upstream", &url)?;
    Ok(AwsProvider::Imds { url, upstream })
}

/// PutObject parameters (as named in the AWS SDKs, which is what Kong's setting uses) → header.
pub(crate) const S3_PARAMS: &[(&str, &str)] = &[
    ("ACL", "x-amz-acl"),
    (
        "BucketKeyEnabled",
        "x-amz-server-side-encryption-bucket-key-enabled",
    ),
    ("CacheControl", "cache-control"),
    ("ContentDisposition", "content-disposition"),
    ("ContentEncoding", "content-encoding"),
    ("ContentLanguage", "content-language"),
    ("ExpectedBucketOwner", "x-amz-expected-bucket-owner"),
    ("Expires", "expires"),
    ("GrantFullControl", "x-amz-grant-full-control"),
    ("GrantRead", "x-amz-grant-read"),
    ("GrantReadACP", "x-amz-grant-read-acp"),
    ("GrantWriteACP", "x-amz-grant-write-acp"),
    ("ObjectLockLegalHoldStatus", "x-amz-object-lock-legal-hold"),
    ("ObjectLockMode", "x-amz-object-lock-mode"),
    (
        "ObjectLockRetainUntilDate",
        "x-amz-object-lock-retain-until-date",
    ),
    ("RequestPayer", "x-amz-request-payer"),
    (
        "SSECustomerAlgorithm",
        "x-amz-server-side-encryption-customer-algorithm",
    ),
    (
        "SSECustomerKey",
        "x-amz-server-side-encryption-customer-key",
    ),
    (
        "SSECustomerKeyMD5",
        "x-amz-server-side-encryption-customer-key-md5",
    ),
    (
        "SSEKMSEncryptionContext",
        "x-amz-server-side-encryption-context",
    ),
    ("SSEKMSKeyId", "x-amz-server-side-encryption-aws-kms-key-id"),
    ("ServerSideEncryption", "x-amz-server-side-encryption"),
    ("StorageClass", "x-amz-storage-class"),
    ("Tagging", "x-amz-tagging"),
    ("WebsiteRedirectLocation", "x-amz-website-redirect-location"),
];

/// Parameters config-bridge sets itself; allowing them would break signing or integrity checks.
const S3_OWN_PARAMS: &[&str] = &[
    "Body",
    "Bucket",
    "ChecksumAlgorithm",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
    "ContentLength",
    "ContentMD5",
    "ContentType",
    "IfMatch",
    "IfNoneMatch",
    "Key",
];

/// Closed value sets, checked so that a typo fails at configure time rather than at every upload.
pub(crate) fn allowed_values(param: &str) -> Option<&'static [&'static str]> {
    Some(match param {
        "ACL" => &[
            "private",
            "public-read",
            "public-read-write",
            "authenticated-read",
            "aws-exec-read",
            "bucket-owner-read",
            "bucket-owner-full-control",
        ],
        "ServerSideEncryption" => &["AES256", "aws:kms", "aws:kms:dsse"],
        "StorageClass" => &[
            "STANDARD",
            "REDUCED_REDUNDANCY",
            "STANDARD_IA",
            "ONEZONE_IA",
            "INTELLIGENT_TIERING",
            "GLACIER",
            "DEEP_ARCHIVE",
            "OUTPOSTS",
            "GLACIER_IR",
            "SNOW",
            "EXPRESS_ONEZONE",
        ],
        "ObjectLockMode" => &["GOVERNANCE", "COMPLIANCE"],
        "ObjectLockLegalHoldStatus" => &["ON", "OFF"],
        "RequestPayer" => &["requester"],
        _ => return None,
    })
}

pub(crate) fn header_value_ok(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b))
}

pub fn s3_params_to_headers(map: &Map, setting: &str) -> Result<Vec<(String, String)>, Fail> {
    let mut headers = Vec::new();
    for (param, value) in map {
        let field = format!("{setting}.{param}");
        if S3_OWN_PARAMS.contains(&param.as_str()) {
            return err(
                field,
                "is set by config-bridge itself and cannot be overridden",
            );
        }
        if param == "Metadata" {
            metadata_headers(value, &field, &mut headers)?;
            continue;
        }
        let Some((_, header)) = S3_PARAMS.iter().find(|(p, _)| p == param) else {
            return err(field, "unknown S3 PutObject parameter");
        };
        let text = param_text(param, value, &field)?;
        if !header_value_ok(&text) {
            return err(field, "must be non-empty printable US-ASCII");
        }
        if let Some(allowed) = allowed_values(param) {
            if !allowed.contains(&text.as_str()) {
                return err(
                    field,
                    format!("must be one of {}", crate::text::join(allowed, ", ")),
                );
            }
        }
        headers.push((header.to_string(), text));
    }
    crate::sort::sort(&mut headers);
    Ok(headers)
}

/// `Metadata`: an object of strings, each an `x-amz-meta-<key>` header.
fn metadata_headers(
    value: &Value,
    field: &str,
    headers: &mut Vec<(String, String)>,
) -> Result<(), Fail> {
    let Value::Object(meta) = value else {
        return err(field, "expected an object of string values");
    };
    for (k, v) in meta {
        let mfield = format!("{field}.{k}");
        let key = k.to_ascii_lowercase();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return err(
                mfield,
                "metadata keys may only contain letters, digits, '-' and '_'",
            );
        }
        if RESERVED_METADATA.contains(&key.as_str()) {
            return err(mfield, "is written by config-bridge itself");
        }
        let Value::String(v) = v else {
            return err(mfield, "expected a string");
        };
        if !header_value_ok(v) {
            return err(mfield, "must be non-empty printable US-ASCII");
        }
        headers.push((format!("x-amz-meta-{key}"), v.clone()));
    }
    Ok(())
}

/// A parameter's value as its header's text: strings as they are, `Tagging` as a URL-encoded
/// query, `BucketKeyEnabled` as `true`/`false`.
fn param_text(param: &str, value: &Value, field: &str) -> Result<String, Fail> {
    Ok(match (param, value) {
        ("Tagging", Value::Object(tags)) => {
            let mut pairs = Vec::new();
            for (k, v) in tags {
                let Value::String(v) = v else {
                    return err(field, "tag values must be strings");
                };
                pairs.push(format!(
                    "{}={}",
                    percent_encode(k, false),
                    percent_encode(v, false)
                ));
            }
            crate::text::join(&pairs, "&")
        }
        ("BucketKeyEnabled", Value::Bool(b)) => b.to_string(),
        ("BucketKeyEnabled", _) => return err(field, "expected a boolean"),
        (_, Value::String(s)) => s.clone(),
        _ => return err(field, "expected a string"),
    })
}
