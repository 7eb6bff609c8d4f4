//! Loading a filter: compile once per process (Cranelift takes ~0.5 s for a 300 KB module), check
//! its imports against what the harness provides, instantiate cheaply per worker.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use wasmtime::{Engine, Module};

/// The ABI a module declares through its `proxy_abi_version_*` export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_2_0`.
    V0_2_0,
    /// `proxy_abi_version_0_2_1` (the Rust SDK 0.2.x).
    V0_2_1,
}

/// A compiled filter, cheap to clone and share between worlds and threads.
#[derive(Clone)]
pub struct PluginModule {
    pub(crate) engine: Engine,
    pub(crate) module: Module,
    /// The proxy-wasm ABI version it exports.
    pub abi: AbiVersion,
    /// The `.wasm` size in bytes.
    pub size_bytes: usize,
}

impl std::fmt::Debug for PluginModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginModule")
            .field("abi", &self.abi)
            .field("size_bytes", &self.size_bytes)
            .finish()
    }
}

impl PluginModule {
    /// Compiles a module from a file.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))
    }

    /// Compiles a module and refuses it when it imports anything the harness does not provide.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        // `HARNESS_PERF_MAP=1`: the JIT code's symbols for `perf record` (/tmp/perf-<pid>.map),
        // to see which guest function a long callback spends its time in.
        if std::env::var_os("HARNESS_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| anyhow!("{e:?}"))?;
        let module = Module::new(&engine, bytes).map_err(|e| anyhow!("invalid module: {e:?}"))?;
        let missing = missing_imports(&engine, &module)?;
        if !missing.is_empty() {
            bail!(
                "the module imports functions the harness does not provide: {}",
                missing.join(", ")
            );
        }
        let abi = if module.get_export("proxy_abi_version_0_2_1").is_some() {
            AbiVersion::V0_2_1
        } else if module.get_export("proxy_abi_version_0_2_0").is_some() {
            AbiVersion::V0_2_0
        } else {
            bail!("not a proxy-wasm 0.2.x module: no proxy_abi_version_0_2_1 or _0_2_0 export");
        };
        if module.get_export("memory").is_none() {
            bail!("the module exports no memory");
        }
        if module.get_export("proxy_on_memory_allocate").is_none()
            && module.get_export("malloc").is_none()
        {
            bail!("the module exports no proxy_on_memory_allocate (or malloc)");
        }
        Ok(PluginModule {
            engine,
            module,
            abi,
            size_bytes: bytes.len(),
        })
    }

    /// `module::function` names of every import.
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect()
    }

    /// Names of every export.
    pub fn exports(&self) -> Vec<String> {
        self.module
            .exports()
            .map(|e| e.name().to_string())
            .collect()
    }
}

/// Imports that no harness linker definition satisfies (by name and type).
fn missing_imports(engine: &Engine, module: &Module) -> anyhow::Result<Vec<String>> {
    let provided = crate::abi::provided_imports(engine).map_err(|e| anyhow!("{e:?}"))?;
    let missing: Vec<String> = module
        .imports()
        .filter(|i| {
            !provided
                .iter()
                .any(|(m, n)| m == i.module() && n == i.name())
        })
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    if missing.is_empty() {
        let linker = crate::abi::linker(engine).map_err(|e| anyhow!("{e:?}"))?;
        // Names all resolve: let wasmtime check the signatures too.
        linker
            .instantiate_pre(module)
            .map_err(|e| anyhow!("the module's imports do not match the harness: {e:?}"))?;
    }
    Ok(missing)
}
