//! The Kong examples (`examples/kong/<versions>/`) read the way each Kong version reads them.
//!
//! Kong turns `kong.conf` keys and `KONG_*` variables into the nginx `wasm{}` block with rules that
//! changed between 3.4 and 3.9 (docs/kong.md has the sources, file@tag). This test models those
//! rules per version, renders every example with them and checks what a user would hit:
//! * each `shm_kv` line is one nginx accepts, and the filter's shared-data keys resolve to a zone
//!   (ngx_wasm_module: `<ns>/<key>` looks up zone `<ns>`, anything else zone `*`, else a trap);
//! * a `resolver` for the filter's host names, and the `env` lines its credentials need;
//! * the filter config has the type the version wants (a string on 3.4, an object on 3.5+), and
//!   the schema (Kong 3.5+) and the filter's parser both accept it;
//! * the chain hangs on a service without a route, and nothing but the filter's `kong_admin`
//!   source points at the Admin API: the node's own, on loopback, in plain HTTP (`admin_listen`);
//! * every file names the Kong versions it is for.
//!
//! When the real engine is on the machine (`../shared/ngx-wasm/bin/nginx`, or `$NGX_WASM_NGINX`),
//! every rendered configuration also goes through its `nginx -t`.

mod common;

use common::{assert_no_problems, parser_accepts_bytes, root, schema_errors, validator};
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// A Kong Gateway OSS minor version, 3.<minor>.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Kong(u8);

impl Kong {
    /// Kong 3.4/3.5 (conf_loader/init.lua): `nginx_wasm_shm_<name>`; 3.6+ (conf_loader/constants.lua):
    /// `nginx_wasm_shm_kv_<name>`. Both render `shm_kv <name> <size>;`.
    fn shm_prefix(self) -> &'static str {
        if self.0 <= 5 {
            "nginx_wasm_shm_"
        } else {
            "nginx_wasm_shm_kv_"
        }
    }
    /// Kong 3.7+ (templates/nginx.lua): a main directive `shm_kv` renders `shm_kv * <size>;`.
    fn general_shm_kv(self) -> bool {
        self.0 >= 7
    }
    /// Kong 3.8+ (conf_loader/init.lua, templates/nginx.lua): `cache_config` in `wasmtime{}`.
    fn wasmtime_cache(self) -> bool {
        self.0 >= 8
    }
    /// Kong 3.4 (db/schema/entities/filter_chains.lua): `config = { type = "string" }`.
    fn config_is_string(self) -> bool {
        self.0 == 4
    }
}

impl std::fmt::Display for Kong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "3.{}", self.0)
    }
}

/// The versions an example directory is for: `3.4`, or `3.7-3.9`.
fn versions_of(dir_name: &str) -> Vec<Kong> {
    let minor = |s: &str| -> u8 {
        s.strip_prefix("3.")
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("example directory {dir_name:?} is not 3.N or 3.N-3.M"))
    };
    let (lo, hi) = match dir_name.split_once('-') {
        Some((a, b)) => (minor(a), minor(b)),
        None => (minor(dir_name), minor(dir_name)),
    };
    assert!(
        (4..=9).contains(&lo) && lo <= hi && hi <= 9,
        "{dir_name}: Kong OSS with Wasm is 3.4-3.9"
    );
    (lo..=hi).map(Kong).collect()
}

// ---------------------------------------------------------------------------------------------
// Reading kong.conf and KONG_* variables as Kong does.

/// kong.conf through Penlight's `config.read` (Kong: `smart = false`): `key = value` lines, `#` and
/// `;` lines are comments, every non-alphanumeric character of a key becomes `_`; then Kong strips
/// a trailing ` # comment` from each value.
fn parse_kong_conf(text: &str) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key: String = key
            .trim_end()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut value = value.trim().to_string();
        // `\s*(?<!\\)#.*$`
        let bytes = value.as_bytes();
        if let Some(i) =
            (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1] != b'\\'))
        {
            value.truncate(i);
        }
        conf.insert(key, value.trim_end().replace("\\#", "#"));
    }
    conf
}

/// An env file (`docker run --env-file`): `NAME=value` lines, taken verbatim. Kong reads every
/// `KONG_<NAME>` as the setting `<name>` (lower case).
fn parse_env_file(text: &str, file: &Path) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not NAME=value: {line:?}", file.display()));
        assert!(
            !value.contains(" #"),
            "{}: docker keeps inline comments in the value: {line:?}",
            file.display()
        );
        if let Some(setting) = name.strip_prefix("KONG_") {
            conf.insert(setting.to_ascii_lowercase(), value.to_string());
        }
    }
    conf
}

// ---------------------------------------------------------------------------------------------
// What Kong renders: the `env` lines of the main block and the `wasm{}` block.

/// Where Kong's `lua_ssl_trusted_certificate = system` points on Debian-like systems.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Default)]
struct Rendered {
    /// Lines of the nginx main block from `nginx_main_*`.
    main: Vec<String>,
    /// Lines inside `wasm { ... }`.
    wasm: Vec<String>,
    /// The wasmtime cache config file Kong writes (3.8+), and its `[cache]` directory.
    cache: Option<(PathBuf, PathBuf)>,
}

/// Kong's conf loader and `templates/nginx.lua` for `version`, with `prefix` as Kong's prefix.
fn render(version: Kong, user: &BTreeMap<String, String>, prefix: &Path) -> Rendered {
    // Kong's defaults (templates/kong_defaults.lua) that matter here. (Of the other nginx_main_*
    // defaults, `user kong kong` needs that user and `worker_rlimit_nofile auto` is resolved by Kong.)
    let mut conf: BTreeMap<String, String> = BTreeMap::from([
        ("lua_ssl_trusted_certificate".into(), "system".into()),
        ("lua_ssl_verify_depth".into(), "1".into()),
        ("nginx_main_worker_processes".into(), "auto".into()),
    ]);
    conf.extend(user.clone());
    assert_eq!(
        conf.get("wasm").map(String::as_str),
        Some("on"),
        "wasm = on"
    );

    // add_wasm_directive: only where the user set nothing.
    let first_ca = conf["lua_ssl_trusted_certificate"]
        .split(',')
        .map(str::trim)
        .next()
        .unwrap_or_default()
        .to_string();
    let first_ca = if first_ca == "system" {
        SYSTEM_CA_BUNDLE.to_string()
    } else {
        first_ca
    };
    let mut inject = vec![("nginx_wasm_tls_trusted_certificate", first_ca)];
    if conf["lua_ssl_verify_depth"].parse::<u32>().unwrap_or(0) > 0 {
        for k in [
            "nginx_wasm_tls_verify_cert",
            "nginx_wasm_tls_verify_host",
            "nginx_wasm_tls_no_verify_warn",
        ] {
            inject.push((k, "on".into()));
        }
    }
    for (k, v) in inject {
        conf.entry(k.into()).or_insert(v);
    }
    let mut out = Rendered::default();
    if version.wasmtime_cache() {
        out.cache = Some((
            prefix.join(".wasmtime_config.toml"),
            prefix.join(".wasmtime_cache"),
        ));
    }

    // parse_nginx_directives over DYNAMIC_KEY_NAMESPACES, in their order; "NONE" drops a key.
    let namespaces = [
        ("nginx_wasm_wasmtime_", "wasmtime"),
        ("nginx_wasm_v8_", "v8"),
        ("nginx_wasm_wasmer_", "wasmer"),
        (version.shm_prefix(), "shm"),
        ("nginx_wasm_", "main"),
    ];
    let mut wasmtime_flags = Vec::new();
    for (key, value) in &conf {
        if value == "NONE" {
            continue;
        }
        if let Some(d) = key.strip_prefix("nginx_main_").filter(|d| !d.is_empty()) {
            out.main.push(format!("{d} {value};"));
            continue;
        }
        let Some((name, ns)) = namespaces.iter().find_map(|(prefix, ns)| {
            key.strip_prefix(prefix)
                .filter(|d| !d.is_empty())
                .map(|d| (d, *ns))
        }) else {
            continue;
        };
        match ns {
            "shm" => out.wasm.push(format!("shm_kv {name} {value};")),
            "main" if name == "shm_kv" && version.general_shm_kv() => {
                out.wasm.push(format!("shm_kv * {value};"))
            }
            "main" => out.wasm.push(format!("{name} {value};")),
            "wasmtime" => wasmtime_flags.push(format!("flag {name} {value};")),
            _ => {}
        }
    }
    if out.cache.is_some() || !wasmtime_flags.is_empty() {
        out.wasm.push("wasmtime {".into());
        if let Some((file, _)) = &out.cache {
            out.wasm
                .push(format!("cache_config \"{}\";", file.display()));
        }
        out.wasm.append(&mut wasmtime_flags);
        out.wasm.push("}".into());
    }
    out
}

impl Rendered {
    fn directives<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
        self.wasm
            .iter()
            .map(|l| {
                l.trim_end_matches(';')
                    .split_whitespace()
                    .collect::<Vec<_>>()
            })
            .filter(move |t| t.first() == Some(&name))
    }

    /// The `shm_kv` zones, or what nginx would say about a malformed line.
    fn zones(&self) -> Result<BTreeSet<String>, String> {
        let mut zones = BTreeSet::new();
        for t in self.directives("shm_kv") {
            // shm_kv <name> <size> [...]: NGX_CONF_TAKE23|NGX_CONF_TAKE4 at every pinned commit
            if !(3..=5).contains(&t.len()) {
                return Err(format!(
                    "`{};`: nginx: invalid number of arguments in \"shm_kv\" directive",
                    t.join(" ")
                ));
            }
            zones.insert(t[1].to_string());
        }
        Ok(zones)
    }

    /// The variables workers may read (`env NAME;`, possibly several in one injected line).
    fn worker_env(&self) -> BTreeSet<String> {
        self.main
            .iter()
            .flat_map(|l| l.split(';'))
            .filter_map(|stmt| {
                let t: Vec<&str> = stmt.split_whitespace().collect();
                (t.len() == 2 && t[0] == "env").then(|| t[1].split('=').next().unwrap().to_string())
            })
            .collect()
    }

    fn nginx_conf(&self) -> String {
        let mut s = String::new();
        for l in &self.main {
            s += &format!("{l}\n");
        }
        s += "events {}\nwasm {\n";
        for l in &self.wasm {
            s += &format!("    {l}\n");
        }
        s += "}\n";
        s
    }
}

/// ngx_wasm_module's `ngx_wasm_shm_kv_resolve_key`: the part of a key before its first `/` names a
/// zone; a key without one, or naming no zone, goes to the zone `*`; no zone at all is a trap.
fn resolves(key: &str, zones: &BTreeSet<String>) -> bool {
    key.split_once('/')
        .is_some_and(|(ns, _)| !ns.is_empty() && zones.contains(ns))
        || zones.contains("*")
}

/// The key the filter uses for shared data, under its `shared_data_namespace`.
fn filter_key(config: &Value) -> String {
    match config["shared_data_namespace"].as_str().map(str::trim) {
        None | Some("") | Some("*") => "config-bridge/v1/lease".into(),
        Some(ns) => format!("{ns}/config-bridge/v1/lease"),
    }
}

// ---------------------------------------------------------------------------------------------
// The real engine, when present.

fn engine() -> Option<PathBuf> {
    let path = std::env::var_os("NGX_WASM_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/ngx-wasm/bin/nginx"));
    path.is_file().then_some(path)
}

/// `nginx -t` of the rendered configuration (with the wasmtime cache file Kong would write).
fn engine_test(nginx: &Path, rendered: &Rendered, prefix: &Path) -> Result<(), String> {
    fs::create_dir_all(prefix.join("conf")).unwrap();
    fs::create_dir_all(prefix.join("logs")).unwrap();
    if let Some((file, dir)) = &rendered.cache {
        // kong/templates/wasmtime_cache_config.lua
        fs::write(
            file,
            format!(
                "[cache]\nenabled = true\ndirectory = \"{}\"\n",
                dir.display()
            ),
        )
        .unwrap();
    }
    fs::write(prefix.join("conf/nginx.conf"), rendered.nginx_conf()).unwrap();
    let out = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .args(["-c", "conf/nginx.conf", "-e", "stderr"])
        .output()
        .map_err(|e| format!("running {}: {e}", nginx.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// The filter chains.

/// A `config_bridge` filter found in an example, with where it hangs.
struct FilterUse {
    config: Value,
    service: Option<String>,
    route: Option<String>,
}

fn reference(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("name")
            .or_else(|| o.get("id"))
            .and_then(Value::as_str)
            .map(String::from),
        _ => None,
    }
}

fn config_bridge_filters(
    chain: &Value,
    service: Option<String>,
    route: Option<String>,
) -> Vec<FilterUse> {
    let service = service.or_else(|| chain.get("service").and_then(reference));
    let route = route.or_else(|| chain.get("route").and_then(reference));
    chain["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == "config_bridge")
        .map(|f| FilterUse {
            config: f.get("config").cloned().unwrap_or(Value::Null),
            service: service.clone(),
            route: route.clone(),
        })
        .collect()
}

/// Every `config_bridge` filter of a declarative config (top-level chains and chains nested in
/// services and routes).
fn declarative_filters(doc: &Value) -> Vec<FilterUse> {
    let mut found = Vec::new();
    for chain in doc["filter_chains"].as_array().into_iter().flatten() {
        found.extend(config_bridge_filters(chain, None, None));
    }
    for service in doc["services"].as_array().into_iter().flatten() {
        let name = reference(service);
        for chain in service["filter_chains"].as_array().into_iter().flatten() {
            found.extend(config_bridge_filters(chain, name.clone(), None));
        }
        for route in service["routes"].as_array().into_iter().flatten() {
            for chain in route["filter_chains"].as_array().into_iter().flatten() {
                found.extend(config_bridge_filters(chain, name.clone(), reference(route)));
            }
        }
    }
    found
}

/// The routes of a declarative config that lead to `service`.
fn routes_to(doc: &Value, service: &str) -> usize {
    let nested = doc["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| reference(s).as_deref() == Some(service))
        .map(|s| s["routes"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    let top = doc["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("service").and_then(reference).as_deref() == Some(service))
        .count();
    nested + top
}

/// `host`, `port` of an http(s) URL (defaults 80/443).
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) => {
            Some((h.to_ascii_lowercase(), p.parse().ok()?))
        }
        _ => Some((authority.to_ascii_lowercase(), default)),
    }
}

/// The Admin API's listeners, `(address, port, ssl)`, from `admin_listen` (default
/// `127.0.0.1:8001, 127.0.0.1:8444 http2 ssl`).
fn admin_listeners(conf: &BTreeMap<String, String>) -> Vec<(String, u16, bool)> {
    let listen = conf
        .get("admin_listen")
        .map(String::as_str)
        .unwrap_or("127.0.0.1:8001 reuseport backlog=16384, 127.0.0.1:8444 http2 ssl");
    listen
        .split(',')
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (h, p) = words.next()?.rsplit_once(':')?;
            let ssl = words.any(|flag| flag == "ssl");
            Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?, ssl))
        })
        .collect()
}

/// The Admin API's ports.
fn admin_ports(conf: &BTreeMap<String, String>) -> BTreeSet<u16> {
    admin_listeners(conf)
        .into_iter()
        .map(|(_, p, _)| p)
        .collect()
}

/// The plain-HTTP listeners of `admin_listen`, which the filter's `kong_admin` source can reach
/// (`dispatch_http_call` from a timer speaks plain HTTP unless the URL is https).
fn admin_plain_http(conf: &BTreeMap<String, String>) -> BTreeSet<(String, u16)> {
    admin_listeners(conf)
        .into_iter()
        .filter(|(_, _, ssl)| !ssl)
        .map(|(h, p, _)| (h, p))
        .collect()
}

/// With `config_source: "kong_admin"` (export) or import on, the Admin API the filter talks to must
/// be this node's own on loopback, served in plain HTTP by `admin_listen` (Kong's default has
/// `127.0.0.1:8001`).
fn kong_admin_problems(object: &Value, conf: &BTreeMap<String, String>) -> Vec<String> {
    let import = &object["cluster_fallback_config_import"];
    if object["config_source"] != "kong_admin" && *import != "on" && *import != true {
        return Vec::new();
    }
    let url = object["kong_admin_url"]
        .as_str()
        .unwrap_or("http://127.0.0.1:8001");
    let Some((host, port)) = host_port(url) else {
        return vec![format!("kong_admin_url {url} is not a URL")];
    };
    let loopback = ["127.0.0.1", "localhost", "[::1]"].contains(&host.as_str());
    let served = url.starts_with("http://")
        && admin_plain_http(conf).iter().any(|(h, p)| {
            *p == port && (h == "0.0.0.0" || h == "::" || (loopback && h == "127.0.0.1"))
        });
    let mut problems = Vec::new();
    if !loopback {
        problems.push(format!(
            "kong_admin_url {url}: not the node's own Admin API on loopback"
        ));
    }
    if !served {
        problems.push(format!(
            "kong_admin_url {url}: admin_listen has no plain-HTTP listener there"
        ));
    }
    problems
}

/// Every URL-ish place of a declarative config that Kong or the filter connects to.
fn endpoints(doc: &Value) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    let mut service = |s: &Value| {
        let what = format!("service {}", reference(s).unwrap_or_default());
        if let Some(url) = s["url"].as_str() {
            if let Some((h, p)) = host_port(url) {
                out.push((h, p, what.clone()));
            }
        }
        if let Some(h) = s["host"].as_str() {
            let p = s["port"].as_u64().unwrap_or(80) as u16;
            out.push((h.to_ascii_lowercase(), p, what));
        }
    };
    doc["services"]
        .as_array()
        .into_iter()
        .flatten()
        .for_each(&mut service);
    for u in doc["upstreams"].as_array().into_iter().flatten() {
        for t in u["targets"].as_array().into_iter().flatten() {
            if let Some((h, p)) = t["target"]
                .as_str()
                .and_then(|t| host_port(&format!("http://{t}")))
            {
                out.push((h, p, "upstream target".into()));
            }
        }
    }
    for t in doc["targets"].as_array().into_iter().flatten() {
        if let Some((h, p)) = t["target"]
            .as_str()
            .and_then(|t| host_port(&format!("http://{t}")))
        {
            out.push((h, p, "target".into()));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The checks.

struct Example {
    dir: PathBuf,
    versions: Vec<Kong>,
}

fn kong_examples() -> Vec<Example> {
    let base = root().join("examples/kong");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e}", base.display()))
        .flatten()
        .map(|e| e.path())
        // Version directories (`3.4`, `3.7-3.9`); topology examples such as `fallback-node` have
        // their own test (`fallback_node.rs`).
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("3."))
        })
        .collect();
    dirs.sort();
    let examples: Vec<Example> = dirs
        .into_iter()
        .map(|dir| {
            let versions = versions_of(&dir.file_name().unwrap().to_string_lossy());
            Example { dir, versions }
        })
        .collect();
    let covered: BTreeSet<Kong> = examples.iter().flat_map(|e| e.versions.clone()).collect();
    assert_eq!(
        covered,
        (4..=9).map(Kong).collect(),
        "examples/kong must cover Kong 3.4-3.9, each version once"
    );
    assert_eq!(
        examples.iter().map(|e| e.versions.len()).sum::<usize>(),
        6,
        "a Kong version in two example directories"
    );
    examples
}

/// How a file names its versions: `3.4`, or `3.7, 3.8, 3.9`.
fn version_words(versions: &[Kong]) -> String {
    versions
        .iter()
        .map(Kong::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a `config_bridge` filter config needs from the version and from the node, as problems.
fn check_filter(
    version: Kong,
    raw: &Value,
    rendered: &Rendered,
    conf: &BTreeMap<String, String>,
    admin: &BTreeSet<u16>,
    v: &jsonschema::Validator,
) -> Vec<String> {
    let mut problems = Vec::new();
    // What Kong hands to on_configure: 3.4 the string as is; 3.5+ cjson.encode(config) for a
    // table, a string as is (kong/runloop/wasm.lua).
    let (object, bytes) = match raw {
        Value::String(s) => (
            serde_json::from_str::<Value>(s).unwrap_or(Value::Null),
            s.clone().into_bytes(),
        ),
        other => (other.clone(), other.to_string().into_bytes()),
    };
    if version.config_is_string() != raw.is_string() {
        problems.push(format!(
            "Kong {version} wants the filter config as {}",
            if version.config_is_string() {
                "a string (filter_chains.lua@3.4.0: config = { type = \"string\" })"
            } else {
                "a JSON object (3.5+ validates it against config_bridge.meta.json)"
            }
        ));
    }
    if let Err(e) = parser_accepts_bytes(&bytes) {
        problems.push(format!("the filter rejects its config: {e}"));
    }
    for (what, value) in [("config", raw), ("config (as an object)", &object)] {
        let errors = schema_errors(v, value);
        if !errors.is_empty() {
            problems.push(format!("meta.json rejects the {what}: {errors:?}"));
        }
    }
    match rendered.zones() {
        Err(e) => problems.push(e),
        Ok(zones) => {
            let key = filter_key(&object);
            if !resolves(&key, &zones) {
                problems.push(format!(
                    "shared data key {key:?} resolves to no shm_kv zone (zones: {zones:?}): the filter traps"
                ));
            }
        }
    }
    let urls: Vec<&str> = ["storage_endpoint", "config_url"]
        .iter()
        .filter_map(|k| object[*k].as_str())
        .collect();
    let needs_dns = urls
        .iter()
        .filter_map(|u| host_port(u))
        .any(|(h, _)| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('['))
        || object.get("storage_endpoint").is_none();
    if needs_dns && rendered.directives("resolver").next().is_none() {
        problems.push("no wasm{} resolver: timer dispatches use 8.8.8.8".into());
    }
    for url in urls {
        if host_port(url).is_some_and(|(_, p)| admin.contains(&p)) {
            problems.push(format!("{url} is the Admin API"));
        }
    }
    problems.extend(kong_admin_problems(&object, conf));
    let env = rendered.worker_env();
    for (setting, var) in [
        ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
        ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        ("aws_region", "AWS_REGION"),
    ] {
        if object.get(setting).is_none() && !env.contains(var) {
            problems.push(format!("{setting} is neither set nor `env {var};`"));
        }
    }
    problems
}

/// Every file of an example names its versions: a first-line comment, or (JSON has no comments)
/// a row of examples/kong/README.md; and the example has all four files.
fn naming_problems(ex: &Example, label: &str, readme: &str) -> Vec<String> {
    let words = version_words(&ex.versions);
    let mut files: Vec<String> = fs::read_dir(&ex.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    let mut problems = Vec::new();
    for name in &files {
        let text = fs::read_to_string(ex.dir.join(name)).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let named = if name.ends_with(".json") {
            readme
                .lines()
                .any(|l| l.contains(&format!("{label}/{name}")) && l.contains(&words))
        } else {
            first.starts_with("# Kong ") && first.contains(&words)
        };
        if !named {
            problems.push(format!(
                "{label}/{name}: does not name its Kong versions ({words}) in its first line (JSON: in a README.md row)"
            ));
        }
    }
    for required in [
        "kong.conf",
        "kong.env",
        "declarative.yaml",
        "chain-admin-api.json",
    ] {
        if !files.iter().any(|f| f == required) {
            problems.push(format!("{label}: no {required}"));
        }
    }
    problems
}

/// The filter hangs on a service no route leads to, and nothing points at the Admin API.
fn placement_problems(
    label: &str,
    declarative: &Value,
    filters: &[FilterUse],
    admin: &BTreeSet<u16>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if filters.is_empty() {
        problems.push(format!("{label}/declarative.yaml: no config_bridge filter"));
    }
    for f in filters {
        match (&f.service, &f.route) {
            (Some(s), None) if routes_to(declarative, s) == 0 => {}
            (Some(s), None) => problems.push(format!(
                "{label}/declarative.yaml: service {s} carries the filter and has a route: attach it to a service with none"
            )),
            _ => problems.push(format!(
                "{label}/declarative.yaml: attach the filter chain to a service without routes, not to a route"
            )),
        }
    }
    for (h, p, what) in endpoints(declarative) {
        if admin.contains(&p) {
            problems.push(format!(
                "{label}/declarative.yaml: {what} points at the Admin API ({h}:{p})"
            ));
        }
    }
    problems
}

#[test]
fn every_kong_example_works_on_the_versions_it_names() {
    let v = validator();
    let nginx = engine();
    let tmp = tempfile::tempdir().unwrap();
    let readme = fs::read_to_string(root().join("examples/kong/README.md"))
        .expect("examples/kong/README.md");
    let mut problems = Vec::new();
    let mut engine_runs = 0;
    for ex in kong_examples() {
        let label = ex.dir.file_name().unwrap().to_string_lossy().to_string();
        let read = |name: &str| {
            let path = ex.dir.join(name);
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        problems.extend(naming_problems(&ex, &label, &readme));

        let from_conf = parse_kong_conf(&read("kong.conf"));
        let from_env = parse_env_file(&read("kong.env"), &ex.dir.join("kong.env"));
        let declarative: Value = serde_norway::from_str(&read("declarative.yaml"))
            .unwrap_or_else(|e| panic!("{label}/declarative.yaml: {e}"));
        let admin_body: Value = serde_json::from_str(&read("chain-admin-api.json"))
            .unwrap_or_else(|e| panic!("{label}/chain-admin-api.json: {e}"));
        let admin = admin_ports(&from_conf);

        let filters = declarative_filters(&declarative);
        problems.extend(placement_problems(&label, &declarative, &filters, &admin));
        let admin_filters = config_bridge_filters(&admin_body, Some("config-bridge".into()), None);
        if admin_filters.len() != 1 {
            problems.push(format!(
                "{label}/chain-admin-api.json: not one config_bridge filter"
            ));
        }

        for version in &ex.versions {
            for (source, settings) in [("kong.conf", &from_conf), ("kong.env", &from_env)] {
                let prefix = tmp.path().join(format!("{label}-{version}-{source}"));
                let rendered = render(*version, settings, &prefix);
                let configs = filters
                    .iter()
                    .map(|f| ("declarative.yaml", &f.config))
                    .chain(
                        admin_filters
                            .iter()
                            .map(|f| ("chain-admin-api.json", &f.config)),
                    );
                for (file, config) in configs {
                    for p in check_filter(*version, config, &rendered, settings, &admin, &v) {
                        problems.push(format!(
                            "{label}/{file} with {source} on Kong {version}: {p}"
                        ));
                    }
                }
                if let Some(nginx) = &nginx {
                    if rendered.wasm.iter().any(|l| l.contains(SYSTEM_CA_BUNDLE))
                        && !Path::new(SYSTEM_CA_BUNDLE).exists()
                    {
                        continue;
                    }
                    engine_runs += 1;
                    if let Err(e) = engine_test(nginx, &rendered, &prefix) {
                        problems.push(format!(
                            "{label}/{source} on Kong {version}: the real engine rejects\n{}\n{e}",
                            rendered.nginx_conf()
                        ));
                    }
                }
            }
            let (conf, env) = (
                render(*version, &from_conf, tmp.path()),
                render(*version, &from_env, tmp.path()),
            );
            let sorted = |r: &Rendered| {
                let mut l = [r.main.clone(), r.wasm.clone()].concat();
                l.sort();
                l
            };
            if sorted(&conf) != sorted(&env) {
                problems.push(format!(
                    "{label}: kong.conf and kong.env render differently on Kong {version}:\n{}\n{}",
                    conf.nginx_conf(),
                    env.nginx_conf()
                ));
            }
        }
    }
    match &nginx {
        Some(n) => eprintln!("real engine {}: {engine_runs} nginx -t runs", n.display()),
        None => eprintln!("real engine not found (NGX_WASM_NGINX): nginx -t skipped"),
    }
    assert_no_problems(&problems);
}

/// The model above, against what Kong's sources say each version renders (so a wrong model
/// cannot pass the examples by accident).
#[test]
fn the_model_renders_shared_data_settings_as_each_kong_version_does() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        [("wasm", "on")]
            .iter()
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let shm = |version: u8, pairs: &[(&str, &str)]| -> Vec<String> {
        render(Kong(version), &conf(pairs), tmp.path())
            .wasm
            .into_iter()
            .filter(|l| l.starts_with("shm_kv"))
            .collect()
    };
    let general = [("nginx_wasm_shm_kv", "1m")];
    assert_eq!(shm(4, &general), ["shm_kv kv 1m;"]);
    assert_eq!(shm(5, &general), ["shm_kv kv 1m;"]);
    assert_eq!(shm(6, &general), ["shm_kv 1m;"]); // nginx refuses it: Kong 3.6 does not start
    for minor in 7..=9 {
        assert_eq!(shm(minor, &general), ["shm_kv * 1m;"]);
    }
    let named = [("nginx_wasm_shm_kv_kv", "1m")];
    assert_eq!(shm(5, &named), ["shm_kv kv_kv 1m;"]);
    for minor in 6..=9 {
        assert_eq!(shm(minor, &named), ["shm_kv kv 1m;"]);
    }
    // The default zone only through a variable name kong.conf cannot spell.
    assert_eq!(shm(4, &[("nginx_wasm_shm_*", "1m")]), ["shm_kv * 1m;"]);
    assert_eq!(shm(6, &[("nginx_wasm_shm_kv_*", "1m")]), ["shm_kv * 1m;"]);
    assert_eq!(
        parse_kong_conf("nginx_wasm_shm_kv_* = 1m # the default zone?\n"),
        BTreeMap::from([("nginx_wasm_shm_kv__".to_string(), "1m".to_string())])
    );

    let zones = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert!(!resolves("config-bridge/v1/lease", &zones(&["kv"]))); // 3.4/3.5 trap
    assert!(resolves("kv/config-bridge/v1/lease", &zones(&["kv"])));
    assert!(resolves("config-bridge/v1/lease", &zones(&["*"])));
    assert!(resolves("kv/config-bridge/v1/lease", &zones(&["*"])));
    assert!(!resolves("config-bridge/v1/lease", &zones(&[])));

    // Kong's TLS injections, and the cache 3.8+ sets up by itself.
    let r = render(Kong(8), &conf(&[]), tmp.path());
    assert!(r
        .wasm
        .contains(&format!("tls_trusted_certificate {SYSTEM_CA_BUNDLE};")));
    assert!(r.wasm.contains(&"tls_verify_host on;".to_string()));
    assert!(r.wasm.iter().any(|l| l.starts_with("cache_config ")));
    let r = render(
        Kong(7),
        &conf(&[("lua_ssl_trusted_certificate", "/ca.pem,system")]),
        tmp.path(),
    );
    assert!(r
        .wasm
        .contains(&"tls_trusted_certificate /ca.pem;".to_string()));
    assert!(!r.wasm.iter().any(|l| l.starts_with("cache_config ")));

    let r = render(
        Kong(9),
        &conf(&[("nginx_main_env", "A; env B")]),
        tmp.path(),
    );
    assert_eq!(r.worker_env(), zones(&["A", "B"]));
}

/// The real engine agrees with the model about the shm_kv lines (skipped without the engine).
#[test]
fn the_real_engine_refuses_what_kong_3_6_renders_from_the_3_7_setting() {
    let Some(nginx) = engine() else {
        eprintln!("real engine not found (NGX_WASM_NGINX): skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let conf: BTreeMap<String, String> = [
        ("wasm", "on"),
        ("nginx_wasm_shm_kv", "1m"),
        ("lua_ssl_verify_depth", "0"),
        ("lua_ssl_trusted_certificate", "NONE"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let rendered = render(Kong(6), &conf, tmp.path());
    let err = engine_test(&nginx, &rendered, &tmp.path().join("3.6")).unwrap_err();
    assert!(
        err.contains("invalid number of arguments in \"shm_kv\""),
        "{err}"
    );
    let rendered = render(Kong(7), &conf, tmp.path());
    engine_test(&nginx, &rendered, &tmp.path().join("3.7")).unwrap();
}

/// The `kong_admin` check itself: the default listener passes; a CP's address, an https-only
/// `admin_listen`, or a port nothing listens on are each reported.
#[test]
fn the_kong_admin_source_must_read_the_nodes_own_plain_http_admin_api() {
    let conf = |listen: Option<&str>| -> BTreeMap<String, String> {
        listen
            .map(|l| BTreeMap::from([("admin_listen".to_string(), l.to_string())]))
            .unwrap_or_default()
    };
    let source = |url: Option<&str>| {
        let mut v = serde_json::json!({"config_source": "kong_admin"});
        if let Some(u) = url {
            v["kong_admin_url"] = u.into();
        }
        v
    };
    assert!(kong_admin_problems(&source(None), &conf(None)).is_empty());
    assert!(kong_admin_problems(
        &source(Some("http://127.0.0.1:8001")),
        &conf(Some("0.0.0.0:8001, 0.0.0.0:8444 http2 ssl"))
    )
    .is_empty());
    for (url, listen) in [
        (Some("http://kong-cp:8001"), None),
        (None, Some("127.0.0.1:8444 http2 ssl")),
        (Some("http://127.0.0.1:8002"), None),
        (Some("https://127.0.0.1:8444"), None),
    ] {
        assert!(
            !kong_admin_problems(&source(url), &conf(listen)).is_empty(),
            "{url:?} with admin_listen {listen:?} must be reported"
        );
    }
    // Another source is not this check's business.
    assert!(kong_admin_problems(
        &serde_json::json!({"config_source": "url", "config_url": "http://x:8080/c.json"}),
        &conf(None)
    )
    .is_empty());
}

/// `examples/kong/fallback-node/kic-values.yaml`: the Helm `gateway.env` rendered with each named
/// version's rules gives a zone for the bootstrap's keys and a resolver; `wasm_filters_path` is a
/// mounted volume an init container fills (Kong refuses to start on a missing path) with the module
/// and the meta.json; `admin_listen` keeps a plain-HTTP listener where the bootstrap's
/// `kong_admin_url` points (the chart has none by default); the credentials reach the workers.
#[test]
fn the_kic_values_start_kong_and_let_the_filter_import() {
    let dir = root().join("examples/kong/fallback-node");
    let text = fs::read_to_string(dir.join("kic-values.yaml")).unwrap();
    let values: Value = serde_norway::from_str(&text).unwrap();
    let gateway = &values["gateway"];
    let env: BTreeMap<String, String> = gateway["env"]
        .as_object()
        .expect("gateway.env")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map(str::to_string).unwrap_or(v.to_string()),
            )
        })
        .collect();
    let first = text.lines().next().unwrap_or_default();
    let versions: Vec<Kong> = (4..=9)
        .map(Kong)
        .filter(|v| first.contains(&v.to_string()))
        .collect();
    assert_eq!(
        versions,
        vec![Kong(7), Kong(8), Kong(9)],
        "kic-values.yaml names its versions in its first line: {first}"
    );
    let bootstrap: Value =
        serde_norway::from_str(&fs::read_to_string(dir.join("bootstrap-3.7-3.9.yaml")).unwrap())
            .unwrap();
    let filter = bootstrap["filter_chains"][0]["filters"][0]["config"].clone();
    let mut problems = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    for version in versions {
        let rendered = render(version, &env, &tmp.path().join(version.to_string()));
        match rendered.zones() {
            Err(e) => problems.push(format!("Kong {version}: {e}")),
            Ok(zones) if !resolves(&filter_key(&filter), &zones) => problems.push(format!(
                "Kong {version}: the bootstrap's keys resolve to no zone ({zones:?})"
            )),
            Ok(_) => {}
        }
        if rendered.directives("resolver").next().is_none() {
            problems.push(format!("Kong {version}: no wasm{{}} resolver"));
        }
        for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            if !rendered.worker_env().contains(var) {
                problems.push(format!("Kong {version}: workers do not see {var}"));
            }
        }
        if let Some(nginx) = engine() {
            if let Err(e) = engine_test(&nginx, &rendered, &tmp.path().join(version.to_string())) {
                problems.push(format!("Kong {version}: the real engine rejects it: {e}"));
            }
        }
    }
    // Without `admin_listen` in `env` the chart renders its own: TLS only (admin.http.enabled is
    // false by default), not Kong's default with 127.0.0.1:8001.
    let mut chart = env.clone();
    chart
        .entry("admin_listen".into())
        .or_insert_with(|| "0.0.0.0:8444 http2 ssl, [::]:8444 http2 ssl".into());
    problems.extend(kong_admin_problems(&filter, &chart));
    let deployment = &gateway["deployment"];
    let path = env.get("wasm_filters_path").cloned().unwrap_or_default();
    let mounted = deployment["userDefinedVolumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == path.as_str());
    match mounted {
        None => problems.push(format!(
            "wasm_filters_path {path} is not mounted in the proxy container"
        )),
        Some(m) => {
            let volume = m["name"].clone();
            let inits = deployment["initContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let fills = |file: &str| {
                inits.iter().any(|c| {
                    c.to_string().contains(file)
                        && c["volumeMounts"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|vm| vm["name"] == volume && vm.get("readOnly").is_none())
                })
            };
            if !inits.iter().any(|c| {
                c["args"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "pull"))
                    && c.to_string().contains(&format!("\"{path}\""))
            }) || !fills("config_bridge.meta.json")
            {
                problems.push(format!(
                    "no init container writes config_bridge.wasm and config_bridge.meta.json into {path}"
                ));
            }
        }
    }
    assert_no_problems(&problems);
}
