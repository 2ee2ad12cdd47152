//! Publishing Habitat events to the topic exchange the way Habitat does, with publisher confirms.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
};
use serde_json::Value;

use super::error::{Context, HabitatError, short_string};

/// One event to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingEvent {
    /// Routing key and `event_type`, e.g. `payment.initiated`.
    pub event_type: String,
    /// Idempotency key, sent as the AMQP `message_id`.
    pub event_id: String,
    /// JSON body.
    pub payload: Value,
}

/// A confirmed-publish connection to the Habitat exchange.
pub struct Publisher {
    connection: Connection,
    channel: Channel,
    exchange: String,
}

impl Publisher {
    /// Connects and declares `exchange` as a durable topic exchange (what the worker expects).
    pub async fn connect(amqp_url: &str, exchange: &str) -> Result<Publisher, HabitatError> {
        let name = short_string("exchange", exchange)?;
        let (connection, channel) = open_channel(amqp_url).await?;
        declare_exchange(&channel, name, exchange).await?;
        // Confirms make "published" mean "the broker has it", so tests and benchmarks can
        // count on every event reaching the queue.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enable publisher confirms")?;
        Ok(Publisher {
            connection,
            channel,
            exchange: exchange.to_owned(),
        })
    }

    /// Publishes one persistent event and waits for the broker's confirm.
    pub async fn publish(&self, event: &OutgoingEvent) -> Result<(), HabitatError> {
        let confirm = self.send(event).await?;
        confirm
            .await
            .context(format!("confirm event `{}`", event.event_id))?;
        Ok(())
    }

    /// Publishes events back to back and then waits for all confirms, which is far faster
    /// than confirming one at a time.
    pub async fn publish_all(&self, events: &[OutgoingEvent]) -> Result<(), HabitatError> {
        let mut confirms = Vec::with_capacity(events.len());
        for event in events {
            confirms.push((event.event_id.as_str(), self.send(event).await?));
        }
        for (event_id, confirm) in confirms {
            confirm
                .await
                .context(format!("confirm event `{event_id}`"))?;
        }
        Ok(())
    }

    async fn send(&self, event: &OutgoingEvent) -> Result<PublisherConfirm, HabitatError> {
        let body = serde_json::to_vec(&event.payload).unwrap_or_default();
        let properties = BasicProperties::default()
            .with_message_id(short_string("event id", &event.event_id)?)
            .with_type(short_string("event type", &event.event_type)?)
            .with_content_type(ShortString::from("application/json"))
            // Persistent, like Habitat's own events: they must survive a broker restart.
            .with_delivery_mode(2);
        self.channel
            .basic_publish(
                short_string("exchange", &self.exchange)?,
                short_string("event type", &event.event_type)?,
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .context(format!("publish event `{}`", event.event_id))
    }

    /// Deletes `queue` and this publisher's exchange: the cleanup of a test or benchmark.
    pub async fn delete_topology(&self, queue: &str) -> Result<(), HabitatError> {
        self.channel
            .queue_delete(short_string("queue", queue)?, QueueDeleteOptions::default())
            .await
            .context(format!("delete queue `{queue}`"))?;
        self.channel
            .exchange_delete(
                short_string("exchange", &self.exchange)?,
                ExchangeDeleteOptions::default(),
            )
            .await
            .context(format!("delete exchange `{}`", self.exchange))?;
        Ok(())
    }

    /// Closes the channel and the connection.
    pub async fn close(self) -> Result<(), HabitatError> {
        self.channel
            .close(200, "publisher closed".into())
            .await
            .context("close the channel")?;
        self.connection
            .close(200, "publisher closed".into())
            .await
            .context("close the RabbitMQ connection")
    }
}

/// A connection to RabbitMQ and a channel on it.
pub(super) async fn open_channel(
    amqp_url: &str,
) -> Result<(Connection, lapin::Channel), HabitatError> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .context("connect to RabbitMQ")?;
    let channel = connection
        .create_channel()
        .await
        .context("open a channel")?;
    Ok((connection, channel))
}

/// Declares Habitat's exchange as the worker and the runbook expect it: a durable topic exchange.
pub(super) async fn declare_exchange(
    channel: &lapin::Channel,
    name: lapin::types::ShortString,
    display: &str,
) -> Result<(), HabitatError> {
    channel
        .exchange_declare(
            name,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .context(format!("declare exchange `{display}`"))
}
