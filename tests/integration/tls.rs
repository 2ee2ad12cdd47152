//! TLS to both services: the local PostgreSQL (it runs with `ssl = on`) by libpq's URL
//! parameters, and RabbitMQ behind a TLS endpoint made here (`socat` with a certificate signed by
//! a CA generated for the test), trusted by `cacertfile` or refused.

use super::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sqlx::PgPool;

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .stdin(Stdio::null())
        .output()
        .expect("run replay")
}

fn text(out: &Output) -> String {
    output_text(out)
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A CA (`NAME-ca.pem`) and, signed by it, a certificate for `localhost` and 127.0.0.1
/// (`NAME-server.pem`, key and certificate in one file, as socat takes it).
pub(super) fn certificates(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    certificates_for(
        dir,
        name,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
}

/// A CA and a certificate it signed with these extensions (`NAME-server.pem` holds the
/// certificate and its key; `NAME.crt` and `NAME.key` apart).
fn certificates_for(
    dir: &Path,
    name: &str,
    extensions: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ca = format!("{name}-ca");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-subj",
            &format!("/CN={name} test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    )?;
    std::fs::write(dir.join(format!("{name}.ext")), extensions)?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    )?;
    let bundle = dir.join(format!("{name}-server.pem"));
    std::fs::write(
        &bundle,
        [
            std::fs::read(dir.join(format!("{name}.crt")))?,
            std::fs::read(dir.join(format!("{name}.key")))?,
        ]
        .concat(),
    )?;
    Ok((dir.join(format!("{ca}.pem")), bundle))
}

/// `socat` terminating TLS in front of the local RabbitMQ (or another local port), on a free
/// port; killed on drop.
pub(super) struct TlsEndpoint {
    child: std::process::Child,
    pub(super) port: u16,
}

impl TlsEndpoint {
    /// In front of a local port other than RabbitMQ's (an HTTP endpoint).
    pub(super) async fn in_front_of(
        server_bundle: &Path,
        target: u16,
    ) -> anyhow::Result<TlsEndpoint> {
        TlsEndpoint::listen(server_bundle, "verify=0", target).await
    }

    async fn start(server_bundle: &Path) -> anyhow::Result<TlsEndpoint> {
        TlsEndpoint::start_with(server_bundle, "verify=0").await
    }

    /// `verify` is socat's client-certificate option: `verify=0`, or `verify=1,cafile=CA`.
    async fn start_with(server_bundle: &Path, verify: &str) -> anyhow::Result<TlsEndpoint> {
        TlsEndpoint::listen(server_bundle, verify, 5672).await
    }

    async fn listen(
        server_bundle: &Path,
        verify: &str,
        target: u16,
    ) -> anyhow::Result<TlsEndpoint> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,{verify},cert={}",
                server_bundle.display()
            ))
            .arg(format!("TCP:127.0.0.1:{target}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let endpoint = TlsEndpoint { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "socat did not listen on port {port} within 10 s"
            );
            tokio::task::yield_now().await;
        }
        Ok(endpoint)
    }
}

impl Drop for TlsEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn world(pool: &PgPool) -> anyhow::Result<()> {
    failed_tenth(pool, 200).await
}

/// Messages in a queue, by passive declare.
async fn depth(channel: &lapin::Channel, queue: &str) -> anyhow::Result<u32> {
    Ok(channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?
        .message_count())
}

/// The server's own certificate (self-signed, for `localhost`), to trust it as its CA.
async fn server_certificate(pool: &PgPool) -> anyhow::Result<String> {
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(pool).await?;
    anyhow::ensure!(ssl == "on", "the local PostgreSQL must run with `ssl = on`");
    Ok(sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(pool)
        .await?)
}

#[sqlx::test(migrations = false)]
async fn postgres_tls_follows_libpq_parameters_and_is_shown(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let localhost = url.replace("@127.0.0.1", "@localhost");
    let server_cert = server_certificate(&pool).await?;
    let dir = tempfile::tempdir()?;

    for (query, shown) in [
        ("sslmode=require", "encrypted (TLSv1."),
        ("sslmode=disable", "NOT encrypted"),
    ] {
        let out = replay(&["status", "--database-url", &format!("{url}?{query}")]);
        assert!(out.status.success(), "{query}: {}", text(&out));
        assert!(text(&out).contains(shown), "{query}: {}", text(&out));
    }
    // libpq's environment: `PGSSLMODE` when the URL says nothing.
    for (mode, shown) in [
        ("disable", "NOT encrypted"),
        ("require", "encrypted (TLSv1."),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_replay"))
            .args(["status", "--database-url", &url])
            .env("PGSSLMODE", mode)
            .env_remove("PGSSLROOTCERT")
            .output()?;
        assert!(out.status.success(), "{mode}: {}", text(&out));
        assert!(
            text(&out).contains(shown),
            "PGSSLMODE={mode}: {}",
            text(&out)
        );
    }
    // verify-full: trusted by its CA file, for the name on the certificate.
    let trusted = format!("{localhost}?sslmode=verify-full&sslrootcert={server_cert}");
    let out = replay(&["status", "--database-url", &trusted]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("encrypted (TLSv1."), "{}", text(&out));
    // Refused: a name the certificate does not carry. (An unknown CA cannot be shown against
    // this server: its self-signed certificate sits in the system's store, which sqlx trusts
    // besides `sslrootcert`; the broker's test below refuses one.)
    let out = replay(&[
        "status",
        "--database-url",
        &format!("{url}?sslmode=verify-full&sslrootcert={server_cert}"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not valid for name \"127.0.0.1\""),
        "{}",
        text(&out)
    );

    // A run over verify-full says so in its report, and pg_dump takes the same settings (libpq
    // refuses verify-full without a root certificate, so the dump shows it got them).
    let plan = dir.path().join("plan.yaml");
    let dumps = dir.path().join("dumps");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: tls-reset\nreason: \"reset the failed events over TLS\"\nselect: {{ status: [error] }}\nbackup: {{ tables: [{{ table: processed_events }}], pg_dump: {{ directory: \"{}\" }} }}\nsteps:\n  - {{ id: reset, kind: reset }}\n",
            dumps.display()
        ),
    )?;
    // `replay doctor` sees it before the run does.
    let out = replay(&[
        "doctor",
        plan.to_str().unwrap_or_default(),
        "--database-url",
        &format!("{localhost}?sslmode=verify-full"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("pg_dump cannot dump over the run's URL"),
        "{}",
        text(&out)
    );
    let out = replay(&[
        "doctor",
        plan.to_str().unwrap_or_default(),
        "--database-url",
        &trusted,
    ]);
    assert!(
        text(&out)
            .lines()
            .any(|l| l.starts_with("pass") && l.contains("pg_dump connects")),
        "{}",
        text(&out)
    );
    // Without the root certificate in the URL, sqlx still connects (the system's store trusts
    // this server), but pg_dump (libpq) refuses verify-full: it got the URL's settings.
    let out = replay(&[
        "apply",
        plan.to_str().unwrap_or_default(),
        "--yes",
        "--database-url",
        &format!("{localhost}?sslmode=verify-full"),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("pg_dump failed"), "{}", text(&out));
    assert!(text(&out).contains("root certificate"), "{}", text(&out));
    let out = replay(&[
        "apply",
        plan.to_str().unwrap_or_default(),
        "--yes",
        "--database-url",
        &trusted,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("connections: database encrypted (TLSv1."),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_dir(&dumps)?.count(), 1);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn amqps_trusts_its_cacertfile_and_refuses_an_unknown_ca(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let (ca, server) = certificates(dir.path(), "broker")?;
    let (other_ca, _) = certificates(dir.path(), "other")?;
    let endpoint = TlsEndpoint::start(&server).await?;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (exchange, queue) = (format!("test-tls-{suffix}"), format!("test-tls-{suffix}"));
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    let amqps = |ca: &Path| {
        format!(
            "amqps://guest:guest@localhost:{}/%2f?cacertfile={}",
            endpoint.port,
            ca.display()
        )
    };
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: tls-publish\nreason: \"republish the failed events over TLS\"\nselect: {{ status: [error] }}\ntarget: {{ exchange: {exchange} }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    )?;
    let plan = plan.to_str().unwrap_or_default();
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(&pool)
            .await?;

    // An unknown CA: refused at once (exit 4, not retried as a passing fault), nothing published.
    let out = replay(&[
        "apply",
        plan,
        "--yes",
        "--database-url",
        &url,
        "--amqp-url",
        &amqps(&other_ca),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("invalid peer certificate"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("guest:guest"), "{}", text(&out));
    let messages = depth(&channel, &queue).await?;
    assert_eq!(messages, 0);

    // A CA file that is not there: said, naming the file, and nothing published.
    let out = replay(&[
        "apply",
        plan,
        "--yes",
        "--database-url",
        &url,
        "--amqp-url",
        &amqps(Path::new("/nonexistent/ca.pem")),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("cannot read the CA file `/nonexistent/ca.pem`"),
        "{}",
        text(&out)
    );

    // Its own CA: every event published through TLS, and the report says the link is encrypted.
    let out = replay(&[
        "apply",
        plan,
        "--yes",
        "--database-url",
        &url,
        "--amqp-url",
        &amqps(&ca),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("broker encrypted (TLS)"),
        "{}",
        text(&out)
    );
    let messages = depth(&channel, &queue).await?;
    assert_eq!(i64::from(messages), failed);
    // `inspect` reads queue depths over the same TLS settings.
    let out = replay(&[
        "inspect",
        "--database-url",
        &url,
        "--amqp-url",
        &amqps(&ca),
        "--queue",
        &queue,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&queue), "{}", text(&out));
    let _ = channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn amqps_sends_the_name_asked_for_and_a_client_certificate(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // A broker certificate for `mq.test` only: reached at 127.0.0.1, it matches only when the
    // handshake asks for `mq.test`.
    let (ca, server) = certificates_for(
        dir.path(),
        "named",
        "subjectAltName=DNS:mq.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    // Client certificates from a CA of their own, which the endpoint requires.
    let (client_ca, _) = certificates_for(
        dir.path(),
        "client",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )?;
    let endpoint =
        TlsEndpoint::start_with(&server, &format!("verify=1,cafile={}", client_ca.display()))
            .await?;
    let queue = format!("test-tls-sni-{}", uuid::Uuid::new_v4().simple());
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    let base = format!(
        "amqps://guest:guest@127.0.0.1:{}/%2f?cacertfile={}",
        endpoint.port,
        ca.display()
    );
    let client = format!(
        "&certfile={}&keyfile={}",
        dir.path().join("client.crt").display(),
        dir.path().join("client.key").display()
    );
    let inspect = |amqp: String| {
        replay(&[
            "inspect",
            "--status",
            "error",
            "--queue",
            &queue,
            "--database-url",
            &url,
            "--amqp-url",
            &amqp,
        ])
    };
    // The host's name is not on the certificate: refused.
    let out = inspect(format!("{base}{client}"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("invalid peer certificate"),
        "{}",
        text(&out)
    );
    // The name asked for is, but no client certificate: the endpoint refuses.
    let out = inspect(format!("{base}&server_name_indication=mq.test"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Both: the queue's depth is read through TLS.
    let out = inspect(format!("{base}&server_name_indication=mq.test{client}"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{queue}  0 message(s)")),
        "{}",
        text(&out)
    );
    let _ = channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
