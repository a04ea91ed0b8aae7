//! SHA-256 in lowercase hex: the fingerprints a run keeps of its inputs and outputs, the keys
//! of exceptions, and what the store keeps of a session token instead of the token.

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}
