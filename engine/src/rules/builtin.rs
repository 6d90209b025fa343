//! The default rule modules, compiled from `rules/*` to wasm32 by `build.rs` and
//! embedded in the binary, with their names ([`BUILTIN_RULES`]): one per
//! `authpulse-rule-*` dependency of the engine's manifest.

include!(concat!(env!("OUT_DIR"), "/builtin_modules.rs"));

/// The embedded module called `name`.
pub fn builtin_module(name: &str) -> Option<&'static [u8]> {
    BUILTIN_MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
