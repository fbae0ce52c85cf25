//! Gateway configuration YAML: `config::from_str` never panics, whatever the text; an
//! accepted configuration has at least one zone, listener and route.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = std::env::temp_dir();
    if let Ok(cfg) = sekisho_gateway::config::from_str("fuzz.yaml", text, &base) {
        assert!(!cfg.zones.is_empty() && !cfg.listeners.is_empty() && !cfg.routes.is_empty());
    }
});
