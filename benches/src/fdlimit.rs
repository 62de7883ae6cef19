//! Raising the soft open-files limit to the hard one (best effort), so a
//! baseline server takes as many connections as the spp proxy may.

/// Sets RLIMIT_NOFILE's soft limit to its hard limit; failures are ignored
/// (the server then takes fewer connections, which its clients see).
pub fn raise_to_hard() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out pointer for getrlimit, and a valid
    // input for setrlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
