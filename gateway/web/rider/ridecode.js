// Ride codes (format v1), byte for byte as docs/ride-code.md says; the phone's half of
// wire/src/ridecode.rs. No DOM and no storage here: the app and the browser test
// (tests/tests/rider_app.rs, which checks these functions against the published test vectors)
// both import this module.
//
// A code is 206 bytes: the 126-byte credential, generated_at_ms (u64), a random nonce (u64),
// then the device's ECDSA P-256 SHA-256 signature r || s (64 bytes) over
// "turnpike-ridecode-v1\0" || bytes 0..142. WebCrypto's ECDSA signature is already that fixed
// r || s form (not DER). All integers are big-endian.

export const CREDENTIAL_BYTES = 126;
export const UNSIGNED_BYTES = 142;
export const CODE_BYTES = 206;
export const FORMAT_VERSION = 1;
/** How old a code may be when a gate scans it (VerifyPolicy::freshness_ms). */
export const FRESHNESS_MS = 60000;
/** The domain-separation prefix of the device signature (21 bytes, NUL included). */
export const RIDECODE_PREFIX = new TextEncoder().encode("turnpike-ridecode-v1\0");

const ECDSA = { name: "ECDSA", hash: "SHA-256" };
const U64_MAX = (1n << 64n) - 1n;

/** Bytes 0..142 of a code: credential || generated_at_ms || nonce. */
export function unsignedCode(credential, generatedAtMs, nonce) {
  if (!(credential instanceof Uint8Array) || credential.length !== CREDENTIAL_BYTES) {
    throw new Error("a credential has " + CREDENTIAL_BYTES + " bytes");
  }
  if (credential[0] !== FORMAT_VERSION) {
    throw new Error("unsupported credential version " + credential[0]);
  }
  const at = BigInt(generatedAtMs);
  const n = BigInt(nonce);
  if (at < 0n || at > U64_MAX || n < 0n || n > U64_MAX) {
    throw new Error("generated_at_ms and nonce are u64");
  }
  const out = new Uint8Array(UNSIGNED_BYTES);
  out.set(credential, 0);
  const view = new DataView(out.buffer);
  view.setBigUint64(126, at, false);
  view.setBigUint64(134, n, false);
  return out;
}

/** What the device signs: the prefix, then bytes 0..142. */
export function signingInput(unsigned) {
  if (unsigned.length !== UNSIGNED_BYTES) throw new Error("142 bytes are signed");
  const out = new Uint8Array(RIDECODE_PREFIX.length + UNSIGNED_BYTES);
  out.set(RIDECODE_PREFIX, 0);
  out.set(unsigned, RIDECODE_PREFIX.length);
  return out;
}

/** A random u64, so two codes made in one millisecond still differ. */
export function randomNonce() {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return new DataView(b.buffer).getBigUint64(0, false);
}

/** A complete 206-byte code signed with the device's private key (a WebCrypto CryptoKey). */
export async function makeCode(privateKey, credential, generatedAtMs, nonce = randomNonce()) {
  const unsigned = unsignedCode(credential, generatedAtMs, nonce);
  const signature = new Uint8Array(
    await crypto.subtle.sign(ECDSA, privateKey, signingInput(unsigned)),
  );
  if (signature.length !== 64) throw new Error("ECDSA P-256 signatures are 64 bytes");
  const code = new Uint8Array(CODE_BYTES);
  code.set(unsigned, 0);
  code.set(signature, UNSIGNED_BYTES);
  return code;
}

/** Checks a code's device signature with a public key (for tests and self-checks). */
export async function verifyCode(publicKey, code) {
  if (code.length !== CODE_BYTES) return false;
  return crypto.subtle.verify(
    ECDSA,
    publicKey,
    code.slice(UNSIGNED_BYTES),
    signingInput(code.slice(0, UNSIGNED_BYTES)),
  );
}

/** The credential's fields (docs/ride-code.md, "Credential"); ids as decimal strings. */
export function credentialFields(credential) {
  const v = new DataView(credential.buffer, credential.byteOffset, credential.byteLength);
  return {
    version: v.getUint8(0),
    issuerKeyId: v.getUint16(1, false),
    credentialId: v.getBigUint64(3, false).toString(),
    riderId: v.getBigUint64(11, false).toString(),
    validFromS: v.getUint32(19, false),
    validUntilS: v.getUint32(23, false),
    products: v.getUint16(27, false),
  };
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex) {
  if (hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) throw new Error("not hex");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Unpadded base64url (RFC 4648 §5), the API's text form of keys and credentials. */
export function toBase64Url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64Url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const s = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}
