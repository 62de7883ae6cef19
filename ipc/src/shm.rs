//! Anonymous shared memory: a `memfd` (no file in /dev/shm that another
//! user could open) mapped read-write and shared. The controller creates
//! regions; children inherit the fd and map it again.

use crate::error::IpcError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// One mapped memfd region.
pub struct SharedRegion {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all concurrent access to it
// goes through atomics or the ring protocol, which is thread-agnostic.
unsafe impl Send for SharedRegion {}
// SAFETY: see `Send`; `&SharedRegion` only hands out raw pointers.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// Creates a zero-filled region of `len` bytes. The fd is close-on-exec;
    /// the launcher clears that flag for the children that need it.
    pub fn create(name: &str, len: usize) -> Result<Self, IpcError> {
        let cname = std::ffi::CString::new(name).map_err(|_| IpcError::BadLayout {
            what: "memfd",
            reason: format!("name {name:?} has a NUL"),
        })?;
        // SAFETY: `cname` is a valid C string; flags are valid memfd flags.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(IpcError::last_os("memfd_create"));
        }
        // SAFETY: `raw` is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `fd` is a valid memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(IpcError::last_os("ftruncate memfd"));
        }
        Self::map(fd, len)
    }

    /// Maps an inherited region fd of `len` bytes, taking ownership of it.
    ///
    /// # Safety
    /// `fd` must be an open memfd this process owns and nothing else will
    /// close.
    pub unsafe fn from_raw_fd(fd: RawFd, len: usize) -> Result<Self, IpcError> {
        // SAFETY: ownership is transferred by the caller.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `stat` is plain old data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid out pointer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(IpcError::last_os("fstat inherited region"));
        }
        if (st.st_size as u64) < len as u64 {
            return Err(IpcError::BadLayout {
                what: "inherited region",
                reason: format!("is {} bytes, expected {len}", st.st_size),
            });
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Self, IpcError> {
        // SAFETY: a fresh shared mapping of a file we hold open; the
        // kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(IpcError::last_os("mmap region"));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(IpcError::BadLayout {
            what: "mmap",
            reason: "returned null".into(),
        })?;
        Ok(SharedRegion { fd, ptr, len })
    }

    /// Base address of the mapping (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: regions have a size.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd, for passing to a child.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the range `map` created; no reference
        // into it outlives `self` (users borrow from the region).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Clears `FD_CLOEXEC` on `fd` so a child inherits it. Async-signal-safe:
/// may be called between fork and exec.
pub fn clear_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd number; harmless if it is not open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
