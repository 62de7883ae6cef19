//! [`StackPool`]: micro-thread stacks, each with a guard page below it
//! (corosensei's [`DefaultStack`]: one `mmap` per stack, the lowest page
//! `PROT_NONE`, so an overflow faults instead of corrupting a neighbour).
//! Stacks are made on demand up to the pool's bound and handed back after
//! each request, so a warm worker maps nothing per request.

use corosensei::stack::DefaultStack;

/// Stacks for at most `max` live micro-threads, reused.
pub struct StackPool {
    free: Vec<DefaultStack>,
    size: usize,
    max: usize,
    created: usize,
}

impl StackPool {
    /// A pool of at most `max` stacks of `size` bytes each (plus a guard
    /// page); none made yet.
    pub fn new(size: usize, max: usize) -> Self {
        StackPool {
            free: Vec::with_capacity(max),
            size,
            max,
            created: 0,
        }
    }

    /// A stack: a pooled one, or a new one while fewer than `max` exist.
    /// `None` when all `max` are out, or when the kernel refuses the
    /// mapping.
    pub fn take(&mut self) -> Option<DefaultStack> {
        if let Some(stack) = self.free.pop() {
            return Some(stack);
        }
        if self.created >= self.max {
            return None;
        }
        match DefaultStack::new(self.size) {
            Ok(stack) => {
                self.created += 1;
                Some(stack)
            }
            Err(err) => {
                tracing::warn!(size = self.size, %err, "cannot map a micro-thread stack");
                None
            }
        }
    }

    /// Hands a stack back for reuse.
    pub fn give(&mut self, stack: DefaultStack) {
        self.free.push(stack);
    }

    /// Stacks mapped so far (at most `max`).
    #[cfg(test)]
    pub fn created(&self) -> usize {
        self.created
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corosensei::stack::Stack;

    #[test]
    fn stacks_are_reused_and_bounded() {
        let mut pool = StackPool::new(64 << 10, 2);
        let a = pool.take().unwrap();
        let a_base = a.base();
        assert!(a.base().get() - a.limit().get() >= 64 << 10);
        pool.give(a);
        let again = pool.take().unwrap();
        assert_eq!(again.base(), a_base, "the same stack came back");
        assert_eq!(pool.created(), 1);
        let b = pool.take().unwrap();
        assert_eq!(pool.created(), 2);
        assert!(pool.take().is_none(), "at most two");
        pool.give(again);
        pool.give(b);
        for _ in 0..100 {
            let s = pool.take().unwrap();
            pool.give(s);
        }
        assert_eq!(pool.created(), 2, "warm: nothing mapped per request");
    }
}
