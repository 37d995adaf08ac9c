//! quinn + rustls configurations.
//!
//! Every connection is TLS 1.3 (QUIC requires it) on the ring provider with the `tether/1` ALPN.
//! The organisation CA is the only trust root on both sides: clients trust no public CA, and the
//! relay accepts only client certificates its CA issued. The relay lets a client connect *without*
//! a certificate, because that is how enrollment works; the protocol then allows such a peer
//! nothing but [`tether_protocol::message::Intent::Enroll`].

use crate::NetError;
use crate::pki::fingerprint;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::Duration;
use tether_protocol::ALPN;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn cfg_err(e: impl std::fmt::Display) -> NetError {
    NetError::Config(e.to_string())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, NetError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(cfg_err)?;
    Ok(Arc::new(roots))
}

/// Transport settings shared by both ends.
#[derive(Debug, Clone, Copy)]
pub struct TransportOptions {
    /// QUIC-level keep-alive; the application heartbeat is separate.
    pub keep_alive: Option<Duration>,
    pub idle_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            keep_alive: Some(Duration::from_secs(5)),
            idle_timeout: Duration::from_secs(15),
        }
    }
}

/// The QUIC transport settings for `opts`.
pub fn transport(opts: TransportOptions) -> Result<Arc<quinn::TransportConfig>, NetError> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(opts.keep_alive);
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(opts.idle_timeout).map_err(cfg_err)?,
    ));
    Ok(Arc::new(t))
}

/// The relay's QUIC server configuration.
///
/// `chain` is the relay certificate followed by the CA certificate: enrolling clients find the CA
/// in the chain and pin it by fingerprint.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: &CertificateDer<'static>,
    opts: TransportOptions,
) -> Result<quinn::ServerConfig, NetError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(cfg_err)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(cfg_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(cfg_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(cfg_err)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport(opts)?);
    Ok(cfg)
}

/// Client configuration after enrollment: trusts only the org CA, presents our certificate.
pub fn client_config(
    ca: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    opts: TransportOptions,
) -> Result<quinn::ClientConfig, NetError> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(cfg_err)?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key)
        .map_err(cfg_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    finish_client(tls, opts)
}

/// Client configuration for enrollment: no client certificate, and the relay is trusted only if
/// its chain contains the CA whose SHA-256 fingerprint the token carries and its certificate
/// verifies against that CA for the token's server name.
pub fn enroll_client_config(
    ca_fingerprint: [u8; 32],
    opts: TransportOptions,
) -> Result<quinn::ClientConfig, NetError> {
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        fingerprint: ca_fingerprint,
        provider: provider.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(cfg_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    finish_client(tls, opts)
}

fn finish_client(
    tls: rustls::ClientConfig,
    opts: TransportOptions,
) -> Result<quinn::ClientConfig, NetError> {
    let quic = QuicClientConfig::try_from(tls).map_err(cfg_err)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport(opts)?);
    Ok(cfg)
}

#[derive(Debug)]
struct PinnedCaVerifier {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the relay's CA does not match the fingerprint in the token (wrong relay, or a machine in the middle)".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Binds a client endpoint on an ephemeral port of the right address family.
pub fn client_endpoint(remote: std::net::SocketAddr) -> Result<quinn::Endpoint, NetError> {
    let bind: std::net::SocketAddr = if remote.is_ipv6() {
        "[::]:0".parse().map_err(cfg_err)?
    } else {
        "0.0.0.0:0".parse().map_err(cfg_err)?
    };
    let unreachable = |e: std::io::Error| NetError::Unreachable {
        addr: remote.to_string(),
        reason: e.to_string(),
    };
    match quinn::Endpoint::client(bind) {
        Ok(e) => Ok(e),
        // quinn-udp's socket options refused (Wine refuses ECN reporting): a plain socket
        // still speaks QUIC. Binding itself failing fails again here, with its reason.
        Err(e) => {
            tracing::debug!("UDP socket options refused ({e}); using a plain UDP socket");
            let socket = crate::plain_udp::PlainUdp::bind(bind).map_err(unreachable)?;
            let runtime = quinn::default_runtime()
                .ok_or_else(|| unreachable(std::io::Error::other("no async runtime")))?;
            quinn::Endpoint::new_with_abstract_socket(
                quinn::EndpointConfig::default(),
                None,
                std::sync::Arc::new(socket),
                runtime,
            )
            .map_err(unreachable)
        }
    }
}

/// Peer certificates of an established connection (the client's, on the relay).
pub fn peer_certs(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

/// DNS name in a device's certificate, checked by technicians in the end-to-end session TLS.
pub fn device_server_name(device_id: &str) -> String {
    format!("{device_id}.device.tether")
}

/// The agent's side of the end-to-end session TLS: its device certificate as server
/// certificate, and a technician certificate from the org CA required of the peer.
pub fn session_server_config(
    ca: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, NetError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone())
        .build()
        .map_err(cfg_err)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(cfg_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(cfg_err)?;
    tls.alpn_protocols = vec![tether_protocol::session::SESSION_ALPN.to_vec()];
    Ok(Arc::new(tls))
}

/// The technician's side of the end-to-end session TLS.
pub fn session_client_config(
    ca: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(cfg_err)?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key)
        .map_err(cfg_err)?;
    tls.alpn_protocols = vec![tether_protocol::session::SESSION_ALPN.to_vec()];
    Ok(Arc::new(tls))
}
