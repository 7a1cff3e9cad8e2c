//! The wasmtime `ResourceLimiter` of one instance: linear memory counted over *all* its
//! memories together (a component can instantiate extra core modules, each with a memory
//! of its own), table elements over all its tables, and how many core instances,
//! memories and tables it may create at all. The counts matter under the pooling
//! allocator too: its slots are shared by every plugin, so one plugin must not be able
//! to take them all.

use std::fmt;

use wasmtime::ResourceLimiter;

use crate::limits::Limits;

/// A budget a plugin went over; the instance is killed with this as its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// The `[limits]` key of the budget.
    pub key: &'static str,
    /// What was asked for, in words.
    pub detail: String,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "budget exceeded: {} (limits.{})", self.detail, self.key)
    }
}

impl std::error::Error for BudgetExceeded {}

/// Per-instance accounting of memories and tables.
#[derive(Debug)]
pub struct SandboxLimiter {
    memory_cap: usize,
    memory_used: usize,
    table_cap: usize,
    table_used: usize,
    memories: usize,
    tables: usize,
    instances: usize,
}

impl SandboxLimiter {
    /// A limiter for an instance under `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory_cap: limits.memory_bytes(),
            memory_used: 0,
            table_cap: usize::try_from(limits.table_elements).unwrap_or(usize::MAX),
            table_used: 0,
            memories: limits.max_memories as usize,
            tables: limits.max_tables as usize,
            instances: limits.max_core_instances as usize,
        }
    }
}

/// Adds the growth from `current` to `desired` to `used`, or refuses it with `over(total)`
/// when the total would pass `cap`.
fn charge(
    used: &mut usize,
    cap: usize,
    current: usize,
    desired: usize,
    over: impl FnOnce(usize) -> BudgetExceeded,
) -> wasmtime::Result<bool> {
    let total = used.saturating_add(desired.saturating_sub(current));
    if total > cap {
        return Err(wasmtime::Error::new(over(total)));
    }
    *used = total;
    Ok(true)
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let cap = self.memory_cap;
        charge(&mut self.memory_used, cap, current, desired, |total| {
            BudgetExceeded {
                key: "memory_mib",
                detail: format!(
                    "linear memory would grow to {} MiB over all memories, cap {} MiB",
                    total.div_ceil(1 << 20),
                    cap >> 20
                ),
            }
        })
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Growth we allowed failed anyway (the pool slot is smaller): a trap, as for the
        // cap itself, rather than a `-1` the guest may ignore.
        Err(error.context("growing linear memory failed"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let cap = self.table_cap;
        charge(&mut self.table_used, cap, current, desired, |total| {
            BudgetExceeded {
                key: "table_elements",
                detail: format!("tables would grow to {total} elements over all tables, cap {cap}"),
            }
        })
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_counted_over_all_memories() {
        let limits = Limits {
            memory_mib: 2,
            ..Limits::default()
        };
        let mut l = SandboxLimiter::new(&limits);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        // A second memory of 1 MiB fits exactly; a third does not.
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        let err = l.memory_growing(0, 64 << 10, None).unwrap_err();
        let budget = err.downcast_ref::<BudgetExceeded>().unwrap();
        assert_eq!(budget.key, "memory_mib");
        assert_eq!(l.memory_used, 2 << 20);
    }

    #[test]
    fn tables_are_counted_over_all_tables() {
        let limits = Limits {
            table_elements: 10,
            ..Limits::default()
        };
        let mut l = SandboxLimiter::new(&limits);
        assert!(l.table_growing(0, 6, None).unwrap());
        let err = l.table_growing(0, 6, None).unwrap_err();
        assert!(err.to_string().contains("limits.table_elements"), "{err}");
    }
}
