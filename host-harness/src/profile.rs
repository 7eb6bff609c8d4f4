//! What differs between real hosts (docs/host-behaviours.md), as data. The ABI code asks the profile instead of
//! hard-coding one host's behaviour.

use crate::hostile::{Hostility, Injection};

/// Behaviour switches of a simulated host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostProfile {
    /// The profile's name (`envoy`, `ngx_wasm_module`, `kong_legacy`, `hostile`).
    pub name: &'static str,
    /// `dispatch_http_call` from `on_vm_start`/`on_configure` traps and the worker dies for good.
    pub dispatch_traps_outside_callbacks: bool,
    /// A dispatch made inside a root context's `on_http_call_response` crashes the worker (host
    /// segfault), recorded as a fatal host error.
    pub dispatch_in_root_call_response_crashes: bool,
    /// `set_shared_data` with cas 0 on an existing key fails with CasMismatch (ngx); otherwise cas 0
    /// means "no check" (Envoy).
    pub strict_cas: bool,
    /// A failed call calls back with zero headers plus a readable `:dispatch_status` (ngx) instead
    /// of only zero headers (Envoy).
    pub dispatch_status_header: bool,
    /// The host calls back when a call fails. Kong before 3.9 sometimes does not.
    pub callback_on_failure: bool,
    /// Upstreams are `host[:port]` (ngx) rather than cluster names (Envoy). With ngx an unknown
    /// upstream is a `resolver failure` callback; with Envoy `dispatch_http_call` returns BadArgument.
    pub upstream_is_host_port: bool,
    /// Properties cannot be read in root contexts; `plugin_name` there crashes the worker.
    pub no_root_properties: bool,
    /// A `shm_kv` zone is configured. Without one, `get_shared_data`/`set_shared_data` trap.
    pub shared_data_zone: bool,
    /// After a trap the host recreates the root context (`on_configure` again, no `on_vm_start`)
    /// and adds another tick timer; otherwise the worker stays dead.
    pub recover_after_trap: bool,
    /// The recovery waits until something needs the instance: the next request through the
    /// filter or the next tick of a root context (ngx_wasm_module: `ngx_proxy_wasm_run_step`
    /// re-creates a trapped instance through `ngx_proxy_wasm_create_context`). Otherwise it
    /// runs right after the trap.
    pub lazy_recovery: bool,
    /// `on_vm_start` runs for every root context (ngx) rather than once per VM (Envoy).
    pub vm_start_per_root_context: bool,
    /// The metrics ABI answers Ok. When false, `proxy_define_metric` returns InternalFailure.
    pub metrics: bool,
    /// `on_configure` returning false kills the worker for good (ngx_wasm_module: "exited with
    /// fatal code 2 and cannot be respawned"); otherwise the host only refuses the filter.
    pub configure_false_is_fatal: bool,
    /// A root context may set its tick period once; a second `set_tick_period` traps
    /// (ngx_wasm_module: "tick_period already set").
    pub tick_period_once: bool,
    /// Shared-data keys `<zone>/<rest>` resolve in the `shm_kv` zone of that name when one is
    /// declared (ngx_wasm_module namespaces), else in the default zone `*`
    /// ([`HostProfile::shared_data_zone`]); no zone to resolve to traps.
    pub namespaced_shared_data: bool,
    /// Named `shm_kv` zones (`shm_kv kv 1m;`), besides the default one.
    pub named_shm_zones: Vec<String>,
    /// The `shm_queue` zones of an nginx `wasm{}` block ([`HostProfile::with_shm_queues`]):
    /// registering a queue by another name traps (ngx_wasm_module). `None`: queues are not
    /// tied to zones and any name registers.
    pub shm_queues: Option<Vec<String>>,
    /// Unusual-but-legal answers and unasked-for callbacks, seeded ([`HostProfile::hostile`]).
    pub hostility: Option<Hostility>,
    /// How HTTP exchanges run through filters: end-of-stream flags, header counts, body
    /// buffering, local responses, callback order, context ids (docs/host-behaviours.md).
    pub http: HttpModel,
    /// ngx_wasm_module's argument checks in hostcalls: a bad log level fails, a local response
    /// out of 100-999 is refused and after the response started traps, an unknown property
    /// cannot be set, `set_tick_period` from an HTTP context and a dispatch without a host trap,
    /// header names keep their case, invalid characters are percent-encoded, maps are cut at 100.
    pub strict_hostcalls: bool,
    /// Hostcalls the host declares but does not implement: calling one traps
    /// ("host trap (function not yet implemented)").
    pub nyi_hostcalls: Vec<&'static str>,
    /// Imports the host declares with another signature than the SDKs: a module importing one
    /// does not load (ngx_wasm_module 0.6: `proxy_get_log_level`). Off by default (the probe
    /// guest imports it); [`HostProfile::strict_imports`] turns it on.
    pub mismatched_imports: Vec<&'static str>,
}

/// The HTTP behaviour of a host (docs/host-behaviours.md, "HTTP exchanges").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpModel {
    /// Envoy: headers carry end_of_stream, a body-less message has no body callback, body
    /// `Pause` buffers and calls again with each chunk, response phases run in reverse chain
    /// order, `on_log` before `on_done`; contexts and tokens count from 1 world-wide.
    Envoy,
    /// ngx_wasm_module: headers come with eof false, every body gets a callback (an empty one
    /// `(0, eof)`), the request body comes whole, response body `Pause` buffers to the end, no
    /// trailer callbacks, a local response gets a trailing LF and Content-Length/-Type, `on_done`
    /// before `on_log`, HTTP contexts count from 1 per worker and call tokens from 0.
    Ngx,
}

impl HttpModel {
    /// Header names as the host presents them to a filter: Envoy's HTTP codecs lower-case every
    /// name (the SDK's `http_headers` example: a local response's `Powered-By` is logged as
    /// `powered-by` in Envoy); ngx_wasm_module keeps the case nginx received or was given.
    pub fn present_names(self, headers: &mut [(String, String)]) {
        if self == HttpModel::Envoy {
            for (k, _) in headers.iter_mut() {
                k.make_ascii_lowercase();
            }
        }
    }
}

impl HostProfile {
    /// Envoy / Istio.
    pub fn envoy() -> Self {
        HostProfile {
            name: "envoy",
            dispatch_traps_outside_callbacks: false,
            dispatch_in_root_call_response_crashes: false,
            strict_cas: false,
            dispatch_status_header: false,
            callback_on_failure: true,
            upstream_is_host_port: false,
            no_root_properties: false,
            shared_data_zone: true,
            recover_after_trap: false,
            lazy_recovery: false,
            vm_start_per_root_context: false,
            metrics: true,
            configure_false_is_fatal: false,
            tick_period_once: false,
            namespaced_shared_data: false,
            named_shm_zones: Vec::new(),
            shm_queues: None,
            hostility: None,
            http: HttpModel::Envoy,
            strict_hostcalls: false,
            nyi_hostcalls: Vec::new(),
            mismatched_imports: Vec::new(),
        }
    }

    /// Kong 3.9+ / nginx with ngx_wasm_module 0.6.
    pub fn ngx_wasm_module() -> Self {
        HostProfile {
            name: "ngx_wasm_module",
            dispatch_traps_outside_callbacks: true,
            dispatch_in_root_call_response_crashes: true,
            strict_cas: true,
            dispatch_status_header: true,
            callback_on_failure: true,
            upstream_is_host_port: true,
            no_root_properties: true,
            shared_data_zone: true,
            recover_after_trap: true,
            lazy_recovery: true,
            vm_start_per_root_context: true,
            metrics: true,
            configure_false_is_fatal: true,
            tick_period_once: true,
            namespaced_shared_data: true,
            named_shm_zones: Vec::new(),
            shm_queues: None,
            hostility: None,
            http: HttpModel::Ngx,
            strict_hostcalls: true,
            // ngx_wasm_module's hostcall table maps these to `ngx_proxy_wasm_hfuncs_nop` (NYI).
            // Not `proxy_get_log_level`: it is NYI too, but declared with two parameters, so a
            // module that imports the SDK's one fails to load at all (not emulated:
            // docs/host-behaviours.md).
            nyi_hostcalls: vec![
                "proxy_done",
                "proxy_close_stream",
                "proxy_continue_response",
                "proxy_get_status",
                "proxy_grpc_call",
                "proxy_grpc_stream",
                "proxy_grpc_send",
                "proxy_grpc_cancel",
                "proxy_grpc_close",
                "proxy_resolve_shared_queue",
            ],
            mismatched_imports: Vec::new(),
        }
    }

    /// ngx_wasm_module's import signatures: a module importing `proxy_get_log_level` (declared
    /// there with two parameters, one in the SDKs) fails to load, as in the engine.
    pub fn strict_imports(mut self) -> Self {
        if self.http == HttpModel::Ngx {
            self.mismatched_imports = vec!["proxy_get_log_level"];
        }
        self
    }

    /// This profile, with a hostcall the host leaves unimplemented answered after all (to run a
    /// guest that calls it where the difference does not matter to the test).
    pub fn implementing(mut self, hostcall: &str) -> Self {
        self.nyi_hostcalls.retain(|h| *h != hostcall);
        self
    }

    /// Kong before 3.9: as [`HostProfile::ngx_wasm_module`], but failed calls may never call back.
    pub fn kong_legacy() -> Self {
        HostProfile {
            name: "kong_legacy",
            callback_on_failure: false,
            ..HostProfile::ngx_wasm_module()
        }
    }

    /// A host that answers with unusual-but-legal statuses and delivers callbacks nobody asked
    /// for (lost, duplicated, for unknown tokens and contexts), on top of
    /// [`HostProfile::ngx_wasm_module`]: proves that a guest never traps whatever a host returns.
    /// Seeded and recorded: see [`crate::hostile`], [`HostProfile::seed`],
    /// [`HostProfile::hostile_rate`], [`World::injections`](crate::World::injections).
    pub fn hostile() -> Self {
        HostProfile {
            name: "hostile",
            hostility: Some(Hostility::default()),
            // Hostility is about statuses and callbacks; guests written for it may set their tick
            // period again (the ngx rule is tested with the ngx profile).
            tick_period_once: false,
            ..HostProfile::ngx_wasm_module()
        }
    }

    fn hostility_mut(&mut self) -> &mut Hostility {
        self.hostility.get_or_insert_with(Hostility::default)
    }

    /// The seed of the hostility's RNG. Makes the profile hostile if it was not.
    pub fn seed(mut self, seed: u64) -> Self {
        self.hostility_mut().seed = seed;
        self
    }

    /// The chance (0 to 1) that one decision point injects. Makes the profile hostile if it was not.
    pub fn hostile_rate(mut self, probability: f64) -> Self {
        let ppm = (probability.clamp(0.0, 1.0) * 1_000_000.0).round() as u32;
        self.hostility_mut().rate_ppm = ppm;
        self
    }

    /// Injects only these kinds. Makes the profile hostile if it was not.
    pub fn hostile_only(mut self, kinds: &[Injection]) -> Self {
        self.hostility_mut().kinds = kinds.to_vec();
        self
    }

    /// Never injects these kinds. Makes the profile hostile if it was not.
    pub fn hostile_without(mut self, kinds: &[Injection]) -> Self {
        self.hostility_mut().kinds.retain(|k| !kinds.contains(k));
        self
    }

    /// The `shm_kv` zones of an nginx `wasm{}` block: `"*"` is the default zone, any other name a
    /// named zone (`shm_kv kv 1m;`). An empty list means no `shm_kv` at all.
    pub fn with_shm_zones(mut self, zones: &[&str]) -> Self {
        self.shared_data_zone = zones.contains(&"*");
        self.named_shm_zones = zones
            .iter()
            .filter(|z| **z != "*")
            .map(|z| z.to_string())
            .collect();
        self
    }

    /// The `shm_queue` zones of an nginx `wasm{}` block (`shm_queue q 1m;`): a queue registers
    /// only under one of these names. An empty list means no `shm_queue` at all.
    pub fn with_shm_queues(mut self, zones: &[&str]) -> Self {
        self.shm_queues = Some(zones.iter().map(|z| z.to_string()).collect());
        self
    }

    /// Whether a queue may be registered under `name`, or the host's trap message
    /// (ngx_wasm_module's `ngx_proxy_wasm_hfuncs_register_shared_queue`: the name must be an
    /// `shm_queue` zone's, and a `shm_kv` zone's name is refused).
    pub fn queue_zone(&self, name: &str) -> Result<(), &'static str> {
        let Some(queues) = &self.shm_queues else {
            return Ok(());
        };
        if queues.iter().any(|q| q == name) {
            Ok(())
        } else if self.named_shm_zones.iter().any(|z| z == name)
            || (self.shared_data_zone && name == "*")
        {
            Err("attempt to use a key/value shm store as a queue")
        } else {
            Err("could not find queue")
        }
    }

    /// The zone a shared-data key resolves to, or why the host traps (no zone at all).
    pub fn resolve_shm_zone(&self, key: &str) -> Result<String, String> {
        if self.namespaced_shared_data {
            if let Some((ns, _)) = key.split_once('/') {
                if self.named_shm_zones.iter().any(|z| z == ns) {
                    return Ok(ns.to_string());
                }
            }
        }
        if self.shared_data_zone {
            Ok("*".to_string())
        } else if self.namespaced_shared_data {
            Err(format!(
                "could not resolve namespace of key \"{key}\" (no shm_kv zone for it, and no default zone `*`)"
            ))
        } else {
            Err("no shm_kv zone".to_string())
        }
    }

    /// A profile by name (`envoy`, `ngx_wasm_module`/`ngx`/`kong`, `kong_legacy`, `hostile`).
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "envoy" | "istio" => Some(HostProfile::envoy()),
            "ngx_wasm_module" | "ngx" | "kong" => Some(HostProfile::ngx_wasm_module()),
            "kong_legacy" => Some(HostProfile::kong_legacy()),
            "hostile" => Some(HostProfile::hostile()),
            _ => None,
        }
    }
}
