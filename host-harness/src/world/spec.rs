//! What a test sets up: the nodes it runs ([`NodeSpec`], [`FilterSpec`]) and the HTTP exchanges
//! it sends through them ([`HttpExchange`]).

use std::time::Duration;

use crate::abi::HttpMessages;
use crate::module::PluginModule;

/// One filter instance in a worker's chain: its root context's configuration.
#[derive(Clone, Debug, Default)]
pub struct FilterSpec {
    /// The plugin configuration (`get_buffer(PluginConfiguration)`, `on_configure`'s size).
    pub plugin_config: Vec<u8>,
    /// The VM configuration (`on_vm_start`'s size).
    pub vm_config: Vec<u8>,
    /// The filter's name (`plugin_name`; nginx `proxy_wasm <name>`, Kong's filter name).
    pub name: String,
}

impl FilterSpec {
    /// A filter named `filter` with this plugin configuration.
    pub fn new(plugin_config: impl Into<Vec<u8>>) -> Self {
        FilterSpec {
            plugin_config: plugin_config.into(),
            vm_config: Vec::new(),
            name: "filter".to_string(),
        }
    }

    /// The filter's name (`plugin_name`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }
}

/// What a node runs.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The node's name (in logs: `name/w0`; the default host name).
    pub name: String,
    /// The filter module every worker instantiates.
    pub module: PluginModule,
    /// How many workers (each its own instance; default 1).
    pub workers: usize,
    /// The filters of each worker's chain, in order (each its own root context).
    pub filters: Vec<FilterSpec>,
    /// Environment variables the workers see through WASI.
    pub env: Vec<(String, String)>,
    /// Node-wide properties (dotted paths, or NUL-joined segments from
    /// [`NodeSpec::property_path`]).
    pub properties: Vec<(String, Vec<u8>)>,
    /// Seed of the WASI random generators (per worker it is mixed with the worker index).
    pub seed: u64,
    /// The machine's host name (ngx_wasm_module's `request.host` is nginx's `$hostname`);
    /// `None`: the node's name.
    pub hostname: Option<String>,
}

impl NodeSpec {
    /// A node with one worker and no filter yet.
    pub fn new(name: &str, module: &PluginModule) -> Self {
        NodeSpec {
            name: name.to_string(),
            module: module.clone(),
            workers: 1,
            filters: Vec::new(),
            env: Vec::new(),
            properties: Vec::new(),
            seed: 0,
            hostname: None,
        }
    }

    /// How many workers (each its own instance of the module).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds a filter instance with this plugin configuration.
    pub fn filter(mut self, plugin_config: impl Into<Vec<u8>>) -> Self {
        self.filters.push(FilterSpec::new(plugin_config));
        self
    }

    /// Adds a filter instance with a name (`plugin_name`) and a plugin configuration.
    pub fn named_filter(mut self, name: &str, plugin_config: impl Into<Vec<u8>>) -> Self {
        self.filters
            .push(FilterSpec::new(plugin_config).named(name));
        self
    }

    /// Adds a filter instance described by a [`FilterSpec`].
    pub fn filter_spec(mut self, spec: FilterSpec) -> Self {
        self.filters.push(spec);
        self
    }

    /// An environment variable the workers see through WASI.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// A node-wide property by dotted path (`a.b` is the segments `a`, `b`).
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties.push((path.to_string(), value.into()));
        self
    }

    /// A node-wide property by segments, for segments that contain dots
    /// (`["metadata", "envoy.filters.http.lua"]`).
    pub fn property_path(mut self, segments: &[&str], value: impl Into<Vec<u8>>) -> Self {
        self.properties.push((segments.join("\0"), value.into()));
        self
    }

    /// The seed of the workers' WASI random generators.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The machine's host name, which ngx_wasm_module answers for `request.host` (default: the
    /// node's name).
    pub fn hostname(mut self, name: &str) -> Self {
        self.hostname = Some(name.to_string());
        self
    }
}

/// An HTTP request/response passing through a filter chain. Its headers, bodies and trailers are
/// an [`HttpMessages`] it dereferences to (`exchange.request_headers.push(...)`).
#[derive(Clone, Debug, Default)]
pub struct HttpExchange {
    /// The request as the client sends it and the response as the upstream answers it.
    pub messages: HttpMessages,
    /// How long (virtual time) a paused phase may wait for the filter to resume it.
    pub max_pause: Duration,
    /// Sizes of the request body's chunks as they arrive (empty: one chunk). The last size
    /// may be left out: the rest is one more chunk.
    pub request_chunks: Vec<usize>,
    /// Sizes of the response body's chunks.
    pub response_chunks: Vec<usize>,
    /// The downstream address (`source.address`, `source.port`).
    pub source: (String, u16),
}

impl HttpExchange {
    /// A GET of `path` (`:authority` `example.test`, scheme `http`) answered `200` with no body.
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
            request_chunks: Vec::new(),
            response_chunks: Vec::new(),
            source: ("127.0.0.1".into(), 40000),
        }
    }

    /// A request with a method, path and body (`:authority` `example.test`).
    pub fn request(method: &str, path: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut ex = HttpExchange::get(path);
        ex.request_headers[0].1 = method.to_string();
        ex.request_body = body.into();
        ex
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request_headers
            .push((name.to_string(), value.to_string()));
        self
    }

    /// The request body arrives in chunks of these bytes.
    pub fn request_body_chunks(mut self, chunks: &[&[u8]]) -> Self {
        self.request_body = chunks.concat();
        self.request_chunks = chunks.iter().map(|c| c.len()).collect();
        self
    }

    /// The upstream answers with this status, headers and body.
    pub fn respond(mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Self {
        self.response_headers = vec![(":status".into(), status.to_string())];
        self.response_headers
            .extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.response_body = body.to_vec();
        self.response_chunks.clear();
        self
    }

    /// The upstream's body arrives in chunks of these bytes.
    pub fn response_body_chunks(mut self, chunks: &[&[u8]]) -> Self {
        self.response_body = chunks.concat();
        self.response_chunks = chunks.iter().map(|c| c.len()).collect();
        self
    }
}

crate::abi::deref_to_messages!(HttpExchange);
