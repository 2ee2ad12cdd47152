//! Rendering a publish step's messages. The common templates (`{{ event.event_type }}`,
//! `{{ json event.payload }}`, `{{ event.event_id }}`) take a direct path; others render from the
//! plan's templates, compiled once with the plan, in strict mode.

use serde_json::{Value, json};

use crate::engine::broker::OutgoingMessage;
use crate::plan::Plan;
use crate::plan::model::PublishStep;
use crate::plan::template::{self, MessageField, Templates};

/// How one field of a message is produced.
enum Field {
    EventType,
    EventId,
    /// The stored payload, as JSON text.
    Payload,
    /// A template of the plan, by its name in the plan's registry.
    Template(String),
}

impl Field {
    fn classify(name: String, text: &str) -> Field {
        let inner = text
            .trim()
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .map(str::trim);
        let inner: Option<String> =
            inner.map(|i| i.split_whitespace().collect::<Vec<_>>().join(" "));
        match inner.as_deref() {
            Some("event.event_type") => Field::EventType,
            Some("event.event_id") => Field::EventId,
            Some("json event.payload") => Field::Payload,
            _ => Field::Template(name),
        }
    }
}

/// One selected event as the selection holds it.
pub struct EventRow {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    /// JSON text of the payload.
    pub payload: Option<String>,
}

pub struct Renderer {
    templates: Templates,
    data: Value,
    needs_data: bool,
    exchange: String,
    routing_key: Field,
    payload: Field,
    message_id: Field,
    headers: Vec<(String, Field)>,
}

impl Renderer {
    pub fn new(
        plan: &Plan,
        step: &PublishStep,
        run_id: uuid::Uuid,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Renderer, String> {
        let field = |field: MessageField<'_>, text: &str| -> Result<Field, String> {
            // The canary records the plan's steps under ids of its own.
            let name = template::name(crate::engine::canary::plan_step_id(&step.id), field);
            if !plan.templates.has(&name) {
                return Err(format!(
                    "template `{name}` was not compiled with the plan (a bug in replay)"
                ));
            }
            Ok(Field::classify(name, text))
        };
        let routing_key = field(MessageField::RoutingKey, &step.routing_key)?;
        let payload = field(MessageField::Payload, &step.payload)?;
        let message_id = field(MessageField::MessageId, step.message_id_template())?;
        let headers = step
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), field(MessageField::Header(k), v)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let needs_data = [&routing_key, &payload, &message_id]
            .into_iter()
            .chain(headers.iter().map(|(_, f)| f))
            .any(|f| matches!(f, Field::Template(_)));
        Ok(Renderer {
            templates: plan.templates.clone(),
            data: json!({
                "params": plan.params_json(),
                "run": { "id": run_id.to_string(), "started_at": started_at.to_rfc3339() },
                "plan": { "name": plan.raw.name, "hash": plan.hash },
                "step": { "id": step.id },
                "event": Value::Null,
            }),
            needs_data,
            exchange: step
                .exchange
                .clone()
                .unwrap_or_else(|| plan.raw.target.exchange.clone()),
            routing_key,
            payload,
            message_id,
            headers,
        })
    }

    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The message for one event (or, with `None`, the single message of an `each: once` step).
    pub fn render(&mut self, event: Option<&EventRow>) -> Result<OutgoingMessage, String> {
        if self.needs_data {
            self.data["event"] = match event {
                Some(e) => json!({
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "payload": e.payload.as_deref().map_or(Ok(Value::Null), serde_json::from_str)
                        .map_err(|err| format!("stored payload is not JSON: {err}"))?,
                }),
                None => Value::Null,
            };
        }
        let field = |f: &Field| -> Result<String, String> {
            match (f, event) {
                (Field::EventType, Some(e)) => Ok(e.event_type.clone()),
                (Field::EventId, Some(e)) => Ok(e.event_id.clone()),
                (Field::Payload, Some(e)) => Ok(e.payload.clone().unwrap_or_else(|| "null".into())),
                (Field::Template(name), _) => self
                    .templates
                    .render(name, &self.data)
                    .map_err(|err| format!("cannot render `{name}`: {err}")),
                (_, None) => Err("`event` is not available in an `each: once` step".into()),
            }
        };
        Ok(OutgoingMessage {
            seq: event.map_or(1, |e| e.seq),
            exchange: self.exchange.clone(),
            routing_key: field(&self.routing_key)?,
            message_id: field(&self.message_id)?,
            headers: self
                .headers
                .iter()
                .map(|(k, f)| Ok((k.clone(), field(f)?)))
                .collect::<Result<_, String>>()?,
            body: field(&self.payload)?,
        })
    }
}
