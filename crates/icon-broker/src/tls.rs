//! TLS to RabbitMQ: `amqps://` URLs, the server's certificate checked (chain and host name)
//! against Mozilla's public CAs, or against the CAs of the file named by the URL's
//! `cacertfile` query parameter (the name RabbitMQ's own URI spec gives it).
//!
//! lapin's TLS features would bring their own stack (rustls-connector, and PKCS#12 support with
//! a second crypto library), so ICON gives lapin an already secured stream instead: lapin
//! opens its socket through an `async_rs` runtime, and [`TlsReactor`] is the tokio one with
//! a stream type that may be a rustls session made by tokio-rustls on the workspace's `ring`.

use async_compat::Compat;
use async_rs::traits::Reactor;
use async_rs::util::RuntimeParts;
use async_rs::{Runtime, Tokio};
use futures_util::Stream;
use icon_runtime::tls::{client_config, redact_url, Roots, Verify};
use icon_runtime::SettingsError;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{AsyncTcpStream, Connection, ConnectionProperties};
use percent_encoding::percent_decode_str;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A parsed `ICON_AMQP_URL`. Holding one means the URL parsed and, for `amqps://`, its CA file
/// was read.
#[derive(Clone)]
pub struct AmqpUrl {
    uri: AMQPUri,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl AmqpUrl {
    /// The error does not repeat the URL, which holds a password; callers prefix the variable.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: AMQPUri = url.parse().map_err(|e| format!("not an AMQP URL: {e}"))?;
        let cacertfile = query_param(url, "cacertfile")?;
        let tls = match uri.scheme {
            AMQPScheme::AMQP if cacertfile.is_some() => {
                return Err("cacertfile is for amqps:// URLs; this one is plain amqp://".into())
            }
            AMQPScheme::AMQP => None,
            AMQPScheme::AMQPS => {
                let roots = match &cacertfile {
                    Some(path) => Roots::File(path.into()),
                    None => Roots::Public,
                };
                let config =
                    client_config(&roots, Verify::Full).map_err(|e| match &cacertfile {
                        Some(path) => format!("cacertfile={path}: {e}"),
                        None => e,
                    })?;
                let name = ServerName::try_from(uri.authority.host.clone()).map_err(|_| {
                    format!("{} is not a host name TLS can check", uri.authority.host)
                })?;
                Some((config, name))
            }
        };
        Ok(Self { uri, tls })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection: lapin's own for `amqp://`, through a rustls session for `amqps://`.
    pub async fn connect(&self, props: ConnectionProperties) -> lapin::Result<Connection> {
        let Some((config, name)) = self.tls.clone() else {
            return Connection::connect_uri(self.uri.clone(), props).await;
        };
        let runtime = Runtime::new(RuntimeParts::new(Tokio::current(), TlsReactor::current()));
        let connect = async move |uri: AMQPUri,
                                  _: Runtime<RuntimeParts<Tokio, TlsReactor>>|
                    -> lapin::Result<AsyncTcpStream<AmqpStream>> {
            let tcp = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await?;
            Ok(AsyncTcpStream::Plain(Compat::new(Session::Tls(Box::new(
                tls,
            )))))
        };
        Connection::connector(self.uri.clone(), runtime, connect, props).await
    }
}

/// For a service's settings: `url` unchanged if [`AmqpUrl::parse`] accepts it, so that a bad
/// URL or a missing CA file stops the start with the variable's name (and without the password).
pub fn check(url: String) -> Result<String, SettingsError> {
    match AmqpUrl::parse(&url) {
        Ok(_) => Ok(url),
        Err(reason) => Err(SettingsError {
            var: "ICON_AMQP_URL",
            value: redact_url(&url),
            reason,
        }),
    }
}

fn query_param(url: &str, name: &str) -> Result<Option<String>, String> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(None);
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').filter(|(k, _)| *k == name))
        .map(|(_, v)| {
            percent_decode_str(v)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("{name} is not UTF-8 once percent-decoded"))
        })
        .next()
        .transpose()
}

/// What lapin reads and writes: a rustls session, or (for the reactor's own `tcp_connect`,
/// which lapin does not call on this path) a plain socket.
pub enum Session {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

pub type AmqpStream = Compat<Session>;

impl AsyncRead for Session {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Session::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Session::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Session {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Session::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Session::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Session::Plain(s) => Pin::new(s).poll_flush(cx),
            Session::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Session::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Session::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// async-rs's tokio reactor, with [`AmqpStream`] as its stream type so that lapin accepts a
/// rustls session from [`AmqpUrl::connect`]'s connector. Timers and registration are tokio's.
#[derive(Clone, Debug)]
pub struct TlsReactor(Tokio);

impl TlsReactor {
    fn current() -> Self {
        Self(Tokio::current())
    }
}

impl Reactor for TlsReactor {
    type TcpStream = AmqpStream;
    type Sleep = <Tokio as Reactor>::Sleep;

    // async-rs's bound is its private `AsSysFd`, a blanket alias of these two.
    fn register<H: io::Read + io::Write + AsFd + AsRawFd + Send + 'static>(
        &self,
        socket: H,
    ) -> io::Result<impl futures_io::AsyncRead + futures_io::AsyncWrite + Send + Unpin + 'static>
    {
        self.0.register(socket)
    }

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        self.0.sleep(dur)
    }

    fn interval(&self, dur: Duration) -> impl Stream<Item = Instant> + Send + 'static {
        self.0.interval(dur)
    }

    // Not an `async fn`: the trait wants a `'static` future, which one borrowing `self` is not.
    #[allow(clippy::manual_async_fn)]
    fn tcp_connect_addr(
        &self,
        addr: SocketAddr,
    ) -> impl std::future::Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
        async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(Compat::new(Session::Plain(tcp)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_need_no_tls() {
        let url = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert!(!url.is_tls());
    }

    #[test]
    fn amqps_uses_public_roots_without_a_ca_file() {
        let url = AmqpUrl::parse("amqps://guest:guest@rabbit.example:5671/%2f").unwrap();
        assert!(url.is_tls());
    }

    #[test]
    fn a_missing_ca_file_is_named_and_the_password_is_not() {
        let err = AmqpUrl::parse(
            "amqps://guest:secret@127.0.0.1:5671/%2f?cacertfile=%2Fnonexistent%2Fca.pem",
        )
        .err()
        .unwrap();
        assert!(err.starts_with("cacertfile=/nonexistent/ca.pem: "), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn a_ca_file_on_a_plain_url_is_refused() {
        let err = AmqpUrl::parse("amqp://h/%2f?cacertfile=/ca.pem")
            .err()
            .unwrap();
        assert!(err.contains("amqps://"), "{err}");
    }
}
