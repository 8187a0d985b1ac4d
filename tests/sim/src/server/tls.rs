//! HTTPS: a certificate authority and a serving certificate generated at start (ECDSA P-256, by
//! rcgen), and the rustls server configuration the accept loop wraps connections in.
//!
//! The serving certificate names `127.0.0.1` (IP SAN) and `localhost`, `kubernetes`,
//! `kubernetes.default`, `kubernetes.default.svc` (DNS SANs), and carries the ServerAuth extended key
//! usage that Go's crypto/x509 (kubectl, Helm) requires. The CA certificate goes into the kubeconfig
//! as `certificate-authority-data`, so kubectl, Helm and kube-rs verify the server without
//! `insecure-skip-tls-verify`. Clients only send bearer tokens over TLS, which is why `--authorize`
//! needs HTTPS. The server offers HTTP/2 and HTTP/1.1 by ALPN.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Names in the serving certificate besides the IP SAN `127.0.0.1`.
pub const DNS_NAMES: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
];

/// Errors generating the certificates or the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to generate a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("failed to build the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The simulator's CA and serving certificate with the rustls configuration serving it.
pub struct TlsMaterial {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// A fresh CA and a serving certificate signed by it (new keys every call).
    pub fn generate() -> Result<TlsMaterial, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kube-sim-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(DNS_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;

        let chain = vec![cert.der().clone(), ca_cert.der().clone()];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsMaterial {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server: Arc::new(server),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER (what kube-rs `Config::root_cert` takes).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// An acceptor for incoming connections.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// A client configuration trusting only this CA (for in-process clients such as the bench).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A rustls client trusting only the generated CA reaches the server by IP and by `localhost`;
    /// one trusting another CA is refused.
    #[tokio::test]
    async fn generated_chain_verifies_for_the_ip_and_dns_names() {
        let tls = TlsMaterial::generate().expect("certificates");
        assert!(tls.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tls.acceptor();
        let server = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(s).await {
                        let _ = s.write_all(b"hello").await;
                        let _ = s.shutdown().await;
                    }
                });
            }
        });
        let connect = |config: rustls::ClientConfig, name: ServerName<'static>| async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let mut s = connector.connect(name, tcp).await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let ip = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let host = ServerName::try_from("localhost").expect("name");
        let other = ServerName::try_from("example.com").expect("name");
        let cc = || tls.client_config().expect("client config");
        assert_eq!(connect(cc(), ip.clone()).await.expect("by IP"), b"hello");
        assert_eq!(connect(cc(), host).await.expect("by name"), b"hello");
        assert!(
            connect(cc(), other).await.is_err(),
            "a name not in the SANs"
        );
        let stranger = TlsMaterial::generate().expect("other CA");
        assert!(
            connect(stranger.client_config().expect("config"), ip)
                .await
                .is_err(),
            "a client trusting another CA"
        );
        server.abort();
    }

    /// What a plain-HTTP `GET /version` reads back (whatever arrives before the server closes).
    async fn plain_get_version(addr: std::net::SocketAddr) -> Vec<u8> {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        tcp.write_all(b"GET /version HTTP/1.0\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf).await;
        buf
    }

    /// The simulator serves HTTPS with its CA in the kubeconfig by default, plain HTTP on request.
    #[tokio::test]
    async fn sim_serves_https_by_default_and_http_when_asked() {
        let sim = crate::Sim::start(crate::SimConfig {
            dataplane: false,
            ..Default::default()
        })
        .await
        .expect("sim");
        assert!(sim.url().starts_with("https://127.0.0.1:"));
        let kc = sim.kubeconfig_yaml();
        assert!(kc.contains("certificate-authority-data: "), "{kc}");
        assert!(kc.contains("token: sim-admin"), "{kc}");
        // A plain-HTTP request to the HTTPS port gets no HTTP answer.
        let buf = plain_get_version(sim.addr()).await;
        assert!(
            !buf.starts_with(b"HTTP/"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        sim.shutdown().await;

        let sim = crate::Sim::start(crate::SimConfig {
            dataplane: false,
            insecure_http: true,
            ..Default::default()
        })
        .await
        .expect("sim");
        assert!(sim.url().starts_with("http://127.0.0.1:"));
        assert!(sim.ca_pem().is_none());
        assert!(!sim.kubeconfig_yaml().contains("certificate-authority-data"));
        let buf = plain_get_version(sim.addr()).await;
        assert!(
            buf.starts_with(b"HTTP/1.0 200"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        sim.shutdown().await;
    }
}
