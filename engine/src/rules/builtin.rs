//! The default rule modules, compiled from `rules/*` to wasm32 by `build.rs` and
//! embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/builtin_modules.rs"));

/// Names of the built-in rules (`builtin:NAME` in a policy).
pub const BUILTIN_RULES: [&str; 7] = [
    "new_device",
    "burst",
    "lateral_movement",
    "rare_host",
    "slow_spread",
    "fan_in",
    "off_hours",
];

/// The embedded module called `name`.
pub fn builtin_module(name: &str) -> Option<&'static [u8]> {
    BUILTIN_MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
