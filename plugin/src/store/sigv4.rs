//! SigV4 signing for S3 requests with the AWS-maintained `aws-sigv4` (not a hand-written signer:
//! the one place a subtle mistake locks every export out).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::settings::S3Settings;

/// 9999-12-31T23:59:59.999Z: the last instant a SigV4 date (`YYYYMMDD`) can express.
const MAX_SIGNABLE_MS: u64 = 253_402_300_799_999;

/// Signs with SigV4 for service `s3`; returns the headers to add (`x-amz-date`,
/// `x-amz-content-sha256`, `x-amz-security-token`, `authorization`). Every header in `headers`
/// is signed, so it must be sent exactly as given.
pub fn sign_v4(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    payload_sha256_hex: &str,
    s3: &S3Settings,
    now_ms: u64,
) -> Result<Vec<(String, String)>, String> {
    let identity: Identity = Credentials::new(
        s3.access_key_id.expose(),
        s3.secret_access_key.expose(),
        s3.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "config-bridge",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    // aws-sigv4 formats the time through `time::OffsetDateTime`, which panics past 9999-12-31.
    if now_ms > MAX_SIGNABLE_MS {
        return Err("cannot sign the request: the host clock is past year 9999".to_string());
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&s3.region)
        .name("s3")
        .time(SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms))
        .settings(settings)
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Precomputed(payload_sha256_hex.to_string()),
    )
    .map_err(|_| "cannot sign the request: invalid URL or header".to_string())?;
    // The error text of `sign` never contains the secret, but keep ours fixed anyway.
    let (instructions, _signature) = sign(request, &params)
        .map_err(|_| "cannot sign the request (invalid header or credentials)".to_string())?
        .into_parts();
    let (added, _params) = instructions.into_parts();
    Ok(added
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect())
}
