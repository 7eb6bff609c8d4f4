//! SigV4 signing of S3 requests in native Rust with `aws-sigv4`, configured as the filter signs
//! (S3: single percent-encoding, no path normalisation, `x-amz-content-sha256`). The export
//! benchmark's baseline and the interop tests' independent client.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Credentials and scope of a signer.
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
}

impl Signer<'_> {
    /// The headers SigV4 adds (`authorization`, `x-amz-date`, `x-amz-content-sha256`) to a request
    /// with these `headers` (which must include `host`) and `body`.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        time: SystemTime,
    ) -> Vec<(String, String)> {
        self.sign_hashed(method, url, headers, &sha256_hex(body), time)
    }

    /// [`Signer::sign`] with the body's SHA-256 (lower-case hex) already computed.
    pub fn sign_hashed(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body_sha256_hex: &str,
        time: SystemTime,
    ) -> Vec<(String, String)> {
        let identity: Identity =
            Credentials::new(self.access_key, self.secret_key, None, None, "tests").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Precomputed(body_sha256_hex.to_string()),
        )
        .expect("signable request");
        let (instructions, _) = sign(request, &params).expect("sign").into_parts();
        let (added, _) = instructions.into_parts();
        added
            .iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect()
    }
}
