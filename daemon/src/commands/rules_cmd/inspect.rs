//! `authpulse rules inspect`: what a module declares (name, version, ABI,
//! entity, events, parameters with defaults and ranges, reasons), as text or
//! JSON.

use std::io::{self, Write};

use clap::Args;

// The recipe the engine's build script uses for the built-in rules.

use super::{Inspection, ModuleArg, load};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The module: a `.wasm` file or `builtin:NAME`.
    pub module: ModuleArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let inspection = load(&args.module)?;
    let mut out = crate::commands::stdout();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &inspection)?;
        writeln!(out)?;
    } else {
        print_inspection(&mut out, &inspection)?;
    }
    Ok(())
}

pub(super) fn print_inspection(out: &mut impl Write, i: &Inspection) -> io::Result<()> {
    let m = &i.metadata;
    writeln!(out, "module       {}", i.module)?;
    writeln!(
        out,
        "size         {} bytes ({:.1} KiB)",
        i.size_bytes,
        i.size_bytes as f64 / 1024.0
    )?;
    writeln!(out, "sha256       {}", i.sha256)?;
    writeln!(out, "abi          {}", m.abi_version)?;
    writeln!(out, "rule         {} {}", m.name, m.version)?;
    writeln!(out, "description  {}", m.description)?;
    writeln!(out, "severity     {}", m.severity)?;
    writeln!(
        out,
        "mitre        {}",
        if m.mitre.is_empty() {
            "-".to_string()
        } else {
            m.mitre.join(", ")
        }
    )?;
    writeln!(out, "parameters")?;
    if m.params.is_empty() {
        writeln!(out, "  (none)")?;
    }
    let width = m.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &m.params {
        writeln!(
            out,
            "  {:<width$}  {:<8} default {:<8} range {}..={}  {}",
            p.name,
            p.kind,
            param_text(&p.kind, p.default),
            param_text(&p.kind, p.min),
            param_text(&p.kind, p.max),
            p.description
        )?;
    }
    writeln!(out, "reasons")?;
    for (index, reason) in m.reasons.iter().enumerate() {
        writeln!(out, "  {index:<3} {reason}")?;
    }
    writeln!(out, "policy entry")?;
    writeln!(out, "  - id: {}", m.name)?;
    writeln!(out, "    module: {}", i.module)?;
    if !i.module.starts_with("builtin:") {
        writeln!(out, "    sha256: {}", i.sha256)?;
    }
    if !m.params.is_empty() {
        writeln!(out, "    params:")?;
        for p in &m.params {
            writeln!(out, "      {}: {}", p.name, param_text(&p.kind, p.default))?;
        }
    }
    Ok(())
}

/// A parameter value as a policy would write it (`86400` seconds as `1d`).
fn param_text(kind: &str, value: f64) -> String {
    if kind != "seconds" || value < 1.0 || value.fract() != 0.0 || value >= 1e15 {
        return value.to_string();
    }
    let seconds = value as u64;
    [(86_400, "d"), (3_600, "h"), (60, "m")]
        .iter()
        .find(|(unit, _)| seconds.is_multiple_of(*unit))
        .map_or_else(
            || format!("{seconds}s"),
            |(unit, suffix)| format!("{}{suffix}", seconds / unit),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_text_writes_durations() {
        assert_eq!(param_text("seconds", 86_400.0), "1d");
        assert_eq!(param_text("seconds", 31_536_000.0), "365d");
        assert_eq!(param_text("seconds", 5_400.0), "90m");
        assert_eq!(param_text("seconds", 61.0), "61s");
        assert_eq!(param_text("seconds", 0.0), "0");
        assert_eq!(param_text("number", 2.5), "2.5");
    }
}
