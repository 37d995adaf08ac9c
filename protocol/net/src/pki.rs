//! Certificates and keys on disk and on the wire.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use tether_protocol::identity::Identity;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no certificate found in PEM")]
    NoCert(String),
    #[error("{0}: no private key found in PEM")]
    NoKey(String),
    #[error("certificate cannot be parsed: {0}")]
    BadCert(String),
    #[error("certificate is not a Tether identity: {0}")]
    NotTether(String),
    #[error("not this organisation's grant signer: {0}")]
    NotGrantSigner(String),
}

/// SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-256 of arbitrary bytes (token secrets are stored only as this).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    fingerprint(bytes)
}

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| PkiError::Io {
        path: path.display().to_string(),
        source,
    })
}

pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(PkiError::NoCert(what.to_string()));
    }
    Ok(certs)
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    certs_from_pem(&read(path)?, &path.display().to_string())
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(&read(path)?)
        .map_err(|_| PkiError::NoKey(path.display().to_string()))
}

/// Writes a file readable by its owner only (keys, databases, tokens). The mode is set when the
/// file is created, so there is no window in which another user could open it. On Windows the
/// file inherits its directory's ACL (the agent's state directory admits only SYSTEM and
/// Administrators).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes a public file (certificates) atomically.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// What the relay needs to know about a peer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub identity: Identity,
    /// Serial number, lower-case hex.
    pub serial: String,
    pub fingerprint: [u8; 32],
}

/// Reads the Tether identity out of a certificate's subject.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::BadCert(e.to_string()))?;
    let subject = cert.subject();
    let first =
        |mut it: Box<dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue> + '_>| {
            it.next()
                .and_then(|a| a.as_str().ok())
                .unwrap_or("")
                .to_string()
        };
    let cn = first(Box::new(subject.iter_common_name()));
    let ou = first(Box::new(subject.iter_organizational_unit()));
    let identity =
        Identity::from_subject(&cn, &ou).map_err(|e| PkiError::NotTether(e.to_string()))?;
    Ok(CertInfo {
        identity,
        serial: cert.raw_serial_as_string().replace(':', "").to_lowercase(),
        fingerprint: fingerprint(der),
    })
}

/// The extended key usage that marks the relay's grant-signing certificate (and nothing else
/// the CA issues): an OID under 2.25 (ITU-T X.667, usable without registration), its last arc
/// chosen at random for Tether.
pub const GRANT_SIGNER_EKU: [u64; 3] = [2, 25, 6_258_435_357_845_989_790];
/// [`GRANT_SIGNER_EKU`] DER-encoded (the OID's value bytes), as path validation wants it.
const GRANT_SIGNER_EKU_DER: &[u8] = &[0x69, 0xd6, 0xed, 0x9b, 0xb9, 0xca, 0x91, 0x9e, 0xd3, 0x1e];

/// Checks that `signer_der` is a grant-signing certificate of the organisation: issued by the
/// CA `ca_der` (the one the agent pinned at enrollment), valid at `now_unix_secs`, and carrying
/// the grant-signer extended key usage. A device's or technician's certificate, the CA's own,
/// or another organisation's signer is refused.
pub fn verify_grant_signer(
    ca_der: &[u8],
    signer_der: &[u8],
    now_unix_secs: u64,
) -> Result<(), PkiError> {
    let bad = |e: String| PkiError::NotGrantSigner(e);
    // Defence in depth: whatever its extensions say, a certificate naming a device or a
    // technician never signs grants.
    if let Ok(info) = cert_info(signer_der) {
        return Err(bad(format!("it belongs to {}", info.identity)));
    }
    let ca = CertificateDer::from(ca_der);
    let anchor = webpki::anchor_from_trusted_cert(&ca).map_err(|e| bad(format!("CA: {e}")))?;
    let signer = CertificateDer::from(signer_der);
    let cert = webpki::EndEntityCert::try_from(&signer).map_err(|e| bad(e.to_string()))?;
    cert.verify_for_usage(
        &[webpki::ring::ECDSA_P256_SHA256],
        &[anchor],
        &[],
        rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_unix_secs)),
        webpki::KeyUsage::required(GRANT_SIGNER_EKU_DER),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| bad(e.to_string()))
}

/// Verifies an ECDSA P-256 SHA-256 (ASN.1) signature made with the key of `signer_der`'s
/// certificate: how agents check the session grants the relay signs with its grant-signing key
/// (after [`verify_grant_signer`] accepted that certificate).
pub fn verify_signature(signer_der: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(signer_der) else {
        return false;
    };
    let key = cert.public_key().subject_public_key.data.as_ref();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key)
        .verify(msg, signature)
        .is_ok()
}
