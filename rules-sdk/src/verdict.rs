//! What a rule answers for one event: a [`Verdict`] (the ABI's 8 bytes),
//! built from an optional [`Hit`].

/// What a rule says about one event: nothing, or a hit with a score and a reason.
///
/// Part of the ABI: 8 bytes, `repr(C)`. A `score` of 0 means "no hit".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Risk contribution, in `(0, 100]`; 0 means the rule did not fire.
    pub score: f32,
    /// Index into the rule's `Metadata::reasons`.
    pub reason: u32,
}

const _: () = assert!(core::mem::size_of::<Verdict>() == 8);

impl Verdict {
    /// The records as writable bytes, for copying verdicts out of a module's memory.
    pub fn slice_as_bytes_mut(records: &mut [Verdict]) -> &mut [u8] {
        // SAFETY: `Verdict` is `repr(C)` { f32, u32 } with no padding; every bit
        // pattern is a valid value, so arbitrary bytes may be written.
        unsafe {
            core::slice::from_raw_parts_mut(records.as_mut_ptr().cast::<u8>(), size_of_val(records))
        }
    }

    /// The "did not fire" verdict.
    pub const NONE: Verdict = Verdict {
        score: 0.0,
        reason: 0,
    };

    /// Whether the rule fired.
    #[inline]
    pub fn is_hit(&self) -> bool {
        self.score != 0.0
    }
}

/// A rule firing: its risk contribution (0..=100) and which of its reasons applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Risk contribution in `(0, 100]`. The host rejects NaN and out-of-range values.
    pub score: f32,
    /// Index into the rule's `Metadata::reasons`.
    pub reason: u32,
}

impl Hit {
    /// A hit with `score` (clamped to 0..=100) and reason index `reason`.
    pub fn new(score: f32, reason: u32) -> Hit {
        Hit {
            score: score.clamp(0.0, 100.0),
            reason,
        }
    }
}

impl From<Option<Hit>> for Verdict {
    #[inline]
    fn from(hit: Option<Hit>) -> Verdict {
        match hit {
            Some(h) => Verdict {
                score: h.score,
                reason: h.reason,
            },
            None => Verdict::NONE,
        }
    }
}
