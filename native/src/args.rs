//! The command line. Settings keep the filter's names and environment variables (see
//! `settings`); `--help` documents the exit codes and shows examples.

use std::path::PathBuf;

use clap::{ArgAction, ArgGroup, Args, Parser, Subcommand};

const ABOUT: &str =
    "Kong's cluster fallback configuration, from the command line: import the last \
export before Kong starts, export once, rehearse a restore, see what the bucket holds. The same \
core as the config-bridge filter (settings, SigV4, key layout, validation, Kong's flat form), with \
real HTTP.";

const AFTER_HELP: &str = "\
EXIT CODES
  0   done: imported, exported (or the storage already holds this config), drill passed
  1   local error: an input file cannot be read, the output file cannot be written
  2   usage or configuration error: a flag, a setting or a credential is missing or wrong,
      or the storage refuses the keys or their permissions (at once, with the fix)
  10  skipped on purpose: the CP answers (--cp-probe), a persisted config exists
      (--skip-if-exists), the node already has a configuration (import --admin-url), or the
      storage holds a newer config (export)
  11  nothing there: no export at <prefix>/<version>/config.json (404), nothing under the prefix
      (status), no configuration in the source (export), no history (history, drill --sample),
      no history export matching --version-id / --before
  12  invalid: the object is not a Kong declarative configuration, is over --max-bytes, does not
      match its config-sha256 metadata, or Kong refused it (400); export: the input is invalid
  13  storage unreachable or refusing, after retries with backoff until --timeout
  14  config source or Admin API unreachable or refusing (export --from-url/--from-admin,
      import --admin-url, drill --compare-admin)
  20  drill: the export is older than --max-age
  21  drill: the export's entities differ from the live Admin API's
  22  drill --sample: an export of the history is invalid, or Kong refused it

SETTINGS (the filter's names and environment variables, plugin/SETTINGS.md)
  --storage     or KONG_CLUSTER_FALLBACK_CONFIG_STORAGE   s3://bucket/prefix
  --version     or CONFIG_BRIDGE_GATEWAY_VERSION          key <prefix>/<version>/config.json
  --region      or AWS_REGION, AWS_DEFAULT_REGION
  --endpoint    or AWS_CONFIG_STORAGE_ENDPOINT            S3-compatible endpoint (path style)
  credentials   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (never flags);
                without keys: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, AWS_PROFILE and the
                shared files, container credentials, IMDSv2 (docs/credentials.md)
  Admin APIs    KONG_ADMIN_TOKEN (sent as Kong-Admin-Token)
  --settings FILE reads any filter configuration (same keys); flags win over it.
  Secrets are never printed.

EXAMPLES
  # Init container of a hybrid-mode DP: import only when the CP is down and nothing is persisted
  config-bridge import --storage s3://kong-backups/fallback --version 3.9.1 \\
      --cp-probe https://kong-cp:8005/ --skip-if-exists /kong_prefix/dbless.lmdb \\
      --out /kong_prefix/declarative.json

  # A DB-less node without the filter: POST the export to its Admin API, retried until --timeout
  config-bridge import --storage s3://kong-backups/fallback --version 3.9.1 \\
      --admin-url http://127.0.0.1:8001 --timeout 300

  # One export from a control plane's Admin API (cron, CI)
  config-bridge export --storage s3://kong-backups/fallback --version 3.9.1 \\
      --from-admin http://kong-cp:8001

  # Weekly drill: fail when the backup is over a day old or differs from the live configuration
  config-bridge drill --storage s3://kong-backups/fallback --version 3.9.1 \\
      --max-age 86400 --compare-admin http://kong-cp:8001

  # What the bucket holds, for a script
  config-bridge status --storage s3://kong-backups/fallback --json

  # Restore what we had yesterday at 14:00 (UTC): list the history, take the export of then
  config-bridge history --version 3.9.1
  config-bridge import --version 3.9.1 --before '2026-12-05 14:00' --out kong.json

  # What changed since that export
  config-bridge diff --version 3.9.1 20261205T135512Z-5479844c62c8a1f0 latest

  # Nightly rehearsal: the latest and 5 history exports applied to a scratch DB-less Kong
  config-bridge drill --version 3.9.1 --sample 5 --apply-to http://127.0.0.1:8101 \\
      --report /var/lib/config-bridge-drill/report.json";

#[derive(Debug, Parser)]
#[command(
    name = "config-bridge",
    about = ABOUT,
    after_help = AFTER_HELP,
    disable_version_flag = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download the last export, validate it, and write it to a file (declarative_config) or
    /// POST it to a Kong Admin API.
    #[command(after_help = AFTER_HELP)]
    Import(ImportArgs),
    /// Upload one configuration (a file, a URL, a Kong Admin API) with the filter's key layout,
    /// metadata and conditional write.
    #[command(after_help = AFTER_HELP)]
    Export(ExportArgs),
    /// Disaster-recovery rehearsal: download and validate the last export, report its age, size,
    /// uploader and version, compare it with a live Admin API.
    #[command(after_help = AFTER_HELP)]
    Drill(DrillArgs),
    /// What the storage holds: versions, the latest export of each, election candidates and the
    /// would-be leader.
    #[command(after_help = AFTER_HELP)]
    Status(StatusArgs),
    /// The history of one gateway version's exports, newest first: time, size, uploader, sha256,
    /// signed/encrypted (from each object's metadata).
    #[command(after_help = AFTER_HELP)]
    History(HistoryArgs),
    /// What changed between two exports: entities added, removed and changed, by type and name
    /// (field names only, never values). A and B: `latest`, a history id, or a file.
    #[command(after_help = AFTER_HELP)]
    Diff(DiffArgs),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Import(_) => "import",
            Command::Export(_) => "export",
            Command::Drill(_) => "drill",
            Command::Status(_) => "status",
            Command::History(_) => "history",
            Command::Diff(_) => "diff",
        }
    }

    pub fn common(&self) -> &Common {
        match self {
            Command::Import(a) => &a.common,
            Command::Export(a) => &a.common,
            Command::Drill(a) => &a.common,
            Command::Status(a) => &a.common,
            Command::History(a) => &a.common,
            Command::Diff(a) => &a.common,
        }
    }
}

/// Where the exports live, and how the tool reports.
#[derive(Debug, Args)]
pub struct Common {
    /// s3://bucket/prefix [env: KONG_CLUSTER_FALLBACK_CONFIG_STORAGE]
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// Gateway version: the key is <prefix>/<version>/config.json [env:
    /// CONFIG_BRIDGE_GATEWAY_VERSION]
    #[arg(
        long = "version",
        visible_alias = "gateway-version",
        value_name = "VERSION"
    )]
    pub gateway_version: Option<String>,
    /// Signing region [env: AWS_REGION, AWS_DEFAULT_REGION]
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// S3-compatible endpoint, e.g. http://minio:9000 [env: AWS_CONFIG_STORAGE_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// PEM file of the CAs that https endpoints (storage, Admin APIs, URLs) are verified
    /// against, instead of the Mozilla roots built in (a private CA: append public CAs if needed)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A filter configuration (JSON) to take settings from; flags win over it
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// Give up retrying after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,
    /// One JSON object on stdout instead of text
    #[arg(long)]
    pub json: bool,
    /// More progress on stderr (-vv: debug)
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["out", "admin_url"])))]
pub struct ImportArgs {
    #[command(flatten)]
    pub common: Common,
    /// Write the export to this file, atomically (a temporary file in the same directory, then
    /// a rename): the file Kong's declarative_config / KONG_DECLARATIVE_CONFIG names
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// POST the export to this Kong Admin API (/config?flatten_errors=1), only when the node has
    /// no configuration; retried with backoff until --timeout
    #[arg(long, value_name = "URL")]
    pub admin_url: Option<String>,
    /// The source of truth (a CP): any answer below 500 means "up", skip (exit 10). TLS is not
    /// verified for this probe: it only asks whether something answers
    #[arg(long, value_name = "URL")]
    pub cp_probe: Option<String>,
    /// Skip (exit 10) when this path exists, e.g. Kong's persisted LMDB <prefix>/dbless.lmdb
    #[arg(long, value_name = "PATH")]
    pub skip_if_exists: Vec<PathBuf>,
    /// The largest object accepted
    #[arg(long, value_name = "BYTES", default_value_t = 128 * 1024 * 1024)]
    pub max_bytes: u64,
    /// Permissions of the written file (octal): a Kong configuration holds certificate keys and
    /// credential hashes
    #[arg(long, value_name = "OCTAL", default_value = "600")]
    pub file_mode: String,
    #[command(flatten)]
    pub pick: PickArgs,
}

/// Which export: the latest (default) or one from the history (`config-bridge history`).
#[derive(Debug, Args)]
pub struct PickArgs {
    /// Import this export from the history instead of the latest: its version id as `config-bridge
    /// history` lists it (20261205T140000Z-1a2b3c4d5e6f7a8b), or a prefix of one matching one
    /// export. (`--version` is the gateway version.) [env: CONFIG_BRIDGE_IMPORT_VERSION]
    #[arg(long, value_name = "ID", conflicts_with = "before")]
    pub version_id: Option<String>,
    /// Import the newest export from the history made at or before this time: RFC 3339
    /// (2026-12-05T14:00:00Z, offsets allowed) or UTC as '2026-12-05 14:00'
    #[arg(long, value_name = "TIME")]
    pub before: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from_file", "from_url", "from_admin"])))]
pub struct ExportArgs {
    #[command(flatten)]
    pub common: Common,
    /// A Kong declarative configuration (JSON), uploaded byte for byte
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// A URL answering the declarative configuration (JSON)
    #[arg(long, value_name = "URL")]
    pub from_url: Option<String>,
    /// A Kong Admin API, read into Kong's flat form (config_source: kong_admin)
    #[arg(long, value_name = "URL")]
    pub from_admin: Option<String>,
    /// Written as x-amz-meta-uploader [env: CONFIG_BRIDGE_NODE_ID, HOSTNAME]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub common: Common,
    /// Compare the export's entity ids, per entity type, with this live Kong Admin API
    #[arg(long, value_name = "URL")]
    pub compare_admin: Option<String>,
    /// Apply the export to this scratch DB-less Kong Admin API (POST /config?flatten_errors=1):
    /// proves Kong loads it (exit 12 with Kong's errors when it refuses). Never a live node: it
    /// replaces that node's whole configuration
    #[arg(long, value_name = "URL")]
    pub apply_to: Option<String>,
    /// Fail (exit 20) when the export is older than this (from x-amz-meta-config-applied-at,
    /// else Last-Modified)
    #[arg(long, value_name = "SECS")]
    pub max_age: Option<f64>,
    /// The largest object accepted
    #[arg(long, value_name = "BYTES", default_value_t = 128 * 1024 * 1024)]
    pub max_bytes: u64,
    /// Also check this many exports from the history (validated, and applied with --apply-to),
    /// spread evenly from the newest to the oldest
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sample: usize,
    /// Write the JSON report (what --json prints) to this file as well, atomically
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// List at most this many, the newest (one HEAD request each)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub common: Common,
    /// The older export: `latest`, a history id (as `config-bridge history` lists it), or a
    /// file (./latest for a file named latest)
    #[arg(value_name = "A")]
    pub a: String,
    /// The newer export, the same way
    #[arg(value_name = "B")]
    pub b: String,
    /// The largest object accepted
    #[arg(long, value_name = "BYTES", default_value_t = 128 * 1024 * 1024)]
    pub max_bytes: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
    /// Kong's election interval: a candidate is fresh while now <= refreshed + interval + 5 s
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub election_interval: u64,
}
