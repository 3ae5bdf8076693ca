//! Connecting to the broker, one way for every binary: the URL is parsed
//! once and only ever shown redacted (no password, no query), and
//! `amqps://` gets the operator's CA and client certificate (rustls).

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

/// TLS options for `amqps://` URLs.
#[derive(Clone, Debug, Default, Args)]
pub struct TlsArgs {
    /// PEM file of the CA certificate(s) the broker's certificate is checked
    /// against, besides the system's (amqps:// only).
    #[arg(long, env = "MMT_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// PEM file of this client's certificate chain, for a broker that asks
    /// for one; goes with --tls-key.
    #[arg(long, env = "MMT_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or
    /// SEC1).
    #[arg(long, env = "MMT_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Why the broker could not be reached. The text never holds the URL's
/// password or query.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse (lapin's own message quotes it: not kept).
    #[error("broker URL {url} is not a valid AMQP URL")]
    BadUrl {
        /// The URL, redacted.
        url: String,
    },
    /// A TLS file cannot be read.
    #[error("cannot read the TLS {what} file {}", path.display())]
    TlsFile {
        /// `CA`, `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS options were given for a plain `amqp://` URL.
    #[error("TLS options were given but the broker URL {url} is not amqps://")]
    TlsWithoutAmqps {
        /// The URL, redacted.
        url: String,
    },
    /// The connection (TCP, TLS handshake or AMQP login) failed.
    #[error("cannot connect to the broker at {url}")]
    Connect {
        /// The URL, redacted.
        url: String,
        /// Why.
        #[source]
        source: LinkError,
    },
}

/// lapin's error, shown by its own text alone: that text already names the
/// cause lapin also reports as its source, which would print it twice.
#[derive(Debug)]
pub struct LinkError(pub lapin::Error);

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LinkError {}

/// `url` without its password and query, for logs and errors:
/// `amqp://guest:***@127.0.0.1:5672/%2f`.
pub fn redact(url: &str) -> String {
    let unreadable = || "<a URL that does not parse>".to_owned();
    let Ok(parsed) = url::Url::parse(url) else {
        return unreadable();
    };
    // `amqp:user:password@host` has no authority: all of it is the path.
    if parsed.cannot_be_a_base() || parsed.host_str().is_none() {
        return unreadable();
    }
    let mut out = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() {
        out.push_str(parsed.username());
        if parsed.password().is_some() {
            out.push_str(":***");
        }
        out.push('@');
    }
    if let Some(host) = parsed.host_str() {
        out.push_str(host);
    }
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(parsed.path());
    if parsed.query().is_some() {
        out.push_str("?…");
    }
    out
}

/// A broker to connect to, and reconnect to: the parsed URL and the TLS
/// material, read once. Its `Debug` shows the redacted URL only.
#[derive(Clone)]
pub struct Broker {
    uri: AMQPUri,
    tls: OwnedTLSConfig,
    shown: String,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::TlsFile {
        what,
        path: path.to_owned(),
        source,
    })
}

impl Broker {
    /// Parses `url` and reads the TLS files `tls` names.
    pub fn new(url: &str, tls: &TlsArgs) -> Result<Self, ConnectError> {
        let shown = redact(url);
        let uri: AMQPUri = url
            .parse()
            .map_err(|_: String| ConnectError::BadUrl { url: shown.clone() })?;
        let wants_tls = tls.tls_ca.is_some() || tls.tls_cert.is_some();
        if wants_tls
            && !url
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("amqps://")
        {
            return Err(ConnectError::TlsWithoutAmqps { url: shown });
        }
        let cert_chain = match &tls.tls_ca {
            Some(path) => Some(String::from_utf8_lossy(&read("CA", path)?).into_owned()),
            None => None,
        };
        let identity = match (&tls.tls_cert, &tls.tls_key) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: read("certificate", cert)?,
                key: read("key", key)?,
            }),
            _ => None,
        };
        Ok(Self {
            uri,
            tls: OwnedTLSConfig {
                identity,
                cert_chain,
            },
            shown,
        })
    }

    /// Asks the broker for a heartbeat of `seconds` unless the URL sets one.
    pub fn with_default_heartbeat(mut self, seconds: u16) -> Self {
        if self.uri.query.heartbeat.is_none() {
            self.uri.query.heartbeat = Some(seconds);
        }
        self
    }

    /// The URL, redacted.
    pub fn redacted(&self) -> &str {
        &self.shown
    }

    /// The broker user the URL logs in as.
    pub fn username(&self) -> &str {
        &self.uri.authority.userinfo.username
    }

    /// Opens a connection named `name` (shown in the broker's management).
    pub async fn connect(&self, name: &str) -> Result<Connection, ConnectError> {
        let fail = |source| ConnectError::Connect {
            url: self.shown.clone(),
            source: LinkError(source),
        };
        let runtime = lapin::runtime::default_runtime().map_err(fail)?;
        Connection::connect_uri_with_config(
            self.uri.clone(),
            ConnectionProperties::default().with_connection_name(name.into()),
            self.tls.clone(),
            runtime,
        )
        .await
        .map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_url_has_no_password_and_no_query() {
        assert_eq!(
            redact("amqp://guest:hunter2@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("amqps://u:p%40ss@broker.example/vh?heartbeat=5&auth=sekrit"),
            "amqps://u:***@broker.example/vh?…"
        );
        assert_eq!(redact("amqp://h"), "amqp://h");
        assert_eq!(redact("not a url hunter2"), "<a URL that does not parse>");
        assert_eq!(
            redact("amqp:guest:hunter2@127.0.0.1:5672/%2f"),
            "<a URL that does not parse>"
        );
    }

    #[test]
    fn a_malformed_url_never_shows_its_password() {
        for url in [
            "amqp://guest:hunter2@127.0.0.1:notaport/%2f",
            "amqp://guest:hunter2@[::1/%2f",
            "amqp://guest:hunter2@127.0.0.1:5672/%2f?heartbeat=x",
            "amqp:guest:hunter2@127.0.0.1:5672/%2f",
        ] {
            let error = Broker::new(url, &TlsArgs::default()).unwrap_err();
            let text = format!("{error} {error:?}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn debug_shows_the_redacted_url_only() {
        let broker = Broker::new(
            "amqp://guest:hunter2@127.0.0.1:5672/%2f",
            &TlsArgs::default(),
        )
        .expect("valid");
        let text = format!("{broker:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(broker.username(), "guest");
    }

    #[test]
    fn tls_options_need_an_amqps_url() {
        let tls = TlsArgs {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..TlsArgs::default()
        };
        assert!(matches!(
            Broker::new("amqp://guest:guest@127.0.0.1/%2f", &tls),
            Err(ConnectError::TlsWithoutAmqps { .. })
        ));
        assert!(matches!(
            Broker::new("amqps://guest:guest@127.0.0.1/%2f", &tls),
            Err(ConnectError::TlsFile { what: "CA", .. })
        ));
    }
}
