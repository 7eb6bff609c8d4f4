//! Where AWS workloads get temporary credentials, strict like the real endpoints: the EC2
//! instance metadata service (IMDSv2 only), the ECS/EKS container-credentials endpoint, and STS
//! `AssumeRoleWithWebIdentity`. One `MockAwsCredentials` serves all three; every credential it
//! issues is registered with a `MockS3` until it expires (then S3 answers `ExpiredToken`).
//!
//! IMDSv2 as EC2 answers it: `PUT /latest/api/token` needs `X-aws-ec2-metadata-token-ttl-seconds`
//! (1–21600) and is refused with a `X-Forwarded-For` header; metadata reads need a live
//! `X-aws-ec2-metadata-token` (else 401; IMDSv1 is off). The session token's answer carries the
//! hop limit: a caller more hops away than the instance's limit never gets it (the call times
//! out), which is what a container on an instance with the default limit of 1 sees.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::http::{CallContext, Handler, HttpRequest, HttpResponse, Reply};
use crate::s3::{MockS3, S3Credential};

pub const IMDS_TOKEN_PATH: &str = "/latest/api/token";
pub const IMDS_ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/";

/// Which endpoint handed out a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    Imds,
    Container,
    WebIdentity,
}

/// One credential handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub provider: Provider,
    pub access_key: String,
    /// The node (harness world) or peer that fetched it.
    pub node: String,
    pub at: SystemTime,
    pub expires: SystemTime,
}

struct State {
    s3: Option<MockS3>,
    lifetime: Duration,
    role: String,
    /// IMDS hop limit and how many hops callers are away (1: the instance itself).
    hop_limit: u32,
    caller_hops: u32,
    imds_tokens: Vec<(String, SystemTime)>,
    container_path: String,
    container_token: Option<String>,
    web_identity: Option<(String, String)>,
    issued: Vec<Issued>,
    /// Metadata requests answered, by path (token PUTs included).
    imds_requests: u64,
    seq: u64,
}

/// The credential endpoints. Cloning shares them.
#[derive(Clone)]
pub struct MockAwsCredentials {
    state: Arc<Mutex<State>>,
}

impl Default for MockAwsCredentials {
    fn default() -> Self {
        MockAwsCredentials::new()
    }
}

impl MockAwsCredentials {
    /// One-hour credentials for role `config-bridge-node`, hop limit 1, callers on the instance.
    pub fn new() -> Self {
        MockAwsCredentials {
            state: Arc::new(Mutex::new(State {
                s3: None,
                lifetime: Duration::from_secs(3600),
                role: "config-bridge-node".into(),
                hop_limit: 1,
                caller_hops: 1,
                imds_tokens: Vec::new(),
                container_path: "/v2/credentials/task-1".into(),
                container_token: None,
                web_identity: None,
                issued: Vec::new(),
                imds_requests: 0,
                seq: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers every credential issued with `s3` (until it expires).
    pub fn issue_for(self, s3: &MockS3) -> Self {
        self.lock().s3 = Some(s3.clone());
        self
    }

    /// How long issued credentials live.
    pub fn lifetime(self, lifetime: Duration) -> Self {
        self.lock().lifetime = lifetime;
        self
    }

    /// The instance's metadata hop limit and how far callers are (a container behind a bridge
    /// network: 2).
    pub fn hops(self, hop_limit: u32, caller_hops: u32) -> Self {
        {
            let mut s = self.lock();
            s.hop_limit = hop_limit;
            s.caller_hops = caller_hops;
        }
        self
    }

    /// The container endpoint's path and the `Authorization` it requires.
    pub fn container(self, path: &str, token: Option<&str>) -> Self {
        {
            let mut s = self.lock();
            s.container_path = path.to_string();
            s.container_token = token.map(str::to_string);
        }
        self
    }

    /// STS accepts this web-identity token for this role.
    pub fn web_identity(self, token: &str, role_arn: &str) -> Self {
        self.lock().web_identity = Some((token.to_string(), role_arn.to_string()));
        self
    }

    /// Every credential handed out so far.
    pub fn issued(&self) -> Vec<Issued> {
        self.lock().issued.clone()
    }

    /// IMDS requests answered (token, role and credential reads).
    pub fn imds_requests(&self) -> u64 {
        self.lock().imds_requests
    }

    fn issue(&self, provider: Provider, ctx: &CallContext) -> (S3Credential, SystemTime) {
        let mut s = self.lock();
        s.seq += 1;
        let seq = s.seq;
        let credential = S3Credential::new(
            &format!("ASIAMOCK{seq:012}"),
            &format!("mock-temporary-secret-{seq}-do-not-log"),
        )
        .session_token(&format!("mock-session-token-{seq}-do-not-log"));
        let expires = truncate_secs(ctx.now + s.lifetime);
        if let Some(s3) = &s.s3 {
            s3.add_temporary_credential(credential.clone(), expires);
        }
        s.issued.push(Issued {
            provider,
            access_key: credential.access_key.clone(),
            node: ctx.node.clone(),
            at: ctx.now,
            expires,
        });
        (credential, expires)
    }

    fn imds(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let path = req.path_only();
        self.lock().imds_requests += 1;
        if req.header("x-forwarded-for").is_some() {
            return text(403, "Forbidden");
        }
        if path == IMDS_TOKEN_PATH {
            if req.method != "PUT" {
                return text(405, "Method Not Allowed");
            }
            let ttl = req
                .header("x-aws-ec2-metadata-token-ttl-seconds")
                .and_then(|v| v.trim().parse::<u64>().ok());
            let Some(ttl) = ttl.filter(|t| (1..=21_600).contains(t)) else {
                return text(400, "Bad Request");
            };
            let mut s = self.lock();
            if s.caller_hops > s.hop_limit {
                // The answer's IP TTL runs out on the way: the caller waits in vain.
                return Reply::Hang;
            }
            s.seq += 1;
            let token = format!("imds-session-{}-do-not-log", s.seq);
            s.imds_tokens
                .push((token.clone(), ctx.now + Duration::from_secs(ttl)));
            return Reply::now(
                HttpResponse::new(200)
                    .with_header("x-aws-ec2-metadata-token-ttl-seconds", &ttl.to_string())
                    .with_header("content-type", "text/plain")
                    .with_body(token),
            );
        }
        if req.method != "GET" {
            return text(405, "Method Not Allowed");
        }
        let token = req.header("x-aws-ec2-metadata-token").unwrap_or("");
        let live = self
            .lock()
            .imds_tokens
            .iter()
            .any(|(t, until)| t == token && ctx.now < *until);
        if !live {
            return text(401, "Unauthorized");
        }
        let role = self.lock().role.clone();
        match path.strip_prefix(IMDS_ROLE_PATH) {
            Some("") => text(200, &role),
            Some(r) if r == role => {
                let (c, expires) = self.issue(Provider::Imds, ctx);
                Reply::now(HttpResponse::json(
                    200,
                    &json!({
                        "Code": "Success",
                        "LastUpdated": rfc3339(ctx.now),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": c.access_key,
                        "SecretAccessKey": c.secret_key,
                        "Token": c.session_token,
                        "Expiration": rfc3339(expires),
                    }),
                ))
            }
            _ => text(404, "Not Found"),
        }
    }

    fn serve_container(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let required = self.lock().container_token.clone();
        if let Some(required) = required {
            match req.header("authorization") {
                Some(t) if t == required => {}
                Some(_) => return code_json(403, "AccessDeniedException", "invalid token"),
                None => return code_json(401, "AccessDeniedException", "missing token"),
            }
        }
        let (c, expires) = self.issue(Provider::Container, ctx);
        Reply::now(HttpResponse::json(
            200,
            &json!({
                "AccessKeyId": c.access_key,
                "SecretAccessKey": c.secret_key,
                "Token": c.session_token,
                "AccountId": "123456789012",
                "Expiration": rfc3339(expires),
            }),
        ))
    }

    fn sts(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let mut params: Vec<(String, String)> = req.query_pairs();
        if req.method == "POST" {
            params.extend(
                url::form_urlencoded::parse(&req.body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("Action").as_deref() != Some("AssumeRoleWithWebIdentity")
            || get("Version").as_deref() != Some("2011-06-15")
        {
            return sts_error(400, "InvalidAction", "Could not find operation");
        }
        let (Some(role), Some(_session), Some(token)) = (
            get("RoleArn"),
            get("RoleSessionName").filter(|n| n.len() >= 2),
            get("WebIdentityToken"),
        ) else {
            return sts_error(
                400,
                "ValidationError",
                "RoleArn, RoleSessionName and WebIdentityToken are required",
            );
        };
        let expected = self.lock().web_identity.clone();
        match expected {
            Some((t, r)) if t == token && r == role => {}
            Some((t, _)) if t == token => {
                return sts_error(
                    403,
                    "AccessDenied",
                    "Not authorized to perform sts:AssumeRoleWithWebIdentity",
                )
            }
            _ => {
                return sts_error(
                    400,
                    "InvalidIdentityToken",
                    "Couldn't retrieve verification key from your identity provider",
                )
            }
        }
        let (c, expires) = self.issue(Provider::WebIdentity, ctx);
        let xml = format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{}</AccessKeyId>\
             <SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken>\
             <Expiration>{}</Expiration></Credentials><AssumedRoleUser><Arn>{role}</Arn>\
             </AssumedRoleUser></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            c.access_key,
            c.secret_key,
            c.session_token.unwrap_or_default(),
            rfc3339(expires)
        );
        Reply::now(
            HttpResponse::new(200)
                .with_header("content-type", "text/xml")
                .with_body(xml),
        )
    }
}

impl Handler for MockAwsCredentials {
    /// Routes by path: `/latest/...` is IMDS, the container path the container endpoint,
    /// anything else STS.
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let container_path = self.lock().container_path.clone();
        let path = req.path_only();
        if path.starts_with("/latest/") {
            self.imds(req, ctx)
        } else if path == container_path {
            self.serve_container(req, ctx)
        } else {
            self.sts(req, ctx)
        }
    }
}

fn text(status: u16, body: &str) -> Reply {
    Reply::now(
        HttpResponse::new(status)
            .with_header("content-type", "text/plain")
            .with_body(body.to_string()),
    )
}

fn code_json(status: u16, code: &str, message: &str) -> Reply {
    Reply::now(HttpResponse::json(
        status,
        &json!({"code": code, "message": message}),
    ))
}

fn sts_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::now(
        HttpResponse::new(status)
            .with_header("content-type", "text/xml")
            .with_body(format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>mock</RequestId></ErrorResponse>"
            )),
    )
}

fn truncate_secs(t: SystemTime) -> SystemTime {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs())
}

/// `2026-01-01T00:15:00Z`, as AWS writes `Expiration`.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(truncate_secs(t));
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_default()
}
