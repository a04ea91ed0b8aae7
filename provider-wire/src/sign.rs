//! RSA2 signatures exactly as the Alipay open platform makes and checks them.
//!
//! RSA2 is RSA-SHA256 with PKCS#1 v1.5 padding over a 2048-bit key, base64 (standard alphabet)
//! encoded. What gets signed is either a canonical parameter string ([`canonical_request`],
//! [`canonical_notification`]) or, for responses, the exact JSON text of the
//! `<method>_response` value. The rules were checked against the official SDKs (see the crate
//! README): the Java SDK's `AlipaySignature.getSignContent` drops empty values and sorts keys;
//! `getSignCheckContentV1` (notifications) also removes `sign_type`; the Node.js SDK's `sign`
//! includes `sign_type` in what it signs for requests.
//!
//! This module does no I/O beyond reading key files and knows nothing about HTTP or trades.
//! It is shared by the sandbox (which plays the platform) and the gateway's provider client
//! (which plays the merchant); the official-SDK test in the sandbox keeps both honest.
//! ring cannot generate RSA keys; development keys are made once with the openssl CLI and kept in
//! `dev-keys/`.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};

/// A key that cannot be read or is unfit for RSA2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The only signature type the sandbox accepts; legacy `RSA` (SHA-1) is refused like a
/// misconfigured app.
pub const SIGN_TYPE_RSA2: &str = "RSA2";

/// The canonical string a merchant signs for an open-API request: every parameter except `sign`,
/// empty values dropped, sorted by key in byte order, joined as `k=v` with `&`. Values are the
/// decoded (not URL-encoded) text.
pub fn canonical_request<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    canonical(params, &["sign"])
}

/// The canonical string the platform signs for an async notification: like a request, but
/// `sign_type` is excluded too (the Java SDK's `rsaCheckV1`).
pub fn canonical_notification<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    canonical(params, &["sign", "sign_type"])
}

fn canonical<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>, skip: &[&str]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty() && !skip.contains(k))
        .collect();
    // Byte order of the UTF-8 key equals Java's String order for the ASCII keys the API uses.
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// A private key that signs (the platform's key in the server, the app's key in clients).
pub struct Signer {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    /// Reads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey` writes) or
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Signer, KeyError> {
        let (label, der) = pem_decode(pem)?;
        let key = match label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            other => return Err(KeyError(format!("unexpected PEM label {other:?}"))),
        }
        .map_err(|e| KeyError(format!("rejected RSA private key: {e}")))?;
        if key.public().modulus_len() * 8 < 2048 {
            return Err(KeyError("RSA2 needs a key of at least 2048 bits".into()));
        }
        Ok(Signer {
            key,
            rng: SystemRandom::new(),
        })
    }

    pub fn from_file(path: &Path) -> Result<Signer, KeyError> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| KeyError(format!("reading {}: {e}", path.display())))?;
        Signer::from_pem(&pem)
    }

    /// RSA-SHA256 PKCS#1 v1.5 over the UTF-8 bytes of `content`, base64 encoded. PKCS#1 v1.5 is
    /// deterministic, so the same key and content always give the same signature.
    pub fn sign(&self, content: &str) -> String {
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                content.as_bytes(),
                &mut sig,
            )
            .expect("signing with a validated RSA key and a correctly sized buffer");
        STANDARD.encode(sig)
    }
}

/// A public key that verifies (an app's key in the server, the platform's key in clients).
#[derive(Clone)]
pub struct Verifier {
    /// PKCS#1 `RSAPublicKey` DER, which is what ring wants.
    rsa_public_key_der: Vec<u8>,
}

impl Verifier {
    /// Accepts what merchants paste into the platform console: a PEM (`BEGIN PUBLIC KEY`, i.e.
    /// SubjectPublicKeyInfo, or `BEGIN RSA PUBLIC KEY`, i.e. PKCS#1) or the bare base64 body of
    /// either, which is how the console shows keys.
    pub fn from_text(text: &str) -> Result<Verifier, KeyError> {
        let der = if text.contains("-----BEGIN") {
            pem_decode(text)?.1
        } else {
            let compact: String = text.split_whitespace().collect();
            STANDARD
                .decode(compact)
                .map_err(|_| KeyError("public key is neither PEM nor base64".into()))?
        };
        Verifier::from_der(&der)
    }

    /// Takes SubjectPublicKeyInfo or PKCS#1 DER; stores PKCS#1.
    pub fn from_der(der: &[u8]) -> Result<Verifier, KeyError> {
        let rsa = strip_spki(der)?;
        // A 2048-bit RSAPublicKey is 270 bytes of DER; anything much shorter is a smaller key,
        // which ring would refuse at every verification anyway.
        if rsa.len() < 260 {
            return Err(KeyError(
                "RSA2 needs a public key of at least 2048 bits".into(),
            ));
        }
        Ok(Verifier {
            rsa_public_key_der: rsa,
        })
    }

    pub fn from_file(path: &Path) -> Result<Verifier, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyError(format!("reading {}: {e}", path.display())))?;
        Verifier::from_text(&text)
    }

    /// The key as base64 PKCS#1 DER, the form the store keeps.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.rsa_public_key_der)
    }

    /// True when `sign_b64` is a valid RSA2 signature of `content` by this key. Any malformed
    /// input is simply "not valid".
    pub fn verify(&self, content: &str, sign_b64: &str) -> bool {
        let Ok(sig) = STANDARD.decode(sign_b64.trim()) else {
            return false;
        };
        UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &self.rsa_public_key_der,
        )
        .verify(content.as_bytes(), &sig)
        .is_ok()
    }
}

/// Longest PEM file we read; an RSA-4096 private key is about 3.3 KB.
const PEM_BYTES_MAX: usize = 16 * 1024;

/// Returns the label and DER bytes of the first PEM block.
fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    if pem.len() > PEM_BYTES_MAX {
        return Err(KeyError("PEM text too long".into()));
    }
    let bad = || KeyError("malformed PEM".into());
    let begin = pem.find("-----BEGIN ").ok_or_else(bad)?;
    let rest = &pem[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or_else(bad)?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker).ok_or_else(bad)?;
    let body: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(body).map_err(|_| bad())?;
    Ok((label, der))
}

/// rsaEncryption, 1.2.840.113549.1.1.1, as DER content bytes.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// If `der` is a SubjectPublicKeyInfo for an RSA key, returns the PKCS#1 RSAPublicKey inside;
/// if it is already PKCS#1 (a SEQUENCE starting with an INTEGER), returns it unchanged.
fn strip_spki(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let bad = || KeyError("public key is not RSA SubjectPublicKeyInfo or PKCS#1".into());
    let (tag, outer, _) = der_tlv(der).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    match outer.first() {
        Some(0x02) => Ok(der.to_vec()),
        Some(0x30) => {
            let (_, algorithm, after) = der_tlv(outer).ok_or_else(bad)?;
            let (oid_tag, oid, _) = der_tlv(algorithm).ok_or_else(bad)?;
            if oid_tag != 0x06 || oid != RSA_ENCRYPTION_OID {
                return Err(bad());
            }
            let (bits_tag, bits, _) = der_tlv(after).ok_or_else(bad)?;
            // A BIT STRING whose first content byte counts unused bits; a key has none.
            if bits_tag != 0x03 || bits.first() != Some(&0) {
                return Err(bad());
            }
            Ok(bits[1..].to_vec())
        }
        _ => Err(bad()),
    }
}

/// Reads one DER tag-length-value: (tag, value, rest). Only the length forms keys use.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_PRIVATE: &str = include_str!("../../provider-sandbox/dev-keys/app-private.pem");
    const APP_PUBLIC_SPKI: &str = include_str!("../../provider-sandbox/dev-keys/app-public.pem");
    const APP_PUBLIC_PKCS1: &str =
        include_str!("../../provider-sandbox/dev-keys/app-public-pkcs1.pem");

    /// A request's canonical form and its signature, computed independently with
    /// `openssl dgst -sha256 -sign dev-keys/app-private.pem` over the exact text.
    const VECTOR_CONTENT: &str = r#"app_id=2021000000000001&biz_content={"out_trade_no":"T-1","total_amount":"12.50"}&charset=utf-8&method=alipay.trade.query&sign_type=RSA2&timestamp=2026-01-02 03:04:05&version=1.0"#;
    const VECTOR_SIGN: &str = "SgRCxC7XagdW6oROqTPb54nQuxMt9imFmvFnVyGQ7NfNJ3ecFn7uJYjrt5ZIP2RY/l9LBdE1y8czWD7ycy7BGXrLaCxLiSuXOZm/sHatIhZgFJNea14ZDUkgW4GSZoHFKk1O9BCSJ17jON680O2fbFarr0QteBt9izovYqVt+40VRL6kaa55u4D+GVFzB8nGsWZFKniEGEOn0zR8RGEcKzFV/83oNzyph7m9DFEDWiQK7Vqv5g5GECw/oA0f5mp+wUrx6k+uia3BpmklbGjfcCrh57lU+yCk9ux1L2qUzXjwmTSaehXwx7RDfmEcH+Kt4/57O8qdJpOvcDNpfj+nzA==";

    fn vector_params() -> Vec<(&'static str, &'static str)> {
        // Deliberately unsorted, with `sign` and an empty value that must both be dropped.
        vec![
            ("version", "1.0"),
            ("timestamp", "2026-01-02 03:04:05"),
            ("sign", "whatever"),
            ("notify_url", ""),
            ("method", "alipay.trade.query"),
            ("sign_type", "RSA2"),
            ("charset", "utf-8"),
            (
                "biz_content",
                r#"{"out_trade_no":"T-1","total_amount":"12.50"}"#,
            ),
            ("app_id", "2021000000000001"),
        ]
    }

    /// Proves the request canonical form keeps `sign_type`, drops `sign` and empty values, and
    /// sorts by key, matching a fixed vector.
    #[test]
    fn canonical_request_matches_vector() {
        assert_eq!(canonical_request(vector_params()), VECTOR_CONTENT);
    }

    /// Proves the notification canonical form also drops `sign_type`.
    #[test]
    fn canonical_notification_drops_sign_type() {
        let params = [
            ("trade_status", "TRADE_SUCCESS"),
            ("sign_type", "RSA2"),
            ("sign", "x"),
            ("app_id", "1"),
            ("gmt_payment", ""),
        ];
        assert_eq!(
            canonical_notification(params),
            "app_id=1&trade_status=TRADE_SUCCESS"
        );
    }

    /// Proves ring's RSA2 signature is byte-identical to openssl's for the fixed vector, and that
    /// both public-key forms verify it.
    #[test]
    fn signature_matches_openssl_vector() {
        let signer = Signer::from_pem(APP_PRIVATE).unwrap();
        assert_eq!(signer.sign(VECTOR_CONTENT), VECTOR_SIGN);
        for text in [APP_PUBLIC_SPKI, APP_PUBLIC_PKCS1] {
            let v = Verifier::from_text(text).unwrap();
            assert!(v.verify(VECTOR_CONTENT, VECTOR_SIGN));
            assert!(!v.verify(&VECTOR_CONTENT.replace("12.50", "12.51"), VECTOR_SIGN));
            assert!(!v.verify(VECTOR_CONTENT, "not base64!"));
        }
    }

    /// Proves stripping the SPKI wrapper yields exactly openssl's `-RSAPublicKey_out` DER, and
    /// that the console's bare base64 form is accepted.
    #[test]
    fn spki_and_pkcs1_agree() {
        let spki = Verifier::from_text(APP_PUBLIC_SPKI).unwrap();
        let pkcs1 = Verifier::from_text(APP_PUBLIC_PKCS1).unwrap();
        assert_eq!(spki.to_base64(), pkcs1.to_base64());
        let bare: String = APP_PUBLIC_SPKI
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert_eq!(
            Verifier::from_text(&bare).unwrap().to_base64(),
            spki.to_base64()
        );
        assert!(Verifier::from_text("bm90IGEga2V5").is_err());
    }
}
