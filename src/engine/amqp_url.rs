//! The broker's address: `amqp://` or `amqps://`, with the TLS query parameters of the RabbitMQ
//! URI spec (`cacertfile`, `certfile`, `keyfile`, `verify`, `server_name_indication`), and the
//! one way `replay` opens a connection to it.

use std::path::PathBuf;

use lapin::tcp::{AsyncTcpStream, RustlsConnectorConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};

use super::error::BrokerError;
use super::redact::redact_url;

/// A parsed broker URL: what lapin needs, and the TLS settings it cannot express.
#[derive(Debug, Clone)]
pub struct AmqpUrl {
    uri: AMQPUri,
    /// The URL as given, only for messages (always shown redacted).
    text: String,
    tls: Option<TlsOptions>,
}

/// TLS settings of an `amqps://` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificates trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and its PKCS#8 key, for brokers that ask for one.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name asked for in the handshake and checked against the certificate (the host by default).
    pub server_name: Option<String>,
}

/// The TLS query parameters; any other parameter is lapin's (`heartbeat`, `frame_max`, …).
const TLS_PARAMS: [&str; 5] = [
    "cacertfile",
    "certfile",
    "keyfile",
    "verify",
    "server_name_indication",
];

impl AmqpUrl {
    pub fn parse(url: &str) -> Result<AmqpUrl, BrokerError> {
        let bad = |why: String| BrokerError::BadUrl {
            url: redact_url(url),
            why,
        };
        if !url.contains("://") {
            return Err(bad(
                "expected amqp://user:password@host:port/vhost or amqps://…".into(),
            ));
        }
        // lapin's own error would repeat the whole URL, password included.
        let uri: AMQPUri = url.parse().map_err(|_| {
            bad("expected amqp://user:password@host:port/vhost or amqps://…".into())
        })?;
        let params: Vec<(String, String)> = url
            .split_once('?')
            .map(|(_, q)| {
                q.split('&')
                    .filter_map(|p| p.split_once('='))
                    .filter(|(k, _)| TLS_PARAMS.contains(k))
                    .map(|(k, v)| (k.to_string(), super::redact::percent_decode(v)))
                    .collect()
            })
            .unwrap_or_default();
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let tls = match uri.scheme {
            AMQPScheme::AMQP => {
                if let Some((key, _)) = params.first() {
                    return Err(bad(format!(
                        "`{key}` is a TLS parameter, but the URL is `amqp://`: use `amqps://`"
                    )));
                }
                None
            }
            AMQPScheme::AMQPS => {
                match get("verify").as_deref() {
                    None | Some("verify_peer") => {}
                    Some("verify_none") => {
                        return Err(bad(
                            "`verify=verify_none` is refused: replay always checks \
                             the broker's certificate; give its CA with `cacertfile=PATH`"
                                .into(),
                        ));
                    }
                    Some(other) => {
                        return Err(bad(format!(
                            "`verify={other}` is not `verify_peer` or `verify_none`"
                        )));
                    }
                }
                let client = match (get("certfile"), get("keyfile")) {
                    (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(bad("`certfile` needs its `keyfile`".into()));
                    }
                    (None, Some(_)) => {
                        return Err(bad("`keyfile` needs its `certfile`".into()));
                    }
                };
                Some(TlsOptions {
                    ca_file: get("cacertfile").map(PathBuf::from),
                    client,
                    server_name: get("server_name_indication"),
                })
            }
        };
        Ok(AmqpUrl {
            uri,
            text: url.to_string(),
            tls,
        })
    }

    /// Whether the connection is encrypted (`amqps://`).
    pub fn encrypted(&self) -> bool {
        self.tls.is_some()
    }

    pub fn tls(&self) -> Option<&TlsOptions> {
        self.tls.as_ref()
    }

    /// `host:port` of the broker.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.uri.authority.host, self.uri.authority.port)
    }

    /// Opens a connection: plain TCP, or TLS checked against the system's CAs and `cacertfile`.
    pub async fn connect(&self) -> Result<Connection, BrokerError> {
        let failed = |source| BrokerError::Connect {
            url: redact_url(&self.text),
            source,
        };
        let runtime = lapin::runtime::default_runtime().map_err(failed)?;
        let connector = match &self.tls {
            Some(tls) => Some(std::sync::Arc::new(tls_connector(tls).map_err(|why| {
                BrokerError::Tls {
                    url: redact_url(&self.text),
                    why,
                }
            })?)),
            None => None,
        };
        let server_name = self
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .unwrap_or_else(|| self.uri.authority.host.clone());
        Connection::connector(
            self.uri.clone(),
            runtime,
            async move |uri: AMQPUri, runtime| {
                let addrs =
                    runtime.to_socket_addrs((uri.authority.host.clone(), uri.authority.port));
                let stream = AsyncTcpStream::connect(&runtime, addrs)
                    .await
                    .map_err(lapin::Error::from)?;
                match &connector {
                    Some(connector) => stream
                        .into_rustls(connector, &server_name)
                        .await
                        .map_err(lapin::Error::from),
                    None => Ok(stream),
                }
            },
            ConnectionProperties::default(),
        )
        .await
        .map_err(failed)
    }
}

/// The TLS connector: the system's CAs plus `cacertfile`, and the client certificate if any.
fn tls_connector(tls: &TlsOptions) -> Result<lapin::tcp::RustlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read the {what} `{}`: {e}", path.display()))
    };
    let certs = |bytes: &[u8], path: &PathBuf| {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("`{}` is not PEM certificates: {e}", path.display()))?;
        match certs.is_empty() {
            true => Err(format!("`{}` holds no PEM certificate", path.display())),
            false => Ok(certs),
        }
    };
    let mut config = RustlsConnectorConfig::new_with_native_certs()
        .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?;
    if let Some(path) = &tls.ca_file {
        config.add_parsable_certificates(certs(&read(path, "CA file")?, path)?);
    }
    match &tls.client {
        Some((cert, key)) => {
            let chain = certs(&read(cert, "client certificate")?, cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read(key, "client key")?)
                .map_err(|e| format!("`{}` is not a PEM private key: {e}", key.display()))?;
            config
                .connector_with_single_cert(chain, key)
                .map_err(|e| format!("the client certificate and key do not match: {e}"))
        }
        None => config
            .connector_with_no_client_auth()
            .map_err(|e| format!("cannot set up TLS: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(url: &str) -> String {
        match AmqpUrl::parse(url) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("`{url}` was accepted"),
        }
    }

    #[test]
    fn tls_parameters_are_read_from_amqps_urls() {
        let url = AmqpUrl::parse(
            "amqps://u:secret@broker:5671/%2f?cacertfile=/ca%20dir/ca.pem&certfile=/c.pem&keyfile=/k.pem&verify=verify_peer&server_name_indication=mq.example&heartbeat=10",
        )
        .unwrap();
        assert!(url.encrypted());
        assert_eq!(url.host_port(), "broker:5671");
        assert_eq!(
            url.tls(),
            Some(&TlsOptions {
                ca_file: Some("/ca dir/ca.pem".into()),
                client: Some(("/c.pem".into(), "/k.pem".into())),
                server_name: Some("mq.example".into()),
            })
        );
        let plain = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert!(!plain.encrypted());
        assert_eq!(plain.host_port(), "127.0.0.1:5672");
    }

    #[test]
    fn unsafe_or_incomplete_tls_settings_are_refused_without_the_password() {
        let cases = [
            ("amqp://u:secret@h/%2f?cacertfile=/ca.pem", "use `amqps://`"),
            ("amqps://u:secret@h/%2f?verify=verify_none", "always checks"),
            ("amqps://u:secret@h/%2f?verify=maybe", "`verify=maybe`"),
            (
                "amqps://u:secret@h/%2f?certfile=/c.pem",
                "needs its `keyfile`",
            ),
            (
                "amqps://u:secret@h/%2f?keyfile=/k.pem",
                "needs its `certfile`",
            ),
            ("u:secret@h", "expected amqp://"),
        ];
        for (url, expected) in cases {
            let message = refusal(url);
            assert!(message.contains(expected), "{url}: {message}");
            assert!(!message.contains("secret"), "{url}: {message}");
        }
    }
}
