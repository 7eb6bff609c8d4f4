//! The filter of host-harness's README quickstart (a filter that is not config-bridge, written
//! as any proxy-wasm Rust SDK user writes one): every request is checked by an auth service
//! (`auth.internal:8080`, a dispatched call with the request's `Authorization`); a 200 lets it
//! through, anything else answers 403. The root context ticks every second and logs `tick N`.

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

const AUTH: &str = "auth.internal:8080";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { ticks: 0 }) });
}}

struct Root {
    ticks: u64,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        // Once per root context: ngx_wasm_module refuses a second period. (The SDK's
        // `set_tick_period` panics on a refusal; the hostcall's own result is ignored here.)
        let _ = proxy_wasm::hostcalls::set_tick_period(Duration::from_secs(1));
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        proxy_wasm::hostcalls::log(LogLevel::Info, &format!("tick {}", self.ticks)).ok();
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Check))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Check;

impl HttpContext for Check {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let token = self
            .get_http_request_header("authorization")
            .unwrap_or_default();
        let headers = vec![
            (":method", "GET"),
            (":path", "/check"),
            (":authority", AUTH),
            ("authorization", token.as_str()),
        ];
        match self.dispatch_http_call(AUTH, headers, None, vec![], Duration::from_secs(1)) {
            Ok(_) => Action::Pause,
            Err(_) => {
                self.send_http_response(503, vec![], Some(b"auth unavailable"));
                Action::Pause
            }
        }
    }
}

impl Context for Check {
    fn on_http_call_response(&mut self, _: u32, _: usize, _: usize, _: usize) {
        match self.get_http_call_response_header(":status").as_deref() {
            Some("200") => self.resume_http_request(),
            _ => self.send_http_response(403, vec![("x-denied-by", "auth")], Some(b"denied")),
        }
    }
}
