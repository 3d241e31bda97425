//! `pow` for tokio's multi-threaded scheduler (its poll-time average calls
//! `f64::powf`), the only libm symbol the binary uses. Defined here, the
//! linker drops libm.so: one shared object fewer to map and relocate at
//! start (about 300 KiB of idle RSS). The `libm` crate is a port of musl's.

/// The C `pow`, exported under its C name so that the linker resolves the
/// binary's calls here and not in libm.so.
// SAFETY: no other definition of `pow` is linked (libm.so is not needed
// once this one exists), and it has the C signature and semantics.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
