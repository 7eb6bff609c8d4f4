//! Nodes and their workers' lives, as a test drives them: adding a node, starting, killing,
//! restarting and reloading workers, reconfiguring filters. Each worker does the work itself
//! (`super::worker`); the world routes and keeps each node's blueprint.

use std::sync::Arc;

use anyhow::{anyhow, Result};

use super::worker::{Blueprint, Worker};
use super::{Node, NodeId, NodeSpec, World};
use crate::state::{lock, NodeShared};

impl World {
    /// Adds a node and starts its workers (`on_vm_start`, `on_configure` on every root context).
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeId> {
        // A node without a filter would run nothing at all, silently.
        if spec.filters.is_empty() {
            return Err(anyhow!(
                "node `{}` has no filter: add one with NodeSpec::filter (or named_filter)",
                spec.name
            ));
        }
        let blueprint = Arc::new(Blueprint::new(&spec, &self.shared.profile)?);
        let shared = node_shared(&spec);
        let n = self.nodes.len();
        let workers = (0..spec.workers)
            .map(|w| {
                let (bp, node) = (blueprint.clone(), shared.clone());
                Worker::new(self.shared.clone(), node, bp, (n, w), &spec.name)
            })
            .collect();
        self.nodes.push(Node {
            spec,
            shared,
            blueprint,
            workers,
        });
        for w in 0..self.nodes[n].workers.len() {
            self.start_worker(NodeId(n), w)?;
        }
        Ok(NodeId(n))
    }

    /// Starts (or restarts) a worker as a fresh process: new instance, `on_vm_start`,
    /// `on_configure`. Fails only when the module cannot be instantiated.
    pub fn start_worker(&mut self, node: NodeId, worker: usize) -> Result<()> {
        self.on_worker(node.0, worker, Worker::start)
    }

    /// Kills a worker (as `kill -9` would). Its calls in flight are orphaned, its timers stop.
    pub fn kill_worker(&mut self, node: NodeId, worker: usize) {
        self.nodes[node.0].workers[worker].kill();
    }

    /// Whether a worker is running.
    /// A worker whose instance trapped and waits for its lazy recovery is running (the nginx
    /// process lives on).
    pub fn worker_alive(&self, node: NodeId, worker: usize) -> bool {
        self.nodes[node.0].workers[worker].alive()
    }

    /// Why a worker is not running.
    pub fn worker_death(&self, node: NodeId, worker: usize) -> Option<String> {
        self.nodes[node.0].workers[worker].death()
    }

    /// What `on_configure` returned for a filter on a worker (`None`: not run / worker dead).
    pub fn configured(&self, node: NodeId, worker: usize, filter: usize) -> Option<bool> {
        self.nodes[node.0].workers[worker].configured(filter)
    }

    /// Gives a filter a new configuration and runs `on_configure` on every live worker, as Kong
    /// does when a filter chain's config changes. Returns each worker's result.
    pub fn reconfigure(
        &mut self,
        node: NodeId,
        filter: usize,
        plugin_config: impl Into<Vec<u8>>,
    ) -> Vec<Option<bool>> {
        let blueprint = self.set_filter_config(node, filter, plugin_config.into());
        (0..self.nodes[node.0].workers.len())
            .map(|w| {
                let bp = blueprint.clone();
                self.on_worker(node.0, w, |worker| worker.reconfigure(bp, filter))
            })
            .collect()
    }

    /// An nginx reload with a new configuration for one filter (`proxy_wasm` / Kong filter
    /// chain): the new workers start with it, shared data wiped.
    pub fn reload_node_with(
        &mut self,
        node: NodeId,
        filter: usize,
        plugin_config: impl Into<Vec<u8>>,
    ) -> Result<()> {
        let blueprint = self.set_filter_config(node, filter, plugin_config.into());
        for worker in &mut self.nodes[node.0].workers {
            worker.set_blueprint(blueprint.clone());
        }
        self.reload_node(node)
    }

    /// Restarts every worker of a node and wipes its shared data and queues (an nginx reload).
    pub fn reload_node(&mut self, node: NodeId) -> Result<()> {
        lock(&self.nodes[node.0].shared.shared_data).clear();
        lock(&self.nodes[node.0].shared.queues).queues.clear();
        for w in 0..self.nodes[node.0].workers.len() {
            self.kill_worker(node, w);
            self.start_worker(node, w)?;
        }
        Ok(())
    }

    /// A filter's new plugin configuration in the node's spec and blueprint (workers take the
    /// new blueprint when they next use it).
    fn set_filter_config(
        &mut self,
        node: NodeId,
        filter: usize,
        config: Vec<u8>,
    ) -> Arc<Blueprint> {
        let n = &mut self.nodes[node.0];
        n.blueprint = Arc::new(n.blueprint.with_config(filter, &config));
        n.spec.filters[filter].plugin_config = config;
        n.blueprint.clone()
    }
}

/// A node's shared state, with its properties (`plugin_root_id` and the spec's).
fn node_shared(spec: &NodeSpec) -> Arc<NodeShared> {
    let shared = NodeShared::new(&spec.name, spec.hostname.as_deref().unwrap_or(&spec.name));
    {
        let mut props = shared.properties.write().unwrap_or_else(|e| e.into_inner());
        props.insert("plugin_root_id".into(), b"0".to_vec());
        // Keys are NUL-joined segments; a dotted path splits at its dots.
        for (k, v) in &spec.properties {
            let key = if k.contains('\0') {
                k.clone()
            } else {
                k.replace('.', "\0")
            };
            props.insert(key, v.clone());
        }
    }
    shared
}
