//! Policy YAML: `PolicySet::compile` never panics; a compiled set has a stable version and
//! compiles to the same version again.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((set, _warnings)) = sekisho_policy::PolicySet::compile(&[("fuzz.yaml", text)]) {
        let again = sekisho_policy::PolicySet::compile(&[("fuzz.yaml", text)])
            .expect("the same text compiles again");
        assert_eq!(set.version(), again.0.version());
    }
});
