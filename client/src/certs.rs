//! Development PKI: an operator CA, the gateway's server certificate and terminal client
//! certificates, generated with rcgen. Production operators bring their own CA; the gateway only
//! needs `ca.pem`, `server.pem`/`server.key` and optionally `crl.pem` in its TLS directory.

use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};

const CA_COMMON_NAME: &str = "Turnpike Dev Operator CA";

/// The dev CA, reconstructed from its key: re-signing the same distinguished name with the same
/// key yields an issuer that verifies every certificate the original signed.
pub struct DevCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "Turnpike (development only)");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(params)
}

impl DevCa {
    pub fn generate() -> anyhow::Result<DevCa> {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(DevCa { cert, key })
    }

    pub fn from_key_pem(key_pem: &str) -> anyhow::Result<DevCa> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(DevCa { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The gateway's server certificate for the given DNS names / IP addresses.
    pub fn server_cert(&self, names: &[&str]) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "turnpike-gateway");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A terminal's client certificate: the terminal id is the subject common name.
    pub fn terminal_cert(
        &self,
        terminal_id: &str,
        validity: CertValidity,
        serial: u64,
    ) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, terminal_id);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Turnpike terminals");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        match validity {
            CertValidity::Normal => {
                params.not_before = rcgen::date_time_ymd(2024, 1, 1);
                params.not_after = rcgen::date_time_ymd(2035, 1, 1);
            }
            CertValidity::Expired => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
        }
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A certificate of whatever `params` describe, with a fresh key, signed by this CA: for
    /// tests that need a certificate the normal helpers would never make.
    pub fn sign_client(&self, params: CertificateParams) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A CRL revoking the given terminal certificate serials.
    pub fn crl_pem(&self, revoked_serials: &[u64]) -> anyhow::Result<String> {
        let now = time_now();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + std::time::Duration::from_secs(30 * 24 * 3600),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.cert, &self.key)?.pem()?)
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[derive(Debug, Clone, Copy)]
pub enum CertValidity {
    Normal,
    Expired,
}

/// Writes a complete dev PKI into `out`: `ca.pem`, `ca.key`, `server.pem`, `server.key`, and
/// `terminals/<id>.pem` + `.key` for each terminal id. Serial numbers start at 1000.
pub fn write_dev_pki(out: &Path, terminal_ids: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("terminals"))
        .with_context(|| format!("creating {}", out.display()))?;
    let ca = DevCa::generate()?;
    let (server_pem, server_key) = ca.server_cert(&["localhost", "127.0.0.1", "::1"])?;
    write_secret(&out.join("ca.key"), &ca.key_pem())?;
    std::fs::write(out.join("ca.pem"), ca.cert_pem())?;
    std::fs::write(out.join("server.pem"), server_pem)?;
    write_secret(&out.join("server.key"), &server_key)?;
    for (i, id) in terminal_ids.iter().enumerate() {
        let (pem, key) = ca.terminal_cert(id, CertValidity::Normal, 1000 + i as u64)?;
        std::fs::write(out.join("terminals").join(format!("{id}.pem")), pem)?;
        write_secret(&out.join("terminals").join(format!("{id}.key")), &key)?;
    }
    Ok(())
}

/// Writes a private key readable by the owner only.
pub fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
