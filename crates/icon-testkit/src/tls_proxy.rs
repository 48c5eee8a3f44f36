//! TEST ONLY: TLS in front of the local PostgreSQL and RabbitMQ, which speak plain TCP, so that
//! tests can prove ICON's TLS settings against the real servers.
//!
//! - [`TestCa`]: a throwaway certificate authority, made fresh per test with rcgen (on `ring`);
//!   its certificate goes to a temporary PEM file for `sslrootcert` / `cacertfile`.
//! - [`TlsTerminator`]: a listener on 127.0.0.1 that takes the client's TLS session and relays
//!   the plaintext to the real server. For PostgreSQL it first answers the 8-byte `SSLRequest`
//!   with `S` (or `N`: a server without TLS). It counts the TLS sessions it completed, so a test
//!   can tell that connections really went through it.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// PostgreSQL's `SSLRequest` code (protocol 1234.5679), after the length 8.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A certificate authority for one test; its PEM file is removed on drop.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
    ca_file: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("ICON test CA {name} (test only)"),
        );
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let dir =
            std::env::temp_dir().join(format!("icon-test-ca-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("CA dir");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).expect("write CA file");
        Self {
            issuer,
            dir,
            ca_file,
        }
    }

    /// The CA certificate's PEM file.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A server configuration whose certificate, signed by this CA, names `names` (host names
    /// or IP addresses).
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("server params");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = ServerConfig::builder_with_provider(icon_runtime::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(config)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    Postgres,
    Amqp,
}

/// A TLS terminator on 127.0.0.1; stops accepting when dropped.
pub struct TlsTerminator {
    port: u16,
    sessions: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl TlsTerminator {
    /// PostgreSQL behind TLS: `SSLRequest` answered `S`, then TLS. A client that does not ask
    /// for TLS is hung up on, so nothing reaches the server in the clear through here.
    pub async fn postgres(tls: Arc<ServerConfig>, upstream: SocketAddr) -> Self {
        Self::start(Some(tls), Protocol::Postgres, upstream).await
    }

    /// A PostgreSQL server without TLS: `SSLRequest` answered `N`, then plain relaying.
    pub async fn postgres_without_tls(upstream: SocketAddr) -> Self {
        Self::start(None, Protocol::Postgres, upstream).await
    }

    /// RabbitMQ behind TLS (what `amqps://` expects on its port).
    pub async fn amqp(tls: Arc<ServerConfig>, upstream: SocketAddr) -> Self {
        Self::start(Some(tls), Protocol::Amqp, upstream).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// TLS sessions completed so far (handshake done, relaying to the server).
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    async fn start(
        tls: Option<Arc<ServerConfig>>,
        protocol: Protocol,
        upstream: SocketAddr,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sessions = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (count, stopped) = (sessions.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = stopped.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                let (tls, count, stopped) = (tls.clone(), count.clone(), stopped.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stopped.cancelled() => {}
                        _ = serve(client, tls, protocol, upstream, count) => {}
                    }
                });
            }
        });
        Self {
            port,
            sessions,
            stop,
        }
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(
    mut client: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    protocol: Protocol,
    upstream: SocketAddr,
    sessions: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    if let Protocol::Postgres = protocol {
        let mut request = [0u8; 8];
        client.read_exact(&mut request).await?;
        if request != SSL_REQUEST {
            return Ok(());
        }
        client
            .write_all(if tls.is_some() { b"S" } else { b"N" })
            .await?;
    }
    let mut server = TcpStream::connect(upstream).await?;
    match tls {
        Some(config) => {
            let mut client = tokio_rustls::TlsAcceptor::from(config)
                .accept(client)
                .await?;
            sessions.fetch_add(1, Ordering::SeqCst);
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        }
        None => {
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        }
    }
    Ok(())
}
