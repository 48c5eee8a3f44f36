//! TLS to PostgreSQL: `ICON_DATABASE_URL` read the way libpq reads it, `sslmode` and
//! `sslrootcert` included, and the rustls connector every PostgreSQL connection of ICON uses
//! (the pool, the outbox relay's `LISTEN` connection, the database creation at first start).
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` but neither `verify-ca`/`verify-full`
//! nor `sslrootcert`, so both are taken out of the URL here and turned into a rustls
//! configuration; the rest of the URL goes to tokio-postgres unchanged.
//!
//! | `sslmode`        | TLS                    | certificate checked                          |
//! |------------------|------------------------|----------------------------------------------|
//! | absent, `disable`| never                  | -                                            |
//! | `prefer`         | if the server offers it| no                                           |
//! | `require`        | always                 | chain only if `sslrootcert` is given         |
//! | `verify-ca`      | always                 | chain                                        |
//! | `verify-full`    | always                 | chain and host name                          |
//!
//! Absent means plain, unlike libpq's `prefer`: encryption that nobody checked protects against
//! less than it seems to, so ICON asks for it to be spelled out. Without `sslrootcert` (or with
//! `sslrootcert=system`), chains are checked against Mozilla's public CAs.

use icon_runtime::tls::{client_config, redact_url, Roots, Verify};
use icon_runtime::SettingsError;
use percent_encoding::percent_decode_str;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Connection, Socket};

/// A parsed `ICON_DATABASE_URL`: where to connect and how to secure it. Holding one means the
/// URL parsed and its CA file was read.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: Config,
    tls: PgTls,
}

impl std::fmt::Debug for DatabaseUrl {
    // Config's own Debug redacts the password; the TLS configuration says nothing useful.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("config", &self.config)
            .field("tls", &self.tls.0.is_some())
            .finish()
    }
}

impl DatabaseUrl {
    /// Parses a `postgres://` URL (or tokio-postgres's `key=value` form, without the TLS
    /// parameters tokio-postgres does not know). The error does not repeat the URL, which may
    /// hold a password; callers prefix the variable's name.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, mode, root) = take_tls_params(url)?;
        let mut config =
            Config::from_str(&rest).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        let roots = match root.as_deref() {
            None | Some("system") => Roots::Public,
            Some(path) => Roots::File(path.into()),
        };
        let (ssl_mode, verify) = match mode.as_deref() {
            None => (config.get_ssl_mode(), None),
            Some("disable") => (SslMode::Disable, None),
            Some("prefer") => (SslMode::Prefer, Some(Verify::Nothing)),
            Some("require") if root.is_some() => (SslMode::Require, Some(Verify::Chain)),
            Some("require") => (SslMode::Require, Some(Verify::Nothing)),
            Some("verify-ca") => (SslMode::Require, Some(Verify::Chain)),
            Some("verify-full") => (SslMode::Require, Some(Verify::Full)),
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not supported: use disable, prefer, require, verify-ca \
                     or verify-full"
                ))
            }
        };
        // Absent from the URL: plain, rather than tokio-postgres's default `prefer`.
        let (ssl_mode, verify) = match (mode.is_none(), ssl_mode) {
            (true, SslMode::Prefer) => (SslMode::Disable, None),
            (true, SslMode::Require) => (SslMode::Require, Some(Verify::Nothing)),
            _ => (ssl_mode, verify),
        };
        config.ssl_mode(ssl_mode);
        let tls = match verify {
            None => PgTls(None),
            Some(verify) => PgTls(Some(client_config(&roots, verify).map_err(|e| {
                format!("sslrootcert={}: {e}", root.as_deref().unwrap_or("system"))
            })?)),
        };
        Ok(Self { config, tls })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The connector to hand tokio-postgres or deadpool.
    pub fn tls(&self) -> PgTls {
        self.tls.clone()
    }

    /// One connection outside the pool (the relay's `LISTEN`), secured like the pool's.
    pub async fn connect(
        &self,
    ) -> Result<(Client, Connection<Socket, PgTlsStream>), tokio_postgres::Error> {
        self.config.connect(self.tls()).await
    }
}

/// For a service's settings: `url` unchanged if [`DatabaseUrl::parse`] accepts it, so that a
/// bad `sslmode` or a missing CA file stops the start with the variable's name (and without
/// the password).
pub fn check(url: String) -> Result<String, SettingsError> {
    match DatabaseUrl::parse(&url) {
        Ok(_) => Ok(url),
        Err(reason) => Err(SettingsError {
            var: "ICON_DATABASE_URL",
            value: redact_url(&url),
            reason,
        }),
    }
}

/// Splits `sslmode` and `sslrootcert` off the query of a URL, keeping the other parameters as
/// they were written.
fn take_tls_params(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = || {
            percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("{key} is not UTF-8 once percent-decoded"))
        };
        match key {
            "sslmode" => mode = Some(decode()?),
            "sslrootcert" => root = Some(decode()?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root))
}

/// The rustls connector for tokio-postgres; `None` when the URL asked for no TLS.
#[derive(Clone)]
pub struct PgTls(Option<Arc<ClientConfig>>);

impl MakeTlsConnect<Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        // The name is checked when TLS is really attempted: a Unix socket path is no DNS name,
        // and a plain connection never needs one.
        Ok(PgTlsConnect {
            config: self.0.clone(),
            domain: domain.to_owned(),
        })
    }
}

/// One connection's TLS handshake, made by [`PgTls`] for the host tokio-postgres is about to
/// connect to.
pub struct PgTlsConnect {
    config: Option<Arc<ClientConfig>>,
    domain: String,
}

impl TlsConnect<Socket> for PgTlsConnect {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self.config.ok_or_else(|| {
                io::Error::other("TLS was not configured (ICON_DATABASE_URL has no sslmode)")
            })?;
            let name = ServerName::try_from(self.domain.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a host name TLS can check", self.domain),
                )
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            Ok(PgTlsStream(Box::new(tls)))
        })
    }
}

/// A TLS session with PostgreSQL.
pub struct PgTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl tokio_postgres::tls::TlsStream for PgTlsStream {
    /// No channel binding: `tls-server-end-point` hashes the certificate with its signature's
    /// hash, which would mean parsing X.509 here. SCRAM still works; it is just not bound to
    /// this TLS session, which `verify-full` makes up for.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u:p@db:5432/icon?application_name=a%20b&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db:5432/icon?application_name=a%20b&connect_timeout=3"
        );
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn no_sslmode_means_plain() {
        let url = DatabaseUrl::parse("postgres://postgres@127.0.0.1:5432/icon").unwrap();
        assert_eq!(url.config().get_ssl_mode(), SslMode::Disable);
        assert!(url.tls.0.is_none());
    }

    #[test]
    fn every_libpq_mode_but_allow_is_understood() {
        for (mode, ssl) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::Require),
            ("verify-full", SslMode::Require),
        ] {
            let url = DatabaseUrl::parse(&format!("postgres://h/icon?sslmode={mode}")).unwrap();
            assert_eq!(url.config().get_ssl_mode(), ssl, "{mode}");
        }
        let err = DatabaseUrl::parse("postgres://h/icon?sslmode=allow").unwrap_err();
        assert!(err.contains("sslmode=allow is not supported"), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = DatabaseUrl::parse(
            "postgres://u:secret@h/icon?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err();
        assert!(
            err.starts_with("sslrootcert=/nonexistent/ca.pem: "),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }
}
