//! The login's pieces, pure: capability flags, the two auth plugins'
//! scrambles, the auth-switch request and the HandshakeResponse41.

use crate::monitor::probe::escape;

pub(super) const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
pub(super) const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
pub(super) const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
pub(super) const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;

pub(super) const NATIVE: &str = "mysql_native_password";
pub(super) const CACHING_SHA2: &str = "caching_sha2_password";

/// An auth switch request: `0xfe`, plugin name NUL, its data (the new
/// scramble, NUL-terminated). Only the two plugins we speak are accepted.
pub(super) fn auth_switch(p: &[u8]) -> Result<(&'static str, &[u8]), String> {
    let rest = p.get(1..).unwrap_or_default();
    let nul = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let name = rest.get(..nul).unwrap_or_default();
    let mut data = rest.get(nul + 1..).unwrap_or_default();
    if let Some((&0, head)) = data.split_last() {
        data = head;
    }
    let plugin = match name {
        b"mysql_native_password" => NATIVE,
        b"caching_sha2_password" => CACHING_SHA2,
        // MySQL < 4.1 style switch (no name) or another plugin.
        _ => {
            return Err(format!(
                "login failed: server asks for auth plugin \"{}\" (supported: {NATIVE}, {CACHING_SHA2})",
                escape(name)
            ));
        }
    };
    Ok((plugin, data))
}

/// The auth response for `plugin` (empty for an empty password):
/// native: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw)));
/// caching_sha2 (fast path): SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble).
pub(super) fn scramble(plugin: &str, password: &str, nonce: &[u8]) -> Vec<u8> {
    use sha1::Digest;
    if password.is_empty() {
        return Vec::new();
    }
    let nonce = nonce.get(..20).unwrap_or(nonce);
    let xor = |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(x, y)| x ^ y).collect();
    if plugin == CACHING_SHA2 {
        let h1 = sha2::Sha256::digest(password.as_bytes());
        let h2 = sha2::Sha256::digest(h1);
        let mut h = sha2::Sha256::new();
        h.update(h2);
        h.update(nonce);
        xor(&h1, &h.finalize())
    } else {
        let h1 = sha1::Sha1::digest(password.as_bytes());
        let h2 = sha1::Sha1::digest(h1);
        let mut h = sha1::Sha1::new();
        h.update(nonce);
        h.update(h2);
        xor(&h1, &h.finalize())
    }
}

pub(super) fn handshake_response(
    user: &str,
    server_caps: u32,
    plugin: &str,
    auth: &[u8],
) -> Vec<u8> {
    let mut caps = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
    caps |= server_caps & CLIENT_PLUGIN_AUTH;
    let mut p = Vec::with_capacity(96 + user.len());
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes()); // max packet 16 MiB
    p.push(33); // utf8_general_ci
    p.extend_from_slice(&[0u8; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    // Length-prefixed auth response (20 or 32 bytes, or empty).
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    if caps & CLIENT_PLUGIN_AUTH != 0 {
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
    }
    p
}
