//! Reading the server name (SNI) from a TLS ClientHello without
//! terminating TLS: a pure parser over the bytes a client sent so far.
//! Every length is checked against its container; nothing is allocated.
//!
//! The handshake message may span several TLS records (and those records
//! any number of TCP segments): [`parse`] answers [`Peek::NeedMore`] until
//! the whole ClientHello is in, and [`Peek::NoSni`] for anything that is
//! not a TLS handshake (SSLv2, plain text, garbage) or a ClientHello
//! without a usable host name.

/// TLS record header: type, version (2), length (2).
const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// A TLS record carries at most 2^14 bytes of plaintext.
const MAX_RECORD: usize = 1 << 14;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// A DNS name is at most 253 characters (255 with a trailing dot).
pub(crate) const MAX_NAME: usize = 255;

/// What the bytes so far say.
// The name inline: a routed connection allocates nothing for it, and the
// value lives only in the routing step's (boxed) future.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// The ClientHello names this server.
    Name(Name),
    /// A complete ClientHello without a usable server name, or not TLS.
    NoSni,
    /// A TLS handshake so far: at least this many bytes are needed in all.
    NeedMore(usize),
}

/// A server name, lowercased, without a trailing dot; kept inline (no
/// allocation per connection).
#[derive(Clone, PartialEq, Eq)]
pub struct Name {
    len: u8,
    buf: [u8; MAX_NAME],
}

impl Name {
    /// `b` as a routing key, when it is a host name: letters, digits, `-`,
    /// `_`, `.`; at most [`MAX_NAME`] bytes; not empty.
    pub(crate) fn new(b: &[u8]) -> Option<Name> {
        let b = b.strip_suffix(b".").unwrap_or(b);
        let ok = !b.is_empty()
            && b.len() <= MAX_NAME
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if !ok {
            return None;
        }
        let mut buf = [0u8; MAX_NAME];
        for (o, c) in buf.iter_mut().zip(b) {
            *o = c.to_ascii_lowercase();
        }
        Some(Name {
            len: u8::try_from(b.len()).ok()?,
            buf,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII was stored.
        self.buf
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// The server name in `buf`, the start of what a client sent.
pub fn parse(buf: &[u8]) -> Peek {
    // The handshake message may be spread over records: look at it through
    // the records' bodies (one, nearly always) without copying.
    let mut records = Records { buf, at: 0 };
    let mut bodies: [&[u8]; MAX_FRAGMENTS] = [&[]; MAX_FRAGMENTS];
    let mut n = 0;
    let mut have = 0usize;
    let mut need: Option<usize> = None;
    loop {
        match records.next_body() {
            Rec::Body(b) => {
                let Some(slot) = bodies.get_mut(n) else {
                    return Peek::NoSni;
                };
                *slot = b;
                n += 1;
                have += b.len();
            }
            Rec::Partial(total) => return Peek::NeedMore(total),
            Rec::NotHandshake => return Peek::NoSni,
            Rec::End => return Peek::NeedMore(records.at + RECORD_HEADER),
        }
        let msg = Joined {
            parts: bodies.get(..n).unwrap_or_default(),
        };
        if need.is_none() && have >= 4 {
            if msg.byte(0) != Some(HANDSHAKE_CLIENT_HELLO) {
                return Peek::NoSni;
            }
            let len = msg.u24(1).unwrap_or(usize::MAX);
            if len > MAX_HELLO {
                return Peek::NoSni;
            }
            need = Some(4 + len);
        }
        if let Some(total) = need
            && have >= total
        {
            let name = match msg.contiguous(4, total) {
                Some(hello) => server_name(hello).and_then(Name::new),
                None => {
                    let mut copy = vec![0u8; total - 4];
                    msg.copy_to(4, &mut copy);
                    server_name(&copy).and_then(Name::new)
                }
            };
            return name.map_or(Peek::NoSni, Peek::Name);
        }
    }
}

/// The longest ClientHello accepted (post-quantum key shares make them a
/// few KiB; anything larger is not routed).
pub(crate) const MAX_HELLO: usize = 16 * 1024;
/// A ClientHello in more records than this is not routed.
const MAX_FRAGMENTS: usize = 16;

enum Rec<'a> {
    Body(&'a [u8]),
    /// A record whose header is in but not all its body: the bytes needed.
    Partial(usize),
    NotHandshake,
    End,
}

struct Records<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Records<'a> {
    fn next_body(&mut self) -> Rec<'a> {
        let Some(hdr) = self.buf.get(self.at..self.at + RECORD_HEADER) else {
            // Not even a header: a first byte that is not a handshake is
            // enough to give up early.
            return match self.buf.get(self.at) {
                Some(&t) if t != CONTENT_HANDSHAKE => Rec::NotHandshake,
                _ => Rec::End,
            };
        };
        let [typ, major, _minor, hi, lo] = [hdr[0], hdr[1], hdr[2], hdr[3], hdr[4]];
        // SSLv2's first byte has the high bit set; SSL 3.0 and TLS say 3.
        if typ != CONTENT_HANDSHAKE || major != 3 {
            return Rec::NotHandshake;
        }
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 || len > MAX_RECORD {
            return Rec::NotHandshake;
        }
        let start = self.at + RECORD_HEADER;
        match self.buf.get(start..start + len) {
            Some(body) => {
                self.at = start + len;
                Rec::Body(body)
            }
            None => Rec::Partial(start + len),
        }
    }
}

/// A handshake message spread over record bodies.
struct Joined<'a, 'b> {
    parts: &'b [&'a [u8]],
}

impl<'a> Joined<'a, '_> {
    fn byte(&self, mut i: usize) -> Option<u8> {
        for p in self.parts {
            if i < p.len() {
                return p.get(i).copied();
            }
            i -= p.len();
        }
        None
    }
    fn u24(&self, i: usize) -> Option<usize> {
        let b = |k| self.byte(i + k).map(usize::from);
        Some(b(0)? << 16 | b(1)? << 8 | b(2)?)
    }
    /// `start..end` when it lies within one part.
    fn contiguous(&self, mut start: usize, mut end: usize) -> Option<&'a [u8]> {
        for p in self.parts {
            if start < p.len() {
                return p.get(start..end);
            }
            start -= p.len();
            end -= p.len();
        }
        None
    }
    /// Fill `out` from offset `start`.
    fn copy_to(&self, mut start: usize, out: &mut [u8]) {
        let mut n = 0;
        for p in self.parts {
            if start >= p.len() {
                start -= p.len();
                continue;
            }
            let src = p.get(start..).unwrap_or_default();
            start = 0;
            let Some(dst) = out.get_mut(n..) else { return };
            let k = src.len().min(dst.len());
            if let (Some(d), Some(s)) = (dst.get_mut(..k), src.get(..k)) {
                d.copy_from_slice(s);
            }
            n += k;
        }
    }
}

/// A cursor over a byte slice whose reads fail past the end.
struct Cur<'a> {
    b: &'a [u8],
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (h, t) = (self.b.get(..n)?, self.b.get(n..)?);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?])))
    }
    /// A vector with a `width`-byte length prefix.
    fn vec(&mut self, width: usize) -> Option<&'a [u8]> {
        let len = match width {
            1 => usize::from(self.u8()?),
            _ => self.u16()?,
        };
        self.take(len)
    }
}

/// The server name in the body of a ClientHello (after its 4-byte
/// handshake header), as sent.
fn server_name(body: &[u8]) -> Option<&[u8]> {
    let mut c = Cur { b: body };
    c.take(2)?; // legacy_version
    c.take(32)?; // random
    c.vec(1)?; // legacy_session_id
    c.vec(2)?; // cipher_suites
    c.vec(1)?; // legacy_compression_methods
    let mut exts = Cur { b: c.vec(2)? };
    while !exts.b.is_empty() {
        let typ = exts.u16()?;
        let data = exts.vec(2)?;
        if typ != usize::from(EXT_SERVER_NAME) {
            continue;
        }
        let mut list = Cur { b: data };
        let mut names = Cur { b: list.vec(2)? };
        while !names.b.is_empty() {
            let kind = names.u8()?;
            let name = names.vec(2)?;
            if kind == NAME_TYPE_HOST {
                return Some(name);
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests;
