//! TLS configuration: the terminal listener demands a client certificate chaining to the operator
//! CA (and not revoked, and belonging to an active registered terminal), checked during the
//! handshake; the public listener presents the server certificate only.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

pub use turnpike_client::tls::{load_certs, load_key, provider, roots};

fn load_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(rustls_pemfile::crls(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>()?)
}

/// The terminal id a client certificate names: its subject common name.
pub fn terminal_id_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut names = parsed.subject().iter_common_name();
    let cn = names.next()?.as_str().ok()?;
    // Exactly one common name, and a valid terminal id: with two, software that reads the
    // first and software that reads the last would see two different terminals.
    if names.next().is_some() || turnpike_wire::ident::check_id(cn).is_err() {
        return None;
    }
    Some(cn.to_string())
}

/// Answers whether a terminal id may connect now; implemented by the live registry.
pub trait TerminalGate: Send + Sync + 'static {
    fn is_active(&self, terminal_id: &str) -> bool;
}

/// Chain, expiry and CRL checks by webpki, then the registry check: a certificate of an unknown
/// or revoked terminal fails the handshake exactly like a bad chain does.
struct TerminalVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    gate: Arc<dyn TerminalGate>,
}

impl fmt::Debug for TerminalVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TerminalVerifier")
    }
}

impl ClientCertVerifier for TerminalVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = terminal_id_of(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if !self.gate.is_active(&id) {
            tracing::warn!(terminal_id = %id, "refused certificate of an unknown or revoked terminal");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}

fn with_alpn(mut config: ServerConfig) -> ServerConfig {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Server config of the terminal listener (mutual TLS). `dir` holds ca.pem, server.pem,
/// server.key and optionally crl.pem.
pub fn terminal_server_config(
    dir: &Path,
    gate: Arc<dyn TerminalGate>,
) -> anyhow::Result<ServerConfig> {
    let inner = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&dir.join("ca.pem"))?),
        provider(),
    )
    .with_crls(load_crls(&dir.join("crl.pem"))?)
    .build()
    .context("building the client certificate verifier")?;
    let verifier = Arc::new(TerminalVerifier { inner, gate });
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            load_certs(&dir.join("server.pem"))?,
            load_key(&dir.join("server.key"))?,
        )
        .context("loading the server certificate")?;
    Ok(with_alpn(config))
}

/// Server config of the public listener (rider and admin APIs): server authentication only.
pub fn public_server_config(dir: &Path) -> anyhow::Result<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            load_certs(&dir.join("server.pem"))?,
            load_key(&dir.join("server.key"))?,
        )
        .context("loading the server certificate")?;
    Ok(with_alpn(config))
}
