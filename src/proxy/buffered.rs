//! The buffered pump: one direction copied through a 64 KiB buffer, for
//! `--no-splice`, `-p` (each chunk is also dumped) and where splice is
//! refused. Its only state is the buffer, which lives in the relay's active
//! phase only.

use super::dump;
use super::half::{Chunk, HalfDuplex, PumpError};

/// Size of the copy buffer used while data is in flight.
pub const BUF_SIZE: usize = 64 * 1024;

/// Copy `src` → `dst` until EOF, then shut down writing on `dst`. With
/// `dump`, every chunk is printed before it is written (`-p`).
pub async fn pump(h: &HalfDuplex<'_>, dump: bool) -> Result<(), PumpError> {
    // Lives in the relay's active phase only: an idle connection parks and
    // drops it (see `relay::relay`), so it is not released between messages.
    let mut buf: Option<Box<[u8]>> = None;
    loop {
        h.wait_source().await?;
        let b = buf.get_or_insert_with(|| vec![0u8; BUF_SIZE].into_boxed_slice());
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
