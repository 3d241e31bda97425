//! Reading etcd's JSON as it arrives, in one pass and bounded memory:
//! where each streamed message (a watch's `{"result":...}` objects) ends,
//! and every JSON string longer than [`MAX_STRING`] dropped on the way in
//! (replaced by [`REFUSED`]), so a huge value under the prefix costs a
//! pass over its bytes, not their copy, and never their parsing.

/// The longest string kept: a value of [`super::MAX_VALUE`] bytes in
/// base64, and some.
pub(super) const MAX_STRING: usize = super::MAX_VALUE / 3 * 4 + 8;
/// What a longer string reads as (never base64, so never a key or value).
pub(super) const REFUSED: &str = "!";

/// The state between two chunks.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stream {
    depth: u32,
    in_str: bool,
    esc: bool,
    /// Where the current string's content starts in the output.
    str_at: usize,
    /// Its length in the input so far.
    str_len: usize,
}

impl Stream {
    /// Copy `input` to `out`, dropping what strings have beyond
    /// [`MAX_STRING`]; stop after the end of a top-level object or array:
    /// `Some(n)` = the first `n` bytes of `input` ended one (the state is
    /// ready for the next). Err on a byte outside any object.
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, String> {
        let mut i = 0;
        while i < input.len() {
            if self.in_str {
                if self.esc {
                    self.esc = false;
                    self.keep(&input[i..=i], out);
                    i += 1;
                    continue;
                }
                let rest = &input[i..];
                let Some(j) = rest.iter().position(|&b| b == b'"' || b == b'\\') else {
                    self.keep(rest, out);
                    return Ok(None);
                };
                self.keep(&rest[..j], out);
                i += j + 1;
                if rest[j] == b'\\' {
                    self.esc = true;
                    self.keep(b"\\", out);
                    continue;
                }
                if self.str_len > MAX_STRING {
                    out.truncate(self.str_at);
                    out.extend_from_slice(REFUSED.as_bytes());
                }
                out.push(b'"');
                self.in_str = false;
                continue;
            }
            let b = input[i];
            i += 1;
            match b {
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        out.push(b);
                        *self = Stream::default();
                        return Ok(Some(i));
                    }
                }
                b'"' if self.depth > 0 => {
                    self.in_str = true;
                    self.str_len = 0;
                    self.str_at = out.len() + 1;
                }
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => continue,
                _ if self.depth > 0 => {}
                other => return Err(format!("unexpected byte 0x{other:02x} between messages")),
            }
            out.push(b);
        }
        Ok(None)
    }

    /// Part of a string: kept while the string is within the bound.
    fn keep(&mut self, part: &[u8], out: &mut Vec<u8>) {
        let room = (MAX_STRING + 1).saturating_sub(self.str_len);
        out.extend_from_slice(&part[..part.len().min(room)]);
        self.str_len = self.str_len.saturating_add(part.len());
    }
}
