//! [`PooledBox`]: each request's plugin future on a heap block reused from
//! request to request.
//!
//! An `async fn` that calls other services is a big future (the async
//! relay's is 2.7 KB): spawned as it is, every request pays a `malloc` and
//! `free` above glibc's per-thread cache (1 KiB) and several moves of the
//! whole future (into the task, and when the task's stage is replaced).
//! Measured on the async relay, those were a fifth of the worker's user
//! time. Here the future is moved once onto a block taken from a
//! per-thread pool (kept per layout, at most [`POOL_MAX`] blocks each), so
//! the task itself stays small, and the block goes back to the pool when
//! the future is dropped.

use std::alloc::Layout;
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Free blocks kept per layout at most (beyond them a block is freed).
pub const POOL_MAX: usize = 1024;

/// The free blocks of one layout.
struct Blocks {
    layout: Layout,
    free: Vec<NonNull<u8>>,
}

/// This thread's free blocks, by layout (a plugin has one or two).
#[derive(Default)]
struct Pool(Vec<Blocks>);

impl Drop for Pool {
    fn drop(&mut self) {
        for blocks in &self.0 {
            for block in &blocks.free {
                // SAFETY: every pooled block was allocated with this layout
                // (non-zero size) and is owned by the pool alone.
                unsafe { std::alloc::dealloc(block.as_ptr(), blocks.layout) };
            }
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A block of `layout` (non-zero size): a pooled one, else a new one.
fn take(layout: Layout) -> NonNull<u8> {
    let pooled = POOL
        .try_with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.0
                .iter_mut()
                .find(|b| b.layout == layout)
                .and_then(|b| b.free.pop())
        })
        .ok()
        .flatten();
    pooled.unwrap_or_else(|| {
        // SAFETY: `layout` has a non-zero size (checked by the caller).
        let raw = unsafe { std::alloc::alloc(layout) };
        NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
    })
}

/// Gives `block` (of `layout`, non-zero size, its value dropped) back.
fn give(block: NonNull<u8>, layout: Layout) {
    let kept = POOL
        .try_with(|pool| {
            let mut pool = pool.borrow_mut();
            let index = match pool.0.iter().position(|b| b.layout == layout) {
                Some(index) => index,
                None => {
                    pool.0.push(Blocks {
                        layout,
                        free: Vec::new(),
                    });
                    pool.0.len() - 1
                }
            };
            let free = &mut pool.0[index].free;
            if free.len() < POOL_MAX {
                free.push(block);
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: the block was allocated with `layout` and nobody else
        // holds it.
        unsafe { std::alloc::dealloc(block.as_ptr(), layout) };
    }
}

/// A future on a pooled heap block: it never moves again, so polling it
/// pinned is sound while the box itself moves freely.
pub(crate) struct PooledBox<F> {
    ptr: NonNull<F>,
    _owns: PhantomData<F>,
}

impl<F> PooledBox<F> {
    /// Moves `value` onto a pooled block.
    pub(crate) fn new(value: F) -> Self {
        let layout = Layout::new::<F>();
        let ptr = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            take(layout).cast::<F>()
        };
        // SAFETY: `ptr` is valid for writes of one `F` (a fresh or pooled
        // block of its layout, or dangling for a zero-sized `F`).
        unsafe { ptr.as_ptr().write(value) };
        PooledBox {
            ptr,
            _owns: PhantomData,
        }
    }
}

impl<F> Drop for PooledBox<F> {
    fn drop(&mut self) {
        // SAFETY: the box owns the value at `ptr`, written in `new` and
        // dropped only here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        let layout = Layout::new::<F>();
        if layout.size() != 0 {
            give(self.ptr.cast::<u8>(), layout);
        }
    }
}

// The box is a pointer: moving it does not move the future.
impl<F> Unpin for PooledBox<F> {}

impl<F: Future> Future for PooledBox<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the future lives at `ptr` from `new` until the box drops
        // it, and is never moved out: pinning it there is sound.
        let fut = unsafe { Pin::new_unchecked(self.as_mut().ptr.as_mut()) };
        fut.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_dropped_future_gives_its_block_back_for_the_next() {
        let first = PooledBox::new(async { [7u8; 2048] });
        let block = first.ptr.cast::<u8>();
        drop(first);
        let second = PooledBox::new(async { [9u8; 2048] });
        assert_eq!(second.ptr.cast::<u8>(), block, "the block is reused");
    }

    #[test]
    fn the_future_is_polled_in_place_and_its_value_dropped_once() {
        let witness = Rc::new(());
        let held = witness.clone();
        let mut fut = PooledBox::new(async move {
            let _held = held;
            5
        });
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Ready(5));
        drop(fut);
        assert_eq!(Rc::strong_count(&witness), 1);
        let unpolled = PooledBox::new({
            let held = witness.clone();
            async move { drop(held) }
        });
        drop(unpolled);
        assert_eq!(Rc::strong_count(&witness), 1, "dropped unpolled too");
    }
}
