//! `host-harness run`: one or more nodes running a filter, upstreams mapped to real TCP
//! endpoints, for a duration of virtual or real time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use super::request::{describe, RequestSpec, ResponseSpec};
use crate::record::CallOutcome;
use crate::tcp_upstream::TcpUpstream;
use crate::{HostProfile, NodeSpec, PluginModule, World};

/// `host-harness run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The filter's .wasm file.
    #[arg(long)]
    pub wasm: PathBuf,
    /// Plugin configuration: a JSON text, or @FILE.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// Host profile: ngx_wasm_module (Kong), kong_legacy, envoy, hostile (seeded odd answers).
    #[arg(long, default_value = "ngx_wasm_module")]
    pub profile: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Workers per node.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Environment variable for the workers (KEY=VALUE), repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Route an upstream name to a real endpoint (UPSTREAM=HOST:PORT), repeatable.
    #[arg(long = "route", value_name = "UPSTREAM=HOST:PORT")]
    pub routes: Vec<String>,
    /// How long to run, in seconds (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Follow the wall clock instead of virtual time.
    #[arg(long)]
    pub realtime: bool,
    /// Exit with status 1 when a call failed or the filter trapped.
    #[arg(long)]
    pub strict: bool,
    /// Seed of the hostile profile's injections (makes any profile hostile).
    #[arg(long)]
    pub hostile_seed: Option<u64>,
    /// Chance (0 to 1) that a hostile decision point injects (makes any profile hostile).
    #[arg(long)]
    pub hostile_rate: Option<f64>,
    /// Send an HTTP request through the filter (node 1, worker 1), repeatable, in order:
    /// `[@SECONDS] [METHOD] /path [-H NAME:VALUE]... [-d BODY|@FILE]`, words split as a shell
    /// splits them (quote a value with spaces). `@SECONDS` sends it at that virtual time; each
    /// exchange is printed (phases, actions, headers, body, local response).
    #[arg(long = "request", value_name = "REQUEST")]
    pub requests: Vec<String>,
    /// What the upstream answers each request: `STATUS [-H NAME:VALUE]... [-d BODY|@FILE]`.
    #[arg(long, default_value = "200")]
    pub response: String,
}

fn split_pair(s: &str, what: &str) -> Result<(String, String)> {
    s.split_once('=')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| anyhow!("{what} must look like A=B, got {s:?}"))
}

fn profile(args: &RunArgs) -> Result<HostProfile> {
    let mut profile = HostProfile::by_name(&args.profile).ok_or_else(|| {
        anyhow!(
            "unknown profile {:?} (ngx_wasm_module, kong_legacy, envoy, hostile)",
            args.profile
        )
    })?;
    if let Some(seed) = args.hostile_seed {
        profile = profile.seed(seed);
    }
    if let Some(rate) = args.hostile_rate {
        profile = profile.hostile_rate(rate);
    }
    Ok(profile)
}

/// Runs the filter as asked and prints what happened; the exit code is 1 with `--strict` when something failed.
pub fn run(args: RunArgs) -> Result<i32> {
    let profile = profile(&args)?;
    let config = match args.config.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {path}"))?,
        None => args.config.clone().into_bytes(),
    };
    if !(args.seconds >= 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a non-negative number");
    }
    let requests: Vec<RequestSpec> = args
        .requests
        .iter()
        .map(|r| RequestSpec::parse(r))
        .collect::<Result<_>>()?;
    let response = ResponseSpec::parse(&args.response)?;
    let module = PluginModule::load(&args.wasm)?;
    let mut world = build_world(&args, profile, &module, &config)?;
    let bad_exchanges = send_requests(&mut world, &requests, &response);
    let duration = Duration::from_secs_f64(args.seconds);
    if args.realtime {
        world.run_realtime(duration);
    } else {
        world.advance(duration);
    }
    let failed = print_calls(&world);
    let traps = world.traps().len() + world.fatal_errors().len();
    if world.profile().hostility.is_some() {
        println!("--- {} injection(s)", world.injections().len());
    }
    println!("--- {traps} trap(s), {failed} failed call(s)");
    let bad = traps > 0 || failed > 0 || bad_exchanges > 0;
    Ok(if args.strict && bad { 1 } else { 0 })
}

/// The world `run` asks for: routes to TCP upstreams, `--nodes` nodes of `--workers` workers.
fn build_world(
    args: &RunArgs,
    profile: HostProfile,
    module: &PluginModule,
    config: &[u8],
) -> Result<World> {
    let mut world = if args.realtime {
        World::new_realtime(profile)
    } else {
        World::new(profile)
    };
    world.expect_traps().echo_logs(true);
    for r in &args.routes {
        let (upstream, addr) = split_pair(r, "--route")?;
        world.route(&upstream, Arc::new(TcpUpstream::new(&addr)?));
    }
    let env: Vec<(String, String)> = args
        .env
        .iter()
        .map(|e| split_pair(e, "--env"))
        .collect::<Result<_>>()?;
    for i in 0..args.nodes {
        let mut spec = NodeSpec::new(&format!("node{}", i + 1), module)
            .workers(args.workers)
            .filter(config.to_vec())
            .seed(i as u64);
        spec.env = env.clone();
        world.add_node(spec)?;
    }
    Ok(world)
}

/// Sends each request (at its virtual time) through the filter on node 1, worker 1, and prints
/// it; returns how many failed or stayed stuck.
fn send_requests(world: &mut World, requests: &[RequestSpec], response: &ResponseSpec) -> usize {
    let mut bad_exchanges = 0;
    for (i, req) in requests.iter().enumerate() {
        if let Some(at) = req.at {
            let now = world.elapsed();
            if at > now {
                world.advance(at - now);
            }
        }
        let at = world.elapsed();
        let outcome = world.http(crate::NodeId(0), 0, 0, req.exchange(response));
        if outcome.failed || outcome.stuck {
            bad_exchanges += 1;
        }
        print!("{}", describe(i + 1, at, req, &outcome));
    }
    if !requests.is_empty() {
        println!(
            "--- {} request(s), {bad_exchanges} failed or stuck",
            requests.len()
        );
    }
    bad_exchanges
}

/// Prints every call and how it ended; returns how many failed.
fn print_calls(world: &World) -> usize {
    let calls = world.calls();
    println!("--- {} call(s)", calls.len());
    let mut failed = 0;
    for c in &calls {
        let outcome = match &c.outcome {
            CallOutcome::Response(r) => format!("{}", r.status),
            CallOutcome::Failed(f) => {
                failed += 1;
                f.dispatch_status().to_string()
            }
            other => format!("{other:?}"),
        };
        println!(
            "[{:>9.3}s] {} {} {}{} -> {}",
            c.sent_at.as_secs_f64(),
            c.origin,
            c.request.method,
            c.upstream,
            c.request.path,
            outcome
        );
    }
    failed
}
