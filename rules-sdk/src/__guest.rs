//! Guest side of the ABI, instantiated by [`export_rule!`](crate::export_rule).
//! Rule authors never use this module directly.

use core::cell::UnsafeCell;

use crate::{BufferLayout, Features, Params, Rule, Verdict};

/// Status codes returned by `authpulse_configure` / `authpulse_evaluate`.
pub mod status {
    pub const OK: i32 = 0;
    pub const NO_BUFFER: i32 = -1;
    pub const NOT_CONFIGURED: i32 = -2;
    pub const BATCH_TOO_LARGE: i32 = -3;
    pub const PARAM_COUNT_MISMATCH: i32 = -4;
}

struct Inner<R> {
    rule: Option<R>,
    /// `u64` elements so the buffer is 8-byte aligned for the `f64` parameters
    /// and the `i64` inside [`Features`].
    buffer: Vec<u64>,
    layout: Option<BufferLayout>,
    metadata: Option<String>,
}

/// The single rule instance of a module and the buffer it shares with the host.
pub struct Guest<R> {
    inner: UnsafeCell<Inner<R>>,
}

// SAFETY: rule modules run on `wasm32-unknown-unknown` without threads; the host
// never calls into one instance concurrently, so there is no shared access.
unsafe impl<R> Sync for Guest<R> {}

impl<R: Rule> Default for Guest<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Rule> Guest<R> {
    pub const fn new() -> Self {
        Guest {
            inner: UnsafeCell::new(Inner {
                rule: None,
                buffer: Vec::new(),
                layout: None,
                metadata: None,
            }),
        }
    }

    #[allow(clippy::mut_from_ref)]
    fn inner(&self) -> &mut Inner<R> {
        // SAFETY: see the `Sync` impl; each export takes this reference once and
        // drops it before returning.
        unsafe { &mut *self.inner.get() }
    }

    pub fn metadata(&self) -> u64 {
        let inner = self.inner();
        let json = inner.metadata.get_or_insert_with(|| R::METADATA.to_json());
        ((json.as_ptr() as usize as u64) << 32) | json.len() as u64
    }

    pub fn reserve(&self, capacity: u32, n_params: u32) -> u32 {
        let inner = self.inner();
        let layout = BufferLayout::new(capacity as usize, n_params as usize);
        let words = layout.len.div_ceil(8);
        inner.buffer.clear();
        inner.buffer.resize(words, 0);
        inner.layout = Some(layout);
        inner.rule = None;
        inner.buffer.as_ptr() as usize as u32
    }

    pub fn configure(&self) -> i32 {
        let inner = self.inner();
        let Some(layout) = inner.layout else {
            return status::NO_BUFFER;
        };
        if layout.n_params != R::METADATA.params.len() {
            return status::PARAM_COUNT_MISMATCH;
        }
        let values: Vec<f64> = inner.buffer[..layout.n_params]
            .iter()
            .map(|bits| f64::from_bits(u64::from_le(*bits)))
            .collect();
        inner.rule = Some(R::new(&Params::new(R::METADATA.params, &values)));
        status::OK
    }

    pub fn evaluate(&self, n: u32) -> i32 {
        let inner = self.inner();
        let (Some(layout), Some(rule)) = (inner.layout, inner.rule.as_ref()) else {
            return status::NOT_CONFIGURED;
        };
        let n = n as usize;
        if n > layout.capacity {
            return status::BATCH_TOO_LARGE;
        }
        let base = inner.buffer.as_mut_ptr().cast::<u8>();
        // SAFETY: the buffer holds `layout.len` bytes, 8-byte aligned; both regions
        // lie inside it, do not overlap, and every bit pattern is a valid
        // `Features` / `Verdict` (plain integers and floats).
        let (features, verdicts) = unsafe {
            (
                core::slice::from_raw_parts(base.add(layout.features_offset).cast::<Features>(), n),
                core::slice::from_raw_parts_mut(
                    base.add(layout.verdicts_offset).cast::<Verdict>(),
                    n,
                ),
            )
        };
        rule.evaluate_batch(features, verdicts) as i32
    }
}
