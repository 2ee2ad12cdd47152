//! The RabbitMQ side of the preflight: the connection (TLS), the server's version, the exchanges
//! and queues the plans name, and whether every routing key they will publish reaches a queue.

use sqlx::PgPool;

use crate::engine::broker::{self, Amqp, Broker};
use crate::engine::error::BrokerError;
use crate::engine::management::{self, Management};
use crate::engine::redact::{redact_url, scrub};
use crate::engine::routing;

use super::check::Check;
use super::preflight::{DoctorPlan, Preflight};

pub async fn checks(preflight: &Preflight, pool: Option<&PgPool>) -> Vec<Check> {
    let url = &preflight.amqp_url;
    let mut out = Vec::new();
    // A target that names no broker, for plans that need none: nothing to check there.
    let needs_broker = preflight
        .plans
        .iter()
        .any(|p| p.compiled.as_ref().is_ok_and(|c| c.needs_broker));
    if url.is_empty() && !needs_broker {
        out.push(Check::skipped(
            "rabbitmq",
            "this target names no broker, and no plan given needs one",
        ));
        return out;
    }
    let mut amqp = match Amqp::connect(url).await {
        Ok(amqp) => {
            out.push(Check::pass(
                "rabbitmq",
                format!("connected to {}", redact_url(url)),
            ));
            amqp
        }
        Err(e) => {
            out.push(Check::fail(
                "rabbitmq",
                scrub(&e.to_string(), url),
                "check the host, port, user, password and virtual host of `--amqp-url` (AMQP_URL)",
            ));
            for name in ["exchanges and queues", "routing"] {
                out.push(Check::skipped(name, "RabbitMQ is not reachable"));
            }
            return out;
        }
    };
    out.push(
        match url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("amqps://"))
        {
            true => Check::pass("rabbitmq tls", "amqps (TLS)"),
            false => Check::warn(
                "rabbitmq tls",
                "the connection is not encrypted (`amqp://`)",
                "use an `amqps://` URL where the broker offers TLS",
            ),
        },
    );
    let api = Management::new(url, preflight.management_url.as_deref());
    let version = match &api {
        Ok(api) => api.version().await.map_err(|e| scrub(&e.to_string(), url)),
        Err(e) => Err(e.clone()),
    };
    let api = match (api, version) {
        (Ok(api), Ok(version)) => {
            out.push(Check::pass(
                "management api",
                format!("reachable at {}", api.url()),
            ));
            out.push(Check::pass("rabbitmq version", version));
            Some(api)
        }
        (_, Err(e)) | (Err(e), Ok(_)) => {
            out.push(Check::warn(
                "management api",
                format!("{e}; the server's version and routing are not checked"),
                management::ENABLE,
            ));
            None
        }
    };
    out.extend(object_checks(&mut amqp, preflight).await);
    out.extend(routing_checks(api.as_ref(), preflight, pool).await);
    amqp.close().await;
    out
}

/// Every exchange and queue the plans name (the target's exchange without plans), passively.
async fn object_checks(amqp: &mut Amqp, preflight: &Preflight) -> Vec<Check> {
    let mut exchanges = Vec::new();
    let mut queues = Vec::new();
    for p in &preflight.plans {
        let (e, q) = broker::named_objects(&p.raw);
        exchanges.extend(e);
        queues.extend(q);
    }
    if preflight.plans.is_empty() {
        exchanges = preflight
            .targets()
            .into_iter()
            .map(|t| t.exchange)
            .collect();
    }
    exchanges.sort();
    exchanges.dedup();
    queues.sort();
    queues.dedup();
    let mut out = Vec::new();
    for exchange in exchanges {
        let name = format!("exchange {exchange}");
        out.push(match amqp.check_exchange(&exchange).await {
            Ok(()) => Check::pass(name, "exists"),
            Err(BrokerError::NoExchange { .. }) => Check::fail(
                name,
                format!("exchange `{exchange}` does not exist"),
                format!(
                    "declare it (`rabbitmqadmin declare exchange name={exchange} type=topic durable=true`), or correct `target.exchange` or the step's `exchange`"
                ),
            ),
            Err(e) => Check::fail(name, e.to_string(), "see the error"),
        });
    }
    for queue in queues {
        let name = format!("queue {queue}");
        out.push(match amqp.queue_depth(&queue).await {
            Ok(Some(depth)) => Check::pass(name, format!("exists ({depth} messages)")),
            Ok(None) => Check::fail(
                name,
                format!("queue `{queue}` does not exist"),
                "declare and bind it (the consumer usually does), or correct the queue's name in the plan",
            ),
            Err(e) => Check::fail(name, e.to_string(), "see the error"),
        });
    }
    out
}

/// One row per plan that publishes: every key it will publish reaches a queue.
async fn routing_checks(
    api: Option<&Management>,
    preflight: &Preflight,
    pool: Option<&PgPool>,
) -> Vec<Check> {
    let publishing: Vec<&DoctorPlan> = preflight
        .plans
        .iter()
        .filter(|p| !broker::named_objects(&p.raw).0.is_empty())
        .collect();
    if publishing.is_empty() {
        return Vec::new();
    }
    let Some(api) = api else {
        return vec![Check::warn(
            "routing",
            "not checked: the management API is not reachable",
            management::ENABLE,
        )];
    };
    let mut out = Vec::new();
    for p in publishing {
        let name = format!("routing {}", p.raw.name);
        let plan = match &p.compiled {
            Ok(plan) => plan,
            Err(e) => {
                out.push(Check::warn(
                    name,
                    format!("not checked: {e}"),
                    "give the plan's parameters with `--param NAME=VALUE`",
                ));
                continue;
            }
        };
        let types = match pool {
            Some(pool) => routing::selection_types(pool, plan).await,
            None => {
                out.push(Check::skipped(name, "PostgreSQL is not reachable"));
                continue;
            }
        };
        let types = match types {
            Ok(t) => t,
            Err(e) => {
                // The privilege rows say which grant is missing.
                out.push(Check::warn(
                    name,
                    format!("not checked: {e}"),
                    "see the privilege checks",
                ));
                continue;
            }
        };
        let planned = routing::planned(plan, &types);
        out.push(match routing::judge(api, &planned).await {
            Err(e) => Check::warn(
                name,
                format!("not checked: {}", scrub(&e.to_string(), &preflight.amqp_url)),
                management::ENABLE,
            ),
            Ok(verdict) if !verdict.unroutable.is_empty() => {
                let keys: Vec<String> = verdict
                    .unroutable
                    .iter()
                    .map(|(step, exchange, key)| {
                        format!("`{key}` on exchange `{exchange}` (step `{step}`)")
                    })
                    .collect();
                let (_, exchange, key) = &verdict.unroutable[0];
                Check::fail(
                    name,
                    format!("routing key(s) that reach no queue: {}", keys.join(", ")),
                    format!(
                        "bind a queue to the exchange with a matching pattern (e.g. `rabbitmqadmin declare binding source={exchange} destination=QUEUE routing_key={key}`), or correct the step's `routing_key`"
                    ),
                )
            }
            Ok(verdict) if !verdict.not_checked.is_empty() => Check::warn(
                name,
                format!("not checked: {}", verdict.not_checked.join("; ")),
                "check the bindings by hand",
            ),
            Ok(verdict) => {
                let keys: std::collections::BTreeSet<&str> =
                    verdict.routed.iter().map(|(_, _, k)| k.as_str()).collect();
                let keys: Vec<&str> = keys.into_iter().collect();
                Check::pass(
                    name,
                    match keys.is_empty() {
                        true => "the selection is empty: nothing to publish".to_string(),
                        false => format!("every key reaches a queue: {}", keys.join(", ")),
                    },
                )
            }
        });
    }
    out
}
