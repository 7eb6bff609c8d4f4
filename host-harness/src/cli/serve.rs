//! `host-harness serve s3|gcs|kong`: puts a mock on a TCP port for real clients (boto3, aws CLI,
//! google-cloud-storage, curl) until the process is killed.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::mocks::gcs::MockGcs;
use crate::mocks::kong::MockKongAdmin;
use crate::mocks::s3::{MockS3, MockS3Config, S3Credential};
use crate::mocks::serve;

/// `host-harness serve <mock>`.
#[derive(Subcommand, Debug)]
pub enum ServeCommand {
    /// Mock S3 with SigV4 verification.
    S3(S3Args),
    /// Mock GCS with its OAuth2 token endpoint and metadata server.
    Gcs(GcsArgs),
    /// Mock Kong Admin API.
    Kong(KongArgs),
}

/// Where a mock listens.
#[derive(Args, Debug)]
pub struct Listen {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port (printed on the `listening on` line).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// `serve s3`.
#[derive(Args, Debug)]
pub struct S3Args {
    /// Where to listen.
    #[command(flatten)]
    pub listen: Listen,
    /// The region SigV4 signatures must name.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Base domain for virtual-hosted addressing (`<bucket>.<domain>`).
    #[arg(long)]
    pub domain: Option<String>,
    /// Bucket to create, repeatable.
    #[arg(long = "bucket")]
    pub buckets: Vec<String>,
    /// Access key id of the read-write key (with --secret-key; without both: no signature check).
    #[arg(long)]
    pub access_key: Option<String>,
    /// Its secret key.
    #[arg(long)]
    pub secret_key: Option<String>,
    /// A session token the signed requests must carry.
    #[arg(long)]
    pub session_token: Option<String>,
    /// Access key id of a read-only key (with --read-only-secret-key).
    #[arg(long)]
    pub read_only_access_key: Option<String>,
    /// Its secret key.
    #[arg(long)]
    pub read_only_secret_key: Option<String>,
}

/// `serve gcs`.
#[derive(Args, Debug)]
pub struct GcsArgs {
    /// Where to listen.
    #[command(flatten)]
    pub listen: Listen,
    /// Bucket to create, repeatable.
    #[arg(long = "bucket")]
    pub buckets: Vec<String>,
    /// Write a service-account key file (registered with the mock) here.
    #[arg(long)]
    pub key_out: Option<std::path::PathBuf>,
    /// The service account's e-mail for --key-out.
    #[arg(long, default_value = "exporter@mock-project.iam.gserviceaccount.com")]
    pub key_email: String,
}

/// `serve kong`.
#[derive(Args, Debug)]
pub struct KongArgs {
    /// Where to listen.
    #[command(flatten)]
    pub listen: Listen,
    /// The Kong version it reports.
    #[arg(long, default_value = "3.9.1")]
    pub version: String,
    /// Database mode (entity collections) instead of DB-less.
    #[arg(long)]
    pub database: bool,
    /// A declarative config (JSON) to start with.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

fn pair(a: Option<String>, b: Option<String>, what: &str) -> Result<Option<(String, String)>> {
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => bail!("{what} go together"),
    }
}

fn park(url: &str) -> ! {
    println!("listening on {url}");
    loop {
        std::thread::park();
    }
}

/// Starts the mock and serves until the process is killed.
pub fn run(command: ServeCommand) -> Result<i32> {
    match command {
        ServeCommand::S3(a) => serve_s3(a),
        ServeCommand::Gcs(a) => serve_gcs(a),
        ServeCommand::Kong(a) => serve_kong(a),
    }
}

fn serve_s3(a: S3Args) -> Result<i32> {
    let mut config = MockS3Config {
        region: a.region,
        domain: a.domain,
        buckets: a.buckets,
        ..Default::default()
    };
    if let Some((ak, sk)) = pair(a.access_key, a.secret_key, "--access-key and --secret-key")? {
        let mut c = S3Credential::new(&ak, &sk);
        c.session_token = a.session_token;
        config.credentials.push(c);
    }
    if let Some((ak, sk)) = pair(
        a.read_only_access_key,
        a.read_only_secret_key,
        "--read-only-access-key and --read-only-secret-key",
    )? {
        config
            .credentials
            .push(S3Credential::new(&ak, &sk).read_only());
    }
    let server = serve::spawn(
        Arc::new(MockS3::from_config(&config)),
        &format!("{}:{}", a.listen.host, a.listen.port),
    )?;
    park(&server.url())
}

fn serve_gcs(a: GcsArgs) -> Result<i32> {
    let gcs = MockGcs::new();
    for b in &a.buckets {
        gcs.create_bucket(b);
    }
    let server = serve::spawn(
        Arc::new(gcs.clone()),
        &format!("{}:{}", a.listen.host, a.listen.port),
    )?;
    // Key files and object links must name the served address.
    gcs.set_base_url(&server.url());
    if let Some(path) = a.key_out {
        let key = gcs.new_service_account_key(&a.key_email);
        std::fs::write(&path, serde_json::to_vec_pretty(&key)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    park(&server.url())
}

fn serve_kong(a: KongArgs) -> Result<i32> {
    let kong = if a.database {
        MockKongAdmin::database(&a.version)
    } else {
        MockKongAdmin::dbless(&a.version)
    };
    if let Some(path) = a.config {
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        kong.set_config(serde_json::from_slice(&text).context("the --config file is not JSON")?);
    }
    let server = serve::spawn(
        Arc::new(kong.clone()),
        &format!("{}:{}", a.listen.host, a.listen.port),
    )?;
    park(&server.url())
}
