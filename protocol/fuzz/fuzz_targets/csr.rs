//! Feeds arbitrary bytes to the CSR parsing the relay does on every enrollment request (rcgen over
//! x509-parser), as PEM and as DER. None may panic: a CSR comes from an unauthenticated peer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(pem) = std::str::from_utf8(data) {
        let _ = rcgen::CertificateSigningRequestParams::from_pem(pem);
    }
    let der = rustls_pki_types::CertificateSigningRequestDer::from(data);
    let _ = rcgen::CertificateSigningRequestParams::from_der(&der);
});
