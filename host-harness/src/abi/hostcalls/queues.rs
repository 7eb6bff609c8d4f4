//! Shared queues: `proxy_{register,resolve,dequeue,enqueue}_shared_queue`. Enqueuing notifies the
//! registering context through the outbox (`on_queue_ready` after the guest call returns).

use wasmtime::{Linker, Result};

use super::super::memory::{read, read_string, return_bytes, write_u32};
use super::super::status::{EMPTY, NOT_FOUND, OK};
use super::super::Host;
use super::{bad_usage, nyi, C};
use crate::state::{lock, Queue};

pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.func_wrap("env", "proxy_register_shared_queue", register)?;
    linker.func_wrap("env", "proxy_resolve_shared_queue", resolve)?;
    linker.func_wrap("env", "proxy_dequeue_shared_queue", dequeue)?;
    linker.func_wrap("env", "proxy_enqueue_shared_queue", enqueue)?;
    Ok(())
}

fn register(mut c: C, np: u32, ns: u32, out: u32) -> Result<i32> {
    let name = read_string(&mut c, np, ns)?;
    c.data()
        .world
        .profile
        .queue_zone(&name)
        .map_err(bad_usage)?;
    let (worker, ctx, generation) = {
        let h = c.data();
        (h.origin.worker, h.effective_context, h.generation)
    };
    let id = {
        let mut queues = lock(&c.data().node.queues);
        match queues.find("", &name) {
            Some(id) => {
                // Re-registering moves the notifications to the caller (as in Envoy).
                if let Some(q) = queues.get_mut(id) {
                    q.owner_worker = worker;
                    q.owner_context = ctx;
                    q.owner_generation = generation;
                }
                id
            }
            None => {
                queues.queues.push(Queue {
                    vm_id: String::new(),
                    name,
                    owner_worker: worker,
                    owner_context: ctx,
                    owner_generation: generation,
                    items: Default::default(),
                });
                queues.queues.len() as u32
            }
        }
    };
    write_u32(&mut c, out, id)?;
    Ok(OK)
}

fn resolve(mut c: C, vp: u32, vs: u32, np: u32, ns: u32, out: u32) -> Result<i32> {
    // ngx_wasm_module maps it to `ngx_proxy_wasm_hfuncs_nop` (NYI).
    nyi(c.data(), "proxy_resolve_shared_queue")?;
    let vm_id = read_string(&mut c, vp, vs)?;
    let name = read_string(&mut c, np, ns)?;
    let found = lock(&c.data().node.queues).find(&vm_id, &name);
    match found {
        Some(id) => {
            write_u32(&mut c, out, id)?;
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

/// An unknown queue id: ngx_wasm_module traps "could not find queue", Envoy answers NotFound.
fn unknown_queue(c: &C) -> Result<i32> {
    if c.data().world.profile.strict_hostcalls {
        return Err(bad_usage("could not find queue"));
    }
    Ok(NOT_FOUND)
}

fn dequeue(mut c: C, id: u32, ptr_out: u32, size_out: u32) -> Result<i32> {
    let item = {
        let mut queues = lock(&c.data().node.queues);
        match queues.get_mut(id) {
            None => {
                drop(queues);
                return unknown_queue(&c);
            }
            Some(q) => q.items.pop_front(),
        }
    };
    match item {
        None => Ok(EMPTY),
        Some(bytes) => {
            return_bytes(&mut c, Some(&bytes), ptr_out, size_out)?;
            Ok(OK)
        }
    }
}

fn enqueue(mut c: C, id: u32, vp: u32, vs: u32) -> Result<i32> {
    let value = read(&mut c, vp, vs)?;
    {
        let mut queues = lock(&c.data().node.queues);
        match queues.get_mut(id) {
            None => {
                drop(queues);
                return unknown_queue(&c);
            }
            Some(q) => q.items.push_back(value),
        }
    }
    c.data_mut().outbox.enqueued.push(id);
    Ok(OK)
}
