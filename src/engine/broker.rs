//! Where messages go: RabbitMQ with publisher confirms, or (dry-run) a recorder that only renders them.

use std::collections::VecDeque;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use lapin::{Confirmation, PublisherConfirm};

use super::amqp_url::AmqpUrl;
use super::error::{BrokerError, amqp_code};
use super::redact::redact_url;

/// One message as it will be sent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutgoingMessage {
    /// Selection `seq` of the event (0 for a single message); checkpoints advance on its confirm.
    #[serde(skip)]
    pub seq: i64,
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// How long a publisher confirm, or any other answer, may take before the broker is considered
/// gone (a stalled proxy accepts connections and never answers).
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for a broker operation, or fails it as stalled.
async fn within<T>(
    doing: impl FnOnce() -> String,
    operation: impl std::future::Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    tokio::time::timeout(CONFIRM_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| {
            Err(BrokerError::Stalled {
                doing: doing(),
                seconds: CONFIRM_TIMEOUT.as_secs(),
            })
        })
}

/// What is kept of a message until its confirm arrives (not its body).
struct InFlight {
    seq: i64,
    message_id: String,
    exchange: String,
    routing_key: String,
}

/// A message sink with publisher confirms.
pub trait Broker {
    /// Checks that an exchange exists without creating it.
    async fn check_exchange(&mut self, exchange: &str) -> Result<(), BrokerError>;
    /// Hands a message to the broker without waiting for its confirm: the caller keeps the window.
    async fn publish(&mut self, message: OutgoingMessage) -> Result<(), BrokerError>;
    /// How far confirms reached: the `seq` of a message newly confirmed, every earlier one
    /// confirmed too (confirms are taken in publishing order). Waits for the oldest outstanding
    /// confirm when `wait`, else takes only what has arrived. `None` when nothing is outstanding
    /// (or, not waiting, when the oldest is not confirmed yet).
    async fn confirmed(&mut self, wait: bool) -> Result<Option<i64>, BrokerError>;
    /// Waits for every outstanding confirm; returns the `seq` of the last one, if any.
    async fn flush(&mut self) -> Result<Option<i64>, BrokerError>;
    /// Messages in a queue (passive declare), `None` when the queue does not exist.
    async fn queue_depth(&mut self, queue: &str) -> Result<Option<u64>, BrokerError>;
    /// Purges a queue; returns how many messages were removed.
    async fn purge(&mut self, queue: &str) -> Result<u64, BrokerError>;
}

/// RabbitMQ over AMQP 0-9-1.
pub struct Amqp {
    connection: Connection,
    channel: Channel,
    in_flight: VecDeque<(InFlight, PublisherConfirm)>,
}

impl Amqp {
    pub async fn connect(url: &str) -> Result<Amqp, BrokerError> {
        let url = AmqpUrl::parse(url)?;
        let text = redact_url(&url.host_port());
        let doing = || format!("connecting to {text}");
        let (connection, channel) = within(doing, async {
            let connection = url.connect().await?;
            let channel = connection
                .create_channel()
                .await
                .map_err(BrokerError::Channel)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(BrokerError::Channel)?;
            Ok((connection, channel))
        })
        .await?;
        Ok(Amqp {
            connection,
            channel,
            in_flight: VecDeque::new(),
        })
    }

    /// Closes politely; a connection that is already gone is not waited for.
    pub async fn close(self) {
        let closing = self.connection.close(200, "replay done".into());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), closing).await;
    }

    /// Takes the oldest outstanding confirm: waits for it when `wait`, else only if it is in.
    async fn settle(&mut self, wait: bool) -> Result<Option<i64>, BrokerError> {
        let Some((_, confirm)) = self.in_flight.front_mut() else {
            return Ok(None);
        };
        let confirm = match wait {
            // A broker that vanished may never answer; a confirm this late means the link is gone.
            true => match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                Ok(confirm) => confirm,
                Err(_) => {
                    let message = self.in_flight.pop_front().map(|(m, _)| m.message_id);
                    return Err(BrokerError::NoConfirm {
                        message_id: message.unwrap_or_default(),
                        seconds: CONFIRM_TIMEOUT.as_secs(),
                    });
                }
            },
            false => match futures_util::FutureExt::now_or_never(confirm) {
                Some(confirm) => confirm,
                None => return Ok(None),
            },
        };
        let Some((message, _)) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        match confirm {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(Some(message.seq)),
            Ok(Confirmation::Ack(Some(_))) => Err(BrokerError::Unroutable {
                message_id: message.message_id,
                exchange: message.exchange,
                routing_key: message.routing_key,
            }),
            Ok(Confirmation::Nack(_)) => Err(BrokerError::Nacked {
                message_id: message.message_id,
            }),
            Err(source) => Err(BrokerError::Lost {
                message_id: message.message_id,
                source,
            }),
        }
    }
}

impl Broker for Amqp {
    async fn check_exchange(&mut self, exchange: &str) -> Result<(), BrokerError> {
        let doing = || format!("checking exchange `{exchange}`");
        within(doing, self.probe_exchange(exchange)).await
    }

    async fn publish(&mut self, message: OutgoingMessage) -> Result<(), BrokerError> {
        self.send(message).await
    }

    async fn confirmed(&mut self, wait: bool) -> Result<Option<i64>, BrokerError> {
        self.settle(wait).await
    }

    async fn flush(&mut self) -> Result<Option<i64>, BrokerError> {
        let mut last = None;
        while let Some(seq) = self.settle(true).await? {
            last = Some(seq);
        }
        Ok(last)
    }

    async fn queue_depth(&mut self, queue: &str) -> Result<Option<u64>, BrokerError> {
        let doing = || format!("reading the depth of queue `{queue}`");
        within(doing, self.probe_queue(queue)).await
    }

    async fn purge(&mut self, queue: &str) -> Result<u64, BrokerError> {
        let doing = || format!("purging queue `{queue}`");
        within(doing, async {
            self.channel
                .queue_purge(queue.into(), QueuePurgeOptions::default())
                .await
                .map(u64::from)
                .map_err(|source| match source.is_amqp_soft_error() {
                    // The queue refused (it went away, say): the step fails.
                    true => BrokerError::Purge {
                        queue: queue.to_string(),
                        source,
                    },
                    // The link went: a passing fault, retried from the checkpoint.
                    false => BrokerError::Unreachable {
                        doing: format!("purging queue `{queue}`"),
                        source,
                    },
                })
        })
        .await
    }
}

impl Amqp {
    async fn probe_exchange(&mut self, exchange: &str) -> Result<(), BrokerError> {
        // A failed passive declare closes its channel, so it gets a channel of its own.
        let probe = self
            .connection
            .create_channel()
            .await
            .map_err(BrokerError::Channel)?;
        let result = probe
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = probe.close(200, "probe done".into()).await;
        result.map_err(
            |source| match (source.is_amqp_soft_error(), amqp_code(&source)) {
                (true, Some(404)) => BrokerError::NoExchange {
                    exchange: exchange.to_string(),
                    source,
                },
                // Refused (403), not missing: the user lacks a permission on it.
                (true, _) => BrokerError::AccessRefused {
                    what: format!("exchange `{exchange}`"),
                    source,
                },
                (false, _) => BrokerError::Unreachable {
                    doing: format!("checking exchange `{exchange}`"),
                    source,
                },
            },
        )
    }

    async fn send(&mut self, message: OutgoingMessage) -> Result<(), BrokerError> {
        let mut properties = BasicProperties::default()
            .with_message_id(ShortString::from(message.message_id.clone()))
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        // Only the headers the plan asks for: a header table on every message cost a fifth to a
        // quarter of the publishing throughput here (line 2c of the executor bench), so a run's
        // id is added only by a plan that wants it (`x-replay-run: "{{ run.id }}"`).
        if !message.headers.is_empty() {
            let mut headers = FieldTable::default();
            for (k, v) in &message.headers {
                headers.insert(k.clone().into(), AMQPValue::LongString(v.clone().into()));
            }
            properties = properties.with_headers(headers);
        }
        let publishing = self.channel.basic_publish(
            message.exchange.clone().into(),
            message.routing_key.clone().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            message.body.as_bytes(),
            properties,
        );
        let confirm = match tokio::time::timeout(CONFIRM_TIMEOUT, publishing).await {
            Ok(sent) => sent.map_err(|source| BrokerError::Lost {
                message_id: message.message_id.clone(),
                source,
            })?,
            Err(_) => {
                return Err(BrokerError::NoConfirm {
                    message_id: message.message_id,
                    seconds: CONFIRM_TIMEOUT.as_secs(),
                });
            }
        };
        let OutgoingMessage {
            seq,
            message_id,
            exchange,
            routing_key,
            ..
        } = message;
        self.in_flight.push_back((
            InFlight {
                seq,
                message_id,
                exchange,
                routing_key,
            },
            confirm,
        ));
        Ok(())
    }

    async fn probe_queue(&mut self, queue: &str) -> Result<Option<u64>, BrokerError> {
        let probe = self
            .connection
            .create_channel()
            .await
            .map_err(BrokerError::Channel)?;
        let result = probe
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match result {
            Ok(q) => {
                let _ = probe.close(200, "probe done".into()).await;
                Ok(Some(u64::from(q.message_count())))
            }
            // A missing queue is a channel-level 404; another channel-level refusal (403) is
            // not a missing queue; anything else means the link is gone.
            Err(e) if e.is_amqp_soft_error() && amqp_code(&e) == Some(404) => Ok(None),
            Err(source) if source.is_amqp_soft_error() => Err(BrokerError::AccessRefused {
                what: format!("queue `{queue}`"),
                source,
            }),
            Err(source) => Err(BrokerError::Unreachable {
                doing: format!("reading the depth of queue `{queue}`"),
                source,
            }),
        }
    }
}

/// A run whose plan needs no broker has none; a step that needs one anyway is refused.
impl<B: Broker> Broker for Option<B> {
    async fn check_exchange(&mut self, exchange: &str) -> Result<(), BrokerError> {
        match self {
            Some(b) => b.check_exchange(exchange).await,
            None => Err(BrokerError::NotConnected),
        }
    }

    async fn publish(&mut self, message: OutgoingMessage) -> Result<(), BrokerError> {
        match self {
            Some(b) => b.publish(message).await,
            None => Err(BrokerError::NotConnected),
        }
    }

    async fn confirmed(&mut self, wait: bool) -> Result<Option<i64>, BrokerError> {
        match self {
            Some(b) => b.confirmed(wait).await,
            None => Ok(None),
        }
    }

    async fn flush(&mut self) -> Result<Option<i64>, BrokerError> {
        match self {
            Some(b) => b.flush().await,
            None => Ok(None),
        }
    }

    async fn queue_depth(&mut self, queue: &str) -> Result<Option<u64>, BrokerError> {
        match self {
            Some(b) => b.queue_depth(queue).await,
            None => Err(BrokerError::NotConnected),
        }
    }

    async fn purge(&mut self, queue: &str) -> Result<u64, BrokerError> {
        match self {
            Some(b) => b.purge(queue).await,
            None => Err(BrokerError::NotConnected),
        }
    }
}

/// The broker a run needs, connected, with every exchange and queue its plan names checked;
/// none for a plan that needs no broker. Run before the first write, applied or rehearsed.
pub async fn connect_for(plan: &crate::plan::Plan, url: &str) -> Result<Option<Amqp>, BrokerError> {
    if !plan.needs_broker {
        return Ok(None);
    }
    let mut amqp = Amqp::connect(url).await?;
    check_objects(&mut amqp, plan).await?;
    Ok(Some(amqp))
}

/// Checks, passively and before the first write, that every exchange and queue the plan names
/// exists: the exchanges of its publish steps, the queues of its waits, purges and throttle.
pub async fn check_objects<B: Broker>(
    broker: &mut B,
    plan: &crate::plan::Plan,
) -> Result<(), BrokerError> {
    let (exchanges, queues) = named_objects(&plan.raw);
    for exchange in &exchanges {
        broker.check_exchange(exchange).await?;
    }
    for queue in queues {
        if broker.queue_depth(&queue).await?.is_none() {
            return Err(BrokerError::NoQueue { queue });
        }
    }
    Ok(())
}

/// The exchanges (of its publish steps) and queues (of its waits, purges, throttle and guards) a plan
/// names, each once, sorted.
pub fn named_objects(plan: &crate::plan::RawPlan) -> (Vec<String>, Vec<String>) {
    use crate::plan::model::Step;
    let mut exchanges = Vec::new();
    let mut queues = Vec::new();
    for step in &plan.steps {
        match step {
            Step::Publish(p) => {
                exchanges.push(
                    p.exchange
                        .clone()
                        .unwrap_or_else(|| plan.target.exchange.clone()),
                );
                let rate = &plan.rate_limit;
                if let (Some(_), Some(queue)) = (rate.pause_when_queue_depth_above, &rate.queue) {
                    queues.push(queue.clone());
                }
            }
            Step::Wait(w) => queues.extend(w.queue_empty.clone()),
            Step::PurgeQueue(p) => queues.push(p.queue.clone()),
            Step::Reset(_) | Step::Sql(_) | Step::Http(_) => {}
        }
    }
    queues.extend(plan.guards.iter().filter_map(|g| g.queue_depth.clone()));
    exchanges.sort();
    exchanges.dedup();
    queues.sort();
    queues.dedup();
    (exchanges, queues)
}

/// The dry-run broker: checks exchanges for real, keeps the first messages, sends nothing.
pub struct Recorder {
    amqp: Option<Amqp>,
    /// Recorded messages count as confirmed at once; the newest not yet taken.
    unconfirmed: Option<i64>,
    pub sample: Vec<OutgoingMessage>,
    pub sample_size: usize,
}

impl Recorder {
    pub fn new(amqp: Option<Amqp>, sample_size: usize) -> Self {
        Recorder {
            amqp,
            unconfirmed: None,
            sample: Vec::new(),
            sample_size,
        }
    }

    pub async fn close(self) {
        if let Some(amqp) = self.amqp {
            amqp.close().await;
        }
    }
}

impl Broker for Recorder {
    async fn check_exchange(&mut self, exchange: &str) -> Result<(), BrokerError> {
        match &mut self.amqp {
            Some(amqp) => amqp.check_exchange(exchange).await,
            None => Ok(()),
        }
    }

    async fn publish(&mut self, message: OutgoingMessage) -> Result<(), BrokerError> {
        self.unconfirmed = Some(message.seq);
        if self.sample.len() < self.sample_size {
            self.sample.push(message);
        }
        Ok(())
    }

    async fn confirmed(&mut self, _wait: bool) -> Result<Option<i64>, BrokerError> {
        Ok(self.unconfirmed.take())
    }

    async fn flush(&mut self) -> Result<Option<i64>, BrokerError> {
        Ok(self.unconfirmed.take())
    }

    async fn queue_depth(&mut self, queue: &str) -> Result<Option<u64>, BrokerError> {
        match &mut self.amqp {
            Some(amqp) => amqp.queue_depth(queue).await,
            None => Ok(None),
        }
    }

    async fn purge(&mut self, queue: &str) -> Result<u64, BrokerError> {
        Ok(self.queue_depth(queue).await?.unwrap_or(0))
    }
}
