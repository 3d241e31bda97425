//! The buffered pump: one direction copied through a 64 KiB buffer, for
//! `--no-splice`, `-p` (each chunk is also dumped) and where splice is
//! refused. Its only state is the buffer, which lives in the relay's active
//! phase only.

use super::dump;
use super::half::{Chunk, HalfDuplex, PumpError};
use super::spare::{LARGE, SpareBuf};

/// Copy `src` → `dst` until EOF, then shut down writing on `dst`. With
/// `dump`, every chunk is printed before it is written (`-p`).
pub(crate) async fn pump(h: &HalfDuplex<'_>, dump: bool) -> Result<(), PumpError> {
    // Lives in the relay's active phase only: an idle connection parks and
    // gives it back to the thread's spares (see `relay::relay`).
    let mut buf = SpareBuf::<LARGE>::new();
    loop {
        h.wait_source().await?;
        let b = buf.get();
        let n = match h.read(b) {
            Chunk::Eof => {
                h.pass_eof();
                return Ok(());
            }
            Chunk::Drained(n) | Chunk::Full(n) => n,
            Chunk::Interrupted => continue,
            Chunk::Err(e) => return Err(PumpError::Src(e)),
        };
        let Some(data) = b.get(..n).filter(|d| !d.is_empty()) else {
            continue;
        };
        if dump {
            dump::print(h.dir, data);
        }
        h.write_all(data).await?;
        h.moved(n);
    }
}
