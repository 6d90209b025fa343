//! From a policy to a [`RuleSet`]: every enabled rule's module read (a
//! built-in one or a file, within its size limit) and checked against its
//! pin before anything is compiled, the modules compiled one thread each,
//! and each rule's parameters resolved against its module's schema, with
//! an error that names the rule and the field.

use std::sync::Arc;

use authpulse_rules_sdk::{Verdict, record_bytes};
use sha2::{Digest, Sha256};

use super::{
    ActiveRule, BUILTIN_RULES, Engine, EventFilter, LoadError, OLDER_ABIS, RuleEntity,
    RuleMetadata, RuleModule, RuleSet, RuleStats, SandboxLimits, Selection, WasmModule, WasmRule,
    builtin_module, native,
};
use crate::policy::{ModuleSource, ParamValue, Policy, PolicyError, RuleMode};

/// A module being loaded (`W`: compiling for the sandbox on a thread of its
/// own) or loaded (`W`: compiled), or for a native run only its metadata
/// (`None`: the built-in rule has no native build).
enum Load<W> {
    Wasm(W),
    Native(Option<Result<Arc<RuleMetadata>, LoadError>>),
}

impl RuleSet {
    /// Loads, checks and configures every enabled rule of `policy`.
    /// `capacity` is the largest batch that will be evaluated.
    pub fn load(policy: &Policy, engine: Engine, capacity: usize) -> Result<RuleSet, PolicyError> {
        let sandbox = &policy.file.sandbox;
        let mut rules = Vec::new();
        let mut version = Sha256::new();
        version.update(policy.source.as_bytes());
        // Read and check every module first, so a policy with a bad pin is
        // refused before anything is compiled.
        let mut checked = Vec::new();
        for (index, config) in policy.file.rules.iter().enumerate() {
            if !config.enabled {
                continue;
            }
            let source = policy.module_source(index);
            let bytes: Arc<[u8]> = match &source {
                ModuleSource::Builtin(name) => builtin_module(name)
                    .ok_or_else(|| {
                        policy.rule_error(
                            index,
                            "module",
                            format!(
                                "no built-in module `{name}` (built-in: {})",
                                BUILTIN_RULES.join(", ")
                            ),
                        )
                    })?
                    .into(),
                ModuleSource::File(path) => {
                    crate::files::read_regular(path, crate::files::MAX_MODULE_BYTES, "rule module")
                        .map_err(|e| {
                            policy.rule_error(
                                index,
                                "module",
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?
                        .into()
                }
            };
            let sha256 = hex_sha256(&bytes);
            match (&config.sha256, &source) {
                (Some(pinned), _) if !pinned.eq_ignore_ascii_case(&sha256) => {
                    return Err(policy.rule_error(
                        index,
                        "sha256",
                        format!("module hash is {sha256}, the policy pins {pinned}"),
                    ));
                }
                (None, ModuleSource::File(path)) if !sandbox.allow_unpinned => {
                    return Err(policy.rule_error(
                        index,
                        "sha256",
                        format!(
                            "{} is not pinned: add `sha256: {sha256}` to the rule (after \
                             reviewing the module), or set `sandbox.allow_unpinned: true`",
                            path.display()
                        ),
                    ));
                }
                _ => {}
            }
            version.update(sha256.as_bytes());
            let limits = SandboxLimits::from_policy(sandbox, &config.limits);
            checked.push((index, config, source, bytes, sha256, limits));
        }
        // Compiling is most of a (re)load's time: one thread per module, so a
        // reload takes as long as its largest module on enough cores. A rule
        // that runs natively needs only its metadata.
        let compiled: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = checked
                .iter()
                .map(|(_, _, source, bytes, _, limits)| match (engine, source) {
                    (Engine::Native, ModuleSource::Builtin(name)) => Load::Native(
                        native::builtin_metadata(name).map(|metadata| metadata.map(Arc::new)),
                    ),
                    _ => Load::Wasm(scope.spawn(move || WasmModule::compile(bytes, *limits))),
                })
                .collect();
            handles
                .into_iter()
                .map(|loading| match loading {
                    Load::Native(metadata) => Load::Native(metadata),
                    Load::Wasm(handle) => Load::Wasm(
                        handle
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    ),
                })
                .collect()
        });
        for ((index, config, source, _, sha256, limits), compiled) in
            checked.into_iter().zip(compiled)
        {
            let module_error = |e: LoadError| policy.rule_error(index, "module", e.to_string());
            let (metadata, compiled) = match compiled {
                Load::Wasm(compiled) => {
                    let compiled = compiled.map_err(module_error)?;
                    (compiled.metadata.clone(), Some(compiled))
                }
                Load::Native(metadata) => (
                    metadata
                        .ok_or_else(|| {
                            policy.rule_error(
                                index,
                                "module",
                                format!("`{}` has no native build", config.id),
                            )
                        })?
                        .map_err(module_error)?,
                    None,
                ),
            };
            let values = resolve_params(policy, index, &metadata)?;
            let module: Box<dyn RuleModule> = match engine {
                Engine::Wasm => Box::new(
                    WasmRule::new(
                        Arc::new(compiled.expect("a sandboxed rule is compiled")),
                        limits,
                        values,
                        capacity,
                    )
                    .map_err(|e| policy.rule_error(index, "module", e.to_string()))?,
                ),
                Engine::Native => match &source {
                    ModuleSource::Builtin(name) => {
                        native::builtin(name, &values).ok_or_else(|| {
                            policy.rule_error(
                                index,
                                "module",
                                format!("`{name}` has no native build"),
                            )
                        })?
                    }
                    ModuleSource::File(_) => {
                        return Err(policy.rule_error(
                            index,
                            "module",
                            "only built-in rules can run natively; use --engine wasm",
                        ));
                    }
                },
            };
            rules.push(ActiveRule {
                id: config.id.clone(),
                weight: config.weight as f32,
                mode: config.mode,
                metadata,
                module_sha256: sha256,
                on_failure: config.on_failure,
                stats: RuleStats::default(),
                verdicts: vec![Verdict::NONE; capacity],
                module,
            });
        }
        let digest = version.finalize();
        let mask = |pick: &dyn Fn(&ActiveRule) -> bool| {
            rules
                .iter()
                .enumerate()
                .filter(|(_, rule)| pick(rule))
                .fold(0u32, |mask, (r, _)| mask | 1 << r)
        };
        let scoring_mask = mask(&|rule| rule.mode == RuleMode::Enforce && rule.weight > 0.0);
        let computer_mask = mask(&|rule| rule.metadata.entity == RuleEntity::Computer);
        let source_mask = mask(&|rule| rule.metadata.entity == RuleEntity::Source);
        let older_records = OLDER_ABIS.map(|abi| {
            (engine == Engine::Wasm && rules.iter().any(|r| r.metadata.abi_version == abi))
                .then(|| Vec::with_capacity(capacity * record_bytes(abi).expect("a known version")))
        });
        let flag_labels = rules
            .iter()
            .map(|rule| match rule.mode {
                RuleMode::Enforce => rule.id.clone(),
                RuleMode::Shadow => format!("shadow:{}", rule.id),
            })
            .collect();
        let new_devices = Selection::new(&rules, EventFilter::NewDevices, &older_records);
        let detailed = Selection::new(&rules, EventFilter::Detailed, &older_records);
        Ok(RuleSet {
            rules,
            version: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
            scoring_mask,
            computer_mask,
            source_mask,
            flag_labels,
            capacity,
            new_devices,
            detailed,
            older_records,
        })
    }
}

/// The policy's values for the module's parameters, in declaration order,
/// range-checked against the module's schema.
fn resolve_params(
    policy: &Policy,
    index: usize,
    metadata: &RuleMetadata,
) -> Result<Vec<f64>, PolicyError> {
    let config = &policy.file.rules[index];
    for name in config.params.keys() {
        if !metadata.params.iter().any(|p| &p.name == name) {
            let known: Vec<&str> = metadata.params.iter().map(|p| p.name.as_str()).collect();
            return Err(policy.rule_error(
                index,
                &format!("params.{name}"),
                format!(
                    "`{}` has no parameter `{name}` (it has: {})",
                    metadata.name,
                    known.join(", ")
                ),
            ));
        }
    }
    metadata
        .params
        .iter()
        .map(|spec| {
            let field = format!("params.{}", spec.name);
            let value = match config.params.get(&spec.name) {
                None => spec.default,
                Some(ParamValue::Number(v)) => *v,
                Some(ParamValue::Text(text)) if spec.kind == "seconds" => {
                    humantime::parse_duration(text)
                        .map_err(|e| {
                            policy.rule_error(
                                index,
                                &field,
                                format!("`{text}` is not a duration: {e}"),
                            )
                        })?
                        .as_secs_f64()
                }
                Some(ParamValue::Text(text)) => {
                    return Err(policy.rule_error(
                        index,
                        &field,
                        format!("`{text}` is not a number"),
                    ));
                }
            };
            if !value.is_finite() || value < spec.min || value > spec.max {
                return Err(policy.rule_error(
                    index,
                    &field,
                    format!("{value} is outside {}..={}", spec.min, spec.max),
                ));
            }
            Ok(value)
        })
        .collect()
}

/// Lower-case hex sha256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
