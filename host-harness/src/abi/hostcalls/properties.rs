//! Properties: `proxy_get_property`, `proxy_set_property`, with ngx_wasm_module's root-context
//! rules.

use wasmtime::{bail, Linker, Result};

use super::super::maps::property_path;
use super::super::memory::{read, return_bytes};
use super::super::status::{NOT_FOUND, OK};
use super::super::{Callback, Host};
use super::C;

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_property", proxy_get_property)?;
    linker.func_wrap("env", "proxy_set_property", proxy_set_property)?;
    Ok(())
}

/// Whether a root context's callback is running (where ngx_wasm_module has no properties).
fn in_root_callback(h: &Host) -> bool {
    h.is_root(h.effective_context)
        && matches!(
            h.callback,
            Callback::VmStart
                | Callback::Configure
                | Callback::Tick
                | Callback::RootCallResponse
                | Callback::QueueReady
                | Callback::ContextCreate
        )
}

/// A property in a root context of ngx_wasm_module: only `plugin_root_id` ("0"); `plugin_name` in
/// `on_vm_start`/`on_configure` crashes the worker.
fn root_property(h: &mut Host, path: &str) -> Result<Option<Vec<u8>>> {
    match path {
        "plugin_name" if matches!(h.callback, Callback::VmStart | Callback::Configure) => {
            h.fatal = Some(format!(
                "host crashed reading property plugin_name in {}",
                h.callback.name()
            ));
            bail!("host crash (segfault) reading plugin_name in a root context");
        }
        "plugin_root_id" => Ok(Some(b"0".to_vec())),
        _ => Ok(None),
    }
}

fn proxy_get_property(mut c: C, pp: u32, ps: u32, ptr_out: u32, size_out: u32) -> Result<i32> {
    let path = property_path(&read(&mut c, pp, ps)?);
    let value = {
        let h = c.data_mut();
        if h.world.profile.no_root_properties && in_root_callback(h) {
            root_property(h, &path)?
        } else {
            h.node
                .properties
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&path)
                .cloned()
        }
    };
    match value {
        None => Ok(NOT_FOUND),
        Some(v) => {
            return_bytes(&mut c, Some(&v), ptr_out, size_out)?;
            Ok(OK)
        }
    }
}

fn proxy_set_property(mut c: C, pp: u32, ps: u32, vp: u32, vs: u32) -> Result<i32> {
    let path = property_path(&read(&mut c, pp, ps)?);
    let value = read(&mut c, vp, vs)?;
    let h = c.data();
    if h.world.profile.no_root_properties && h.is_root(h.effective_context) {
        return Ok(NOT_FOUND);
    }
    h.node
        .properties
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path, value);
    Ok(OK)
}
