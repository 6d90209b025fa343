//! The WebAssembly sandbox (wasmtime). A module is compiled and checked once
//! ([`WasmModule::compile`]): no imports at all, the ABI exports with the right
//! types, the right ABI version, metadata that parses. Each rule then runs in its
//! own store with a linear-memory cap, table caps, one instance, and an epoch
//! deadline per batch call; any trap, timeout or bad output fails that batch only, and the
//! instance is rebuilt from scratch before the next one.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authpulse_rules_sdk::{BufferLayout, Verdict, exports, record_bytes};
use wasmtime::{
    Config, Engine, Instance, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, Trap,
    TypedFunc,
};

use super::{Records, RuleFailure, RuleMetadata, RuleModule};
use crate::policy::{LimitOverrides, SandboxConfig};

/// One epoch tick; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Budget of each call that starts a module (ABI version, metadata, reserve,
/// configure): one-offs outside the hot path, so a generous one, which a
/// busy machine compiling several modules at once does not exhaust.
const START_DEADLINE_TICKS: u64 = 1_000;

/// Largest metadata document accepted from a module.
const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The ABI versions this host runs: version-1 modules get the first 64
/// bytes of each feature record, version-2 modules the first 128,
/// version-3 modules all of it.
pub const SUPPORTED_ABI_VERSIONS: [u32; 4] = [1, 2, 3, 4];

/// The process-wide engine, with a thread that advances its epoch every tick.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        config.max_wasm_stack(512 * 1024);
        let engine = Engine::new(&config).expect("wasmtime engine configuration is valid");
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        engine
    })
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly module: {0}")]
    Compile(String),
    #[error("module imports {0}; rule modules may not import anything (no WASI, no host calls)")]
    Imports(String),
    #[error("module does not export `{name}` with the ABI's type: {detail}")]
    Export { name: &'static str, detail: String },
    #[error("module declares ABI version {found}; this host runs versions 1 to 4")]
    AbiVersion { found: u32 },
    #[error("module exports ABI version {exported} but its metadata says {declared}")]
    AbiMismatch { exported: u32, declared: u32 },
    #[error("module metadata: {0}")]
    Metadata(String),
    #[error("module failed to start: {0}")]
    Start(String),
}

/// Per-module resource limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    pub max_memory_bytes: usize,
    pub deadline_ticks: u64,
    pub max_tables: usize,
    pub max_table_elements: usize,
}

impl SandboxLimits {
    /// The policy's `sandbox` limits with one rule's overrides applied.
    pub fn from_policy(config: &SandboxConfig, overrides: &LimitOverrides) -> Self {
        let memory_mib = overrides.max_memory_mib.unwrap_or(config.max_memory_mib);
        let deadline = overrides.batch_deadline.unwrap_or(config.batch_deadline);
        SandboxLimits {
            max_memory_bytes: memory_mib as usize * 1024 * 1024,
            deadline_ticks: (deadline.as_millis() as u64 / EPOCH_TICK.as_millis() as u64).max(1),
            max_tables: config.max_tables as usize,
            max_table_elements: config.max_table_elements as usize,
        }
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self::from_policy(&SandboxConfig::default(), &LimitOverrides::default())
    }
}

/// A compiled, checked module and the metadata it declared.
pub struct WasmModule {
    module: Module,
    pub metadata: Arc<RuleMetadata>,
}

impl WasmModule {
    /// The ABI version the module was built for.
    pub fn abi_version(&self) -> u32 {
        self.metadata.abi_version
    }
}

impl WasmModule {
    /// Compiles `bytes` and checks them against the ABI, starting one
    /// instance under `limits` to read the metadata.
    pub fn compile(bytes: &[u8], limits: SandboxLimits) -> Result<WasmModule, LoadError> {
        let module =
            Module::new(engine(), bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let imports: Vec<String> = module
            .imports()
            .map(|i| format!("`{}::{}`", i.module(), i.name()))
            .collect();
        if !imports.is_empty() {
            return Err(LoadError::Imports(imports.join(", ")));
        }
        // Read the metadata from a throwaway instance.
        let mut probe = Instantiated::new(&module, limits)?;
        let metadata = probe.metadata()?;
        if metadata.abi_version != probe.abi_version {
            return Err(LoadError::AbiMismatch {
                exported: probe.abi_version,
                declared: metadata.abi_version,
            });
        }
        Ok(WasmModule {
            module,
            metadata: Arc::new(metadata),
        })
    }
}

/// One live instance and the handles the host calls through.
struct Instantiated {
    store: Store<StoreLimits>,
    memory: Memory,
    instance: Instance,
    abi_version: u32,
}

impl Instantiated {
    fn new(module: &Module, limits: SandboxLimits) -> Result<Instantiated, LoadError> {
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_bytes)
            .memories(1)
            .tables(limits.max_tables)
            .table_elements(limits.max_table_elements)
            // A module has no imports, so it cannot create instances itself;
            // the cap makes that a guarantee rather than a consequence.
            .instances(1)
            .build();
        let mut store = Store::new(engine(), store_limits);
        store.limiter(|limits| limits);
        store.set_epoch_deadline(START_DEADLINE_TICKS.max(limits.deadline_ticks));
        let instance =
            Instance::new(&mut store, module, &[]).map_err(|e| LoadError::Start(describe(&e)))?;
        let memory = instance
            .get_memory(&mut store, exports::MEMORY)
            .ok_or(LoadError::Export {
                name: exports::MEMORY,
                detail: "no memory export".into(),
            })?;
        let mut this = Instantiated {
            store,
            memory,
            instance,
            abi_version: 0,
        };
        let abi: TypedFunc<(), u32> = this.func(exports::ABI_VERSION)?;
        this.store
            .set_epoch_deadline(START_DEADLINE_TICKS.max(limits.deadline_ticks));
        let found = abi
            .call(&mut this.store, ())
            .map_err(|e| LoadError::Start(describe(&e)))?;
        if !SUPPORTED_ABI_VERSIONS.contains(&found) {
            return Err(LoadError::AbiVersion { found });
        }
        this.abi_version = found;
        Ok(this)
    }

    fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &'static str,
    ) -> Result<TypedFunc<P, R>, LoadError> {
        self.instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|e| LoadError::Export {
                name,
                detail: format!("{e:#}"),
            })
    }

    fn metadata(&mut self) -> Result<RuleMetadata, LoadError> {
        let f: TypedFunc<(), u64> = self.func(exports::METADATA)?;
        let packed = f
            .call(&mut self.store, ())
            .map_err(|e| LoadError::Start(describe(&e)))?;
        let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        if len > MAX_METADATA_BYTES {
            return Err(LoadError::Metadata(format!(
                "{len} bytes is more than {MAX_METADATA_BYTES}"
            )));
        }
        let mut json = vec![0; len];
        self.memory
            .read(&self.store, ptr, &mut json)
            .map_err(|_| LoadError::Metadata("points outside the module's memory".into()))?;
        parse_metadata(&json)
    }
}

/// A module's metadata JSON, checked: an ABI version the host runs, at
/// least one reason, every parameter's default within its range.
pub(super) fn parse_metadata(json: &[u8]) -> Result<RuleMetadata, LoadError> {
    let metadata: RuleMetadata =
        serde_json::from_slice(json).map_err(|e| LoadError::Metadata(e.to_string()))?;
    if !SUPPORTED_ABI_VERSIONS.contains(&metadata.abi_version) {
        return Err(LoadError::AbiVersion {
            found: metadata.abi_version,
        });
    }
    if metadata.reasons.is_empty() {
        return Err(LoadError::Metadata("declares no reasons".into()));
    }
    for p in &metadata.params {
        if !(p.min <= p.default && p.default <= p.max) {
            return Err(LoadError::Metadata(format!(
                "parameter `{}` default {} is outside {}..={}",
                p.name, p.default, p.min, p.max
            )));
        }
    }
    Ok(metadata)
}

/// A configured rule running in the sandbox.
pub struct WasmRule {
    module: Arc<WasmModule>,
    limits: SandboxLimits,
    values: Vec<f64>,
    capacity: usize,
    live: Option<Live>,
}

struct Live {
    inst: Instantiated,
    evaluate: TypedFunc<u32, i32>,
    buffer: usize,
    layout: BufferLayout,
}

impl WasmRule {
    /// Instantiates and configures the rule; fails if it will not start.
    pub fn new(
        module: Arc<WasmModule>,
        limits: SandboxLimits,
        values: Vec<f64>,
        capacity: usize,
    ) -> Result<Self, LoadError> {
        let mut rule = WasmRule {
            module,
            limits,
            values,
            capacity,
            live: None,
        };
        rule.live = Some(rule.start()?);
        Ok(rule)
    }

    fn start(&self) -> Result<Live, LoadError> {
        let mut inst = Instantiated::new(&self.module.module, self.limits)?;
        let reserve: TypedFunc<(u32, u32), u32> = inst.func(exports::RESERVE)?;
        let configure: TypedFunc<(), i32> = inst.func(exports::CONFIGURE)?;
        let evaluate: TypedFunc<u32, i32> = inst.func(exports::EVALUATE)?;
        let record = record_bytes(self.module.abi_version()).expect("a supported ABI version");
        let layout = BufferLayout::with_record(self.capacity, self.values.len(), record);
        let start_deadline = START_DEADLINE_TICKS.max(self.limits.deadline_ticks);
        inst.store.set_epoch_deadline(start_deadline);
        let buffer = reserve
            .call(
                &mut inst.store,
                (self.capacity as u32, self.values.len() as u32),
            )
            .map_err(|e| LoadError::Start(describe(&e)))? as usize;
        if buffer == 0 || buffer + layout.len > inst.memory.data_size(&inst.store) {
            return Err(LoadError::Start(format!(
                "authpulse_reserve returned buffer {buffer:#x} that does not hold {} bytes",
                layout.len
            )));
        }
        let params: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        inst.memory
            .write(&mut inst.store, buffer + layout.params_offset, &params)
            .map_err(|e| LoadError::Start(e.to_string()))?;
        inst.store.set_epoch_deadline(start_deadline);
        let status = configure
            .call(&mut inst.store, ())
            .map_err(|e| LoadError::Start(describe(&e)))?;
        if status != 0 {
            return Err(LoadError::Start(format!(
                "authpulse_configure returned status {status}"
            )));
        }
        Ok(Live {
            inst,
            evaluate,
            buffer,
            layout,
        })
    }

    fn run(&mut self, records: &Records<'_>, verdicts: &mut [Verdict]) -> Result<(), RuleFailure> {
        let abi = self.module.abi_version();
        let live = match &mut self.live {
            Some(live) => live,
            None => self
                .live
                .insert(self.start().map_err(|e| RuleFailure::Trap(e.to_string()))?),
        };
        let Live {
            inst,
            evaluate,
            buffer,
            layout,
        } = live;
        let n = records.len();
        inst.memory
            .write(
                &mut inst.store,
                *buffer + layout.features_offset,
                records.bytes(abi),
            )
            .map_err(|_| RuleFailure::BadOutput("its buffer no longer fits its memory".into()))?;
        inst.store.set_epoch_deadline(self.limits.deadline_ticks);
        let status = evaluate.call(&mut inst.store, n as u32).map_err(|e| {
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => RuleFailure::Timeout,
                _ => RuleFailure::Trap(describe(&e)),
            }
        })?;
        if status < 0 {
            return Err(RuleFailure::BadOutput(format!(
                "authpulse_evaluate returned status {status}"
            )));
        }
        if status as usize > n {
            return Err(RuleFailure::BadOutput(format!(
                "authpulse_evaluate claims {status} hits in a batch of {n}"
            )));
        }
        inst.memory
            .read(
                &inst.store,
                *buffer + layout.verdicts_offset,
                Verdict::slice_as_bytes_mut(verdicts),
            )
            .map_err(|_| RuleFailure::BadOutput("its buffer no longer fits its memory".into()))?;
        let reasons = self.module.metadata.reasons.len() as u32;
        for (i, v) in verdicts.iter().enumerate() {
            if v.score != 0.0 && !(v.score > 0.0 && v.score <= 100.0 && v.reason < reasons) {
                return Err(RuleFailure::BadOutput(format!(
                    "event {i} of the batch: score {} reason {} (scores must be in (0, 100], reasons < {reasons})",
                    v.score, v.reason
                )));
            }
        }
        Ok(())
    }
}

impl RuleModule for WasmRule {
    fn evaluate(
        &mut self,
        records: &Records<'_>,
        verdicts: &mut [Verdict],
    ) -> Result<(), RuleFailure> {
        debug_assert!(records.len() <= self.capacity);
        let outcome = self.run(records, verdicts);
        if outcome.is_err() {
            // Whatever the guest did to its memory, the next batch starts clean.
            self.live = None;
        }
        outcome
    }
}

fn describe(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "exceeded its deadline".into(),
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    }
}
