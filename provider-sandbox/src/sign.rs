//! RSA2 signatures exactly as the Alipay open platform makes and checks them: the shared
//! implementation in `turnpike-provider-wire` (also used by the gateway's provider client), so
//! both ends sign the same canonical strings; the official-SDK test proves them right.

pub use turnpike_provider_wire::sign::*;

impl From<KeyError> for crate::error::SandboxError {
    fn from(e: KeyError) -> Self {
        crate::error::SandboxError::Key(e.0)
    }
}
