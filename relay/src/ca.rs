//! The organisation's certificate authority: created at `init`, it issues the relay's own
//! server certificate, the grant signer's certificate and, at enrollment, one certificate per
//! device and technician.
//!
//! The CA key signs certificates only. Session grants are signed by a key of their own
//! ([`GrantSigner`]), whose certificate the CA issues with an extended key usage no other
//! certificate carries ([`pki::GRANT_SIGNER_EKU`]); agents accept a grant only under such a
//! certificate. The relay still needs the CA key at run time to enroll (and to renew its own
//! and the signer's certificates); grant signing alone no longer does.
//!
//! The identity is written into the subject by the CA, never taken from the CSR: the CSR only
//! contributes its public key (and proves possession of the private key by its signature).

use crate::config::DataDir;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    SigningKey, string::Ia5String,
};
use rustls_pki_types::CertificateDer;
use tether_net::pki::{self, PkiError, write_private, write_public};
use tether_protocol::identity::Identity;
use thiserror::Error;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Error)]
pub enum CaError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("certificate request is invalid: {0}")]
    BadCsr(String),
}

const CA_DAYS: i64 = 3650;
const SERVER_DAYS: i64 = 825;
const CLIENT_DAYS: i64 = 825;
/// Renew the relay's server certificate at start-up when it has less than this left.
const RENEW_BEFORE_DAYS: i64 = 30;

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // Tolerate clocks a little behind ours.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// The loaded CA, able to sign.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
}

const SIGNER_DAYS: i64 = 825;

/// The key that signs session grants, and its CA-issued certificate (sent with every offer).
pub struct GrantSigner {
    key: KeyPair,
    pub cert_der: CertificateDer<'static>,
}

impl GrantSigner {
    /// Loads the data directory's grant signer, issuing one with `ca` when it is missing (a data
    /// directory from before grants had their own key), expiring within 30 days, or not issued
    /// by this CA.
    pub fn load_or_issue(dir: &DataDir, ca: &Ca, relay_name: &str) -> Result<Self, CaError> {
        if let Some(s) = Self::load(dir, ca) {
            return Ok(s);
        }
        ca.issue_grant_signer(dir, relay_name)
    }

    fn load(dir: &DataDir, ca: &Ca) -> Option<Self> {
        let key = std::fs::read_to_string(dir.grant_signer_key()).ok()?;
        let key = KeyPair::from_pem(&key).ok()?;
        let cert_der = pki::load_certs(&dir.grant_signer_cert())
            .ok()?
            .into_iter()
            .next()?;
        let soon = OffsetDateTime::now_utc() + Duration::days(RENEW_BEFORE_DAYS);
        let valid_until_soon = u64::try_from(soon.unix_timestamp()).ok()?;
        pki::verify_grant_signer(&ca.cert_der, &cert_der, valid_until_soon).ok()?;
        // The certificate must be for this key.
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).ok()?;
        (cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
            .then_some(Self { key, cert_der })
    }

    /// Signs a session grant (ECDSA P-256 SHA-256, ASN.1); agents verify it with
    /// [`Self::cert_der`] after checking that certificate against their CA.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CaError> {
        Ok(self.key.sign(msg)?)
    }
}

impl Ca {
    /// Creates a new ECDSA P-256 CA and writes it (key 0600) into the data directory.
    pub fn create(dir: &DataDir, org: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        // A random suffix keeps two organisations' CAs apart even when their relays share a name.
        let tag: [u8; 4] = rand::random();
        dn.push(
            DnType::CommonName,
            format!("Tether CA ({org}) {}", tether_protocol::token::hex(&tag)),
        );
        dn.push(DnType::OrganizationName, "Tether");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial());
        validity(&mut params, CA_DAYS);
        let cert = params.self_signed(&key)?;
        write_private(&dir.ca_key(), key.serialize_pem().as_bytes())?;
        write_public(&dir.ca_cert(), cert.pem().as_bytes())?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA of another relay's data directory `from` and writes it into `dir`: relays
    /// of one organisation share its CA (each issues its own server certificate from it).
    pub fn join(dir: &DataDir, from: &DataDir) -> Result<Self, CaError> {
        let ca = Self::load(from)?;
        write_private(&dir.ca_key(), ca.issuer.key().serialize_pem().as_bytes())?;
        write_public(&dir.ca_cert(), ca.cert_pem.as_bytes())?;
        Ok(ca)
    }

    pub fn load(dir: &DataDir) -> Result<Self, CaError> {
        let read = |p: std::path::PathBuf| {
            std::fs::read_to_string(&p).map_err(|source| PkiError::Io {
                path: p.display().to_string(),
                source,
            })
        };
        let cert_pem = read(dir.ca_cert())?;
        let key_pem = read(dir.ca_key())?;
        let key = KeyPair::from_pem(&key_pem)?;
        let cert_der = pki::certs_from_pem(cert_pem.as_bytes(), "ca.pem")?.remove(0);
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            issuer,
            cert_pem,
            cert_der,
        })
    }

    /// Issues a new grant-signing key and certificate and writes them (key 0600).
    pub fn issue_grant_signer(
        &self,
        dir: &DataDir,
        relay_name: &str,
    ) -> Result<GrantSigner, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        // Not `device:` or `tech:`: no peer identity can be read out of it.
        dn.push(DnType::CommonName, format!("grant-signer:{relay_name}"));
        dn.push(DnType::OrganizationalUnitName, "grant-signer");
        dn.push(DnType::OrganizationName, "Tether");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
            pki::GRANT_SIGNER_EKU.to_vec(),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(serial());
        validity(&mut params, SIGNER_DAYS);
        let cert = params.signed_by(&key, &self.issuer)?;
        write_private(&dir.grant_signer_key(), key.serialize_pem().as_bytes())?;
        write_public(&dir.grant_signer_cert(), cert.pem().as_bytes())?;
        Ok(GrantSigner {
            key,
            cert_der: cert.der().clone(),
        })
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        pki::fingerprint(&self.cert_der)
    }

    /// Issues the relay's TLS server certificate for `name` and writes it with its key.
    pub fn issue_server(&self, dir: &DataDir, name: &str) -> Result<(), CaError> {
        let key = KeyPair::generate()?;
        let mut sans = vec![name.to_string()];
        for extra in ["localhost", "127.0.0.1", "::1"] {
            if !sans.iter().any(|s| s == extra) {
                sans.push(extra.to_string());
            }
        }
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("relay:{name}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(serial());
        validity(&mut params, SERVER_DAYS);
        let cert = params.signed_by(&key, &self.issuer)?;
        write_private(&dir.server_key(), key.serialize_pem().as_bytes())?;
        // The chain includes the CA so enrolling clients can pin it by fingerprint.
        write_public(
            &dir.server_cert(),
            format!("{}{}", cert.pem(), self.cert_pem).as_bytes(),
        )?;
        Ok(())
    }

    /// Re-issues the server certificate if it is missing or close to expiry. Returns true if it did.
    pub fn renew_server_if_needed(&self, dir: &DataDir, name: &str) -> Result<bool, CaError> {
        let needs = match pki::load_certs(&dir.server_cert()) {
            Ok(chain) => match x509_not_after(&chain[0]) {
                Some(t) => t - OffsetDateTime::now_utc() < Duration::days(RENEW_BEFORE_DAYS),
                None => true,
            },
            Err(_) => true,
        };
        if needs {
            self.issue_server(dir, name)?;
        }
        Ok(needs)
    }

    /// Signs a CSR for `identity`. Returns the PEM certificate and its serial (hex).
    pub fn issue_client(
        &self,
        csr_pem: &str,
        identity: &Identity,
    ) -> Result<(String, String), CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.common_name());
        dn.push(DnType::OrganizationalUnitName, identity.org_unit());
        dn.push(DnType::OrganizationName, "Tether");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Identity::Device { id, .. } = identity {
            // A device is also the TLS server of the end-to-end session channel: technicians
            // check it by this name.
            params.subject_alt_names = vec![SanType::DnsName(
                Ia5String::try_from(tether_net::tls::device_server_name(id))
                    .map_err(|e| CaError::BadCsr(e.to_string()))?,
            )];
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial_number = serial();
        let serial_hex = tether_protocol::token::hex(serial_number.as_ref());
        params.serial_number = Some(serial_number);
        validity(&mut params, CLIENT_DAYS);
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok((cert.pem(), serial_hex))
    }
}

fn x509_not_after(der: &CertificateDer<'_>) -> Option<OffsetDateTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::identity::Role;

    /// The CI smoke of the `csr` fuzz target (`protocol/fuzz`): mutated CSRs, as DER and PEM,
    /// are refused with an error, never a panic.
    #[test]
    fn mutated_csrs_are_refused_without_panicking() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "device:x");
        let request = p.serialize_request(&key).unwrap();
        let der = request.der().to_vec();
        let pem = request.pem().unwrap().into_bytes();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        for i in 0..5_000 {
            let mut m = der.clone();
            match i % 3 {
                0 => {
                    let at = next() as usize % m.len();
                    m[at] ^= 1 << (next() % 8);
                }
                1 => m.truncate(next() as usize % m.len()),
                _ => {
                    let at = next() as usize % m.len();
                    m[at] = next() as u8;
                    m.insert(next() as usize % m.len(), next() as u8);
                }
            }
            let der = rustls_pki_types::CertificateSigningRequestDer::from(m.as_slice());
            if CertificateSigningRequestParams::from_der(&der).is_ok() {
                accepted += 1;
            }
            let mut text = pem.clone();
            let at = next() as usize % text.len();
            let alphabet = b"ABCxyz019+/=\n-";
            text[at] = alphabet[next() as usize % alphabet.len()];
            if let Ok(text) = std::str::from_utf8(&text) {
                let _ = CertificateSigningRequestParams::from_pem(text);
            }
        }
        // Most mutations break the signature or the encoding.
        assert!(accepted < 2_500, "{accepted} mutated CSRs parsed");
    }

    #[test]
    fn issues_client_cert_with_identity_from_ca_not_csr() {
        let dir = std::env::temp_dir().join(format!("tether-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dd = DataDir::new(&dir);
        let ca = Ca::create(&dd, "test").unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dd.ca_key()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        // The CSR claims to be an admin; the CA writes what the token says.
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "tech:mallory");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "admin");
        let csr = p.serialize_request(&key).unwrap().pem().unwrap();
        let id = Identity::Technician {
            name: "ana".into(),
            role: Role::Viewer,
        };
        let (pem, serial) = ca.issue_client(&csr, &id).unwrap();
        let der = pki::certs_from_pem(pem.as_bytes(), "t").unwrap();
        let info = pki::cert_info(&der[0]).unwrap();
        assert_eq!(info.identity, id);
        assert_eq!(info.serial, serial);

        assert!(matches!(
            ca.issue_client("-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n", &id),
            Err(CaError::BadCsr(_))
        ));
        // A reloaded CA signs certificates with the same issuer.
        let again = Ca::load(&dd).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        // A data directory without a grant signer gets one at start; it chains to the CA, is
        // marked as a grant signer, is kept across restarts, and its grants verify unchanged.
        let signer = GrantSigner::load_or_issue(&dd, &again, "relay").unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp() as u64;
        pki::verify_grant_signer(&ca.cert_der, &signer.cert_der, now).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dd.grant_signer_key())
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let kept = GrantSigner::load_or_issue(&dd, &again, "relay").unwrap();
        assert_eq!(kept.cert_der, signer.cert_der);
        let sig = kept.sign(b"grant").unwrap();
        assert!(pki::verify_signature(&signer.cert_der, b"grant", &sig));
        assert!(!pki::verify_signature(&signer.cert_der, b"grunt", &sig));
        // The CA certificate is not a grant signer, nor is a technician's certificate.
        assert!(pki::verify_grant_signer(&ca.cert_der, &ca.cert_der, now).is_err());
        assert!(pki::verify_grant_signer(&ca.cert_der, &der[0], now).is_err());
        // A signer of another CA (another data directory) is not reloaded: a new one is issued.
        let other_dir = dir.join("other");
        std::fs::create_dir_all(&other_dir).unwrap();
        let other = Ca::create(&DataDir::new(&other_dir), "other").unwrap();
        assert!(pki::verify_grant_signer(&other.cert_der, &signer.cert_der, now).is_err());
        let replaced = GrantSigner::load_or_issue(&dd, &other, "relay").unwrap();
        assert_ne!(replaced.cert_der, signer.cert_der);
        pki::verify_grant_signer(&other.cert_der, &replaced.cert_der, now).unwrap();
    }
}
