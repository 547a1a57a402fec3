//! The `steward` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    bound_malloc_arenas();
    steward::cli::run()
}

/// glibc gives every thread that allocates its own heap (up to 8 per core), each grown a
/// few pages at a time: a cold apply's worker and rayon threads touched ~9 MB more at their
/// peak and made ~8,600 more `mprotect` calls than with two arenas, for no measurable
/// speed. Two arenas keep the threads from waiting on one lock.
fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a tunable of the allocator; it is called first thing in
    // `main`, before any other thread exists, and its result (0 on failure) changes nothing
    // we rely on.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}
