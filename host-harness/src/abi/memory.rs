//! Guest memory access for hostcalls: bounds-checked reads, writes of out-parameters, and
//! allocation through the guest's own `proxy_on_memory_allocate` (the host hands data back in
//! memory the guest owns, which the SDK then frees as a `Vec`).

use wasmtime::{bail, format_err as anyhow, Caller, Extern, Memory, Result};

use super::Host;

fn memory(caller: &mut Caller<'_, Host>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => bail!("the guest exports no memory"),
    }
}

/// Copies `len` bytes at `ptr` out of guest memory. A null pointer with length 0 is empty.
pub(crate) fn read(caller: &mut Caller<'_, Host>, ptr: u32, len: u32) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mem = memory(caller)?;
    let data = mem.data(&caller);
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or_else(|| anyhow!("guest pointer overflow"))?;
    data.get(start..end)
        .map(|s| s.to_vec())
        .ok_or_else(|| anyhow!("guest passed an out-of-bounds buffer {ptr:#x}+{len}"))
}

pub(crate) fn read_string(caller: &mut Caller<'_, Host>, ptr: u32, len: u32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

pub(crate) fn write(caller: &mut Caller<'_, Host>, ptr: u32, bytes: &[u8]) -> Result<()> {
    let mem = memory(caller)?;
    let data = mem.data_mut(caller);
    let start = ptr as usize;
    let end = start
        .checked_add(bytes.len())
        .ok_or_else(|| anyhow!("guest pointer overflow"))?;
    let dst = data
        .get_mut(start..end)
        .ok_or_else(|| anyhow!("guest passed an out-of-bounds out-parameter {ptr:#x}"))?;
    dst.copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(caller: &mut Caller<'_, Host>, ptr: u32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Caller<'_, Host>, ptr: u32, value: u64) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates guest memory through the guest's allocator.
fn allocate(caller: &mut Caller<'_, Host>, size: u32) -> Result<u32> {
    let func = match caller
        .get_export("proxy_on_memory_allocate")
        .or_else(|| caller.get_export("malloc"))
    {
        Some(Extern::Func(f)) => f,
        _ => bail!("the guest exports no proxy_on_memory_allocate"),
    };
    let typed = func.typed::<u32, u32>(&caller)?;
    let ptr = typed.call(&mut *caller, size)?;
    if ptr == 0 && size != 0 {
        bail!("the guest allocator returned null for {size} bytes");
    }
    Ok(ptr)
}

/// Hands `data` to the guest: allocates, copies, and writes pointer and length to the
/// out-parameters. `None` writes a null pointer and length 0 (the SDK reads it as "no value").
pub(crate) fn return_bytes(
    caller: &mut Caller<'_, Host>,
    data: Option<&[u8]>,
    ptr_out: u32,
    size_out: u32,
) -> Result<()> {
    let (ptr, len) = match data {
        None => (0, 0),
        Some(bytes) => {
            let len = u32::try_from(bytes.len()).map_err(|_| anyhow!("value too large"))?;
            let ptr = allocate(caller, len)?;
            write(caller, ptr, bytes)?;
            (ptr, len)
        }
    };
    write_u32(caller, ptr_out, ptr)?;
    write_u32(caller, size_out, len)
}
