//! The RabbitMQ management HTTP API: what AMQP cannot tell (the server's version, an exchange's
//! bindings). Reached at `--management-url`, by default the AMQP host on port 15672, with the
//! AMQP URL's credentials.

use std::time::Duration;

use serde::Deserialize;

use crate::engine::redact::{percent_decode, redact_url};

/// How to enable the API on a broker where it is off.
pub const ENABLE: &str = "enable it with `rabbitmq-plugins enable rabbitmq_management` (no restart needed) and give `--management-url` when it is not on the AMQP host's port 15672";

/// A client of one broker's management API, for one virtual host.
pub struct Management {
    client: reqwest::Client,
    /// `http://host:15672`, without credentials or a trailing slash.
    base: String,
    user: String,
    password: String,
    /// The virtual host, percent-encoded for a path segment.
    vhost: String,
}

/// Why the API gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error("the management API at {url} is not reachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("the management API at {url} answered {status}")]
    Status { url: String, status: u16 },
}

/// One binding of an exchange, as the API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Binding {
    pub destination: String,
    pub destination_type: String,
    pub routing_key: String,
}

/// An exchange's type and its alternate exchange, if any.
#[derive(Debug, Clone)]
pub struct ExchangeInfo {
    pub kind: String,
    pub alternate: Option<String>,
}

impl Management {
    /// The API of the broker `amqp_url` names: at `management_url` when given, else on the AMQP
    /// host's port 15672 (`https` on 15671 for `amqps`). Credentials are the AMQP URL's (`guest` when it
    /// has none).
    pub fn new(amqp_url: &str, management_url: Option<&str>) -> Result<Management, String> {
        let (scheme, rest) = amqp_url
            .split_once("://")
            .ok_or_else(|| format!("`{}` is not an AMQP URL", redact_url(amqp_url)))?;
        let (authority, path) = crate::engine::redact::split_authority(rest);
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (percent_decode(u), percent_decode(p)),
            None if userinfo.is_empty() => ("guest".into(), "guest".into()),
            None => (percent_decode(userinfo), String::new()),
        };
        let host = match hostport.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => hostport,
        };
        let vhost = path.trim_start_matches('/').split('?').next().unwrap_or("");
        let vhost = match vhost {
            "" => "%2F".to_string(),
            v => encode(&percent_decode(v)),
        };
        let base = match management_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                // RabbitMQ's management listener: 15672 plain, 15671 with TLS.
                match scheme.eq_ignore_ascii_case("amqps") {
                    true => format!("https://{host}:15671"),
                    false => format!("http://{host}:15672"),
                }
            }
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10));
        // The same TLS options as the AMQP URL: its CA file and client certificate.
        if let Ok(url) = crate::engine::amqp_url::AmqpUrl::parse(amqp_url)
            && let Some(tls) = url.tls()
        {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
            };
            if let Some(ca) = &tls.ca_file {
                for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)
                    .map_err(|e| format!("`{}` is not PEM certificates: {e}", ca.display()))?
                {
                    builder = builder.add_root_certificate(cert);
                }
            }
            if let Some((cert, key)) = &tls.client {
                let pem = [read(cert)?, read(key)?].concat();
                builder =
                    builder.identity(reqwest::Identity::from_pem(&pem).map_err(|e| {
                        format!("the client certificate or key cannot be used: {e}")
                    })?);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Management {
            client,
            base,
            user,
            password,
            vhost,
        })
    }

    /// Where the API is, without credentials.
    pub fn url(&self) -> String {
        redact_url(&self.base)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ManagementError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: reqwest::Error| ManagementError::Unreachable {
            url: self.url(),
            message: crate::engine::redact::scrub(&without_url(&e), &self.base),
        };
        let response = self
            .client
            .get(&url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(unreachable)?;
        match response.status().as_u16() {
            404 => Ok(None),
            200..=299 => response.json().await.map(Some).map_err(unreachable),
            status => Err(ManagementError::Status {
                url: self.url(),
                status,
            }),
        }
    }

    /// The broker's version (`rabbitmq_version` of `/api/overview`).
    pub async fn version(&self) -> Result<String, ManagementError> {
        #[derive(Deserialize)]
        struct Overview {
            rabbitmq_version: Option<String>,
        }
        let overview: Option<Overview> = self.get("/api/overview").await?;
        Ok(overview
            .and_then(|o| o.rabbitmq_version)
            .unwrap_or_else(|| "unknown".into()))
    }

    /// An exchange's type and alternate exchange; `None` when it does not exist.
    pub async fn exchange(&self, name: &str) -> Result<Option<ExchangeInfo>, ManagementError> {
        #[derive(Deserialize)]
        struct Exchange {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            arguments: serde_json::Map<String, serde_json::Value>,
        }
        let path = format!("/api/exchanges/{}/{}", self.vhost, encode(name));
        let exchange: Option<Exchange> = self.get(&path).await?;
        Ok(exchange.map(|e| ExchangeInfo {
            kind: e.kind,
            alternate: e
                .arguments
                .get("alternate-exchange")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        }))
    }

    /// The bindings whose source is the exchange.
    pub async fn bindings(&self, exchange: &str) -> Result<Vec<Binding>, ManagementError> {
        let path = format!(
            "/api/exchanges/{}/{}/bindings/source",
            self.vhost,
            encode(exchange)
        );
        Ok(self.get(&path).await?.unwrap_or_default())
    }
}

/// reqwest's message without the URL it repeats (which would carry nothing secret, but is long).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_is_found_from_the_amqp_url() {
        let cases = [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                None,
                "http://127.0.0.1:15672",
                "%2F",
            ),
            (
                "amqps://u:p%40ss@mq.example:5671/prod",
                None,
                "https://mq.example:15671",
                "prod",
            ),
            (
                "amqp://mq.example",
                Some("https://admin.example/"),
                "https://admin.example",
                "%2F",
            ),
        ];
        for (amqp, given, base, vhost) in cases {
            let m = Management::new(amqp, given).unwrap();
            assert_eq!((m.base.as_str(), m.vhost.as_str()), (base, vhost), "{amqp}");
        }
        let m = Management::new("amqps://u:p%40ss@mq.example:5671/prod", None).unwrap();
        assert_eq!((m.user.as_str(), m.password.as_str()), ("u", "p@ss"));
    }
}
