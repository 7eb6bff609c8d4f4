//! What a test sets up: the nodes it runs ([`NodeSpec`], [`FilterSpec`]) and the HTTP exchanges
//! it sends through them ([`HttpExchange`]).

use std::time::Duration;

use crate::abi::HttpMessages;
use crate::module::PluginModule;

/// One filter instance in a worker's chain: its root context's configuration.
#[derive(Clone, Debug, Default)]
pub struct FilterSpec {
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
}

impl FilterSpec {
    pub fn new(plugin_config: impl Into<Vec<u8>>) -> Self {
        FilterSpec {
            plugin_config: plugin_config.into(),
            vm_config: Vec::new(),
        }
    }
}

/// What a node runs.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub module: PluginModule,
    pub workers: usize,
    pub filters: Vec<FilterSpec>,
    /// Environment variables the workers see through WASI.
    pub env: Vec<(String, String)>,
    /// Properties readable from HTTP contexts (dotted paths).
    pub properties: Vec<(String, Vec<u8>)>,
    /// Seed of the WASI random generators (per worker it is mixed with the worker index).
    pub seed: u64,
}

impl NodeSpec {
    pub fn new(name: &str, module: &PluginModule) -> Self {
        NodeSpec {
            name: name.to_string(),
            module: module.clone(),
            workers: 1,
            filters: Vec::new(),
            env: Vec::new(),
            properties: Vec::new(),
            seed: 0,
        }
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds a filter instance with this plugin configuration.
    pub fn filter(mut self, plugin_config: impl Into<Vec<u8>>) -> Self {
        self.filters.push(FilterSpec::new(plugin_config));
        self
    }

    pub fn filter_spec(mut self, spec: FilterSpec) -> Self {
        self.filters.push(spec);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties.push((path.to_string(), value.into()));
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// An HTTP request/response passing through a filter chain. Its headers, bodies and trailers are
/// an [`HttpMessages`] it dereferences to (`exchange.request_headers.push(...)`).
#[derive(Clone, Debug, Default)]
pub struct HttpExchange {
    pub messages: HttpMessages,
    /// How long (virtual time) a paused phase may wait for the filter to resume it.
    pub max_pause: Duration,
}

impl HttpExchange {
    pub fn get(path: &str) -> Self {
        HttpExchange {
            messages: HttpMessages {
                request_headers: vec![
                    (":method".into(), "GET".into()),
                    (":path".into(), path.into()),
                    (":authority".into(), "example.test".into()),
                    (":scheme".into(), "http".into()),
                ],
                response_headers: vec![(":status".into(), "200".into())],
                ..Default::default()
            },
            max_pause: Duration::from_secs(60),
        }
    }
}

crate::abi::deref_to_messages!(HttpExchange);
