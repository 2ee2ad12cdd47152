//! The side effects each Habitat event type has on the domain tables, as the reference worker applies them.
//!
//! Inserting handlers (`allocation.calculated`, `payment.initiated`) are deliberately not
//! idempotent on their own: applied twice they hit the primary key, exactly the
//! "replay causes constraint violations" failure of the runbook. Only the
//! `processed_events` idempotency key protects them, which is what replays must respect.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::event_type::EventType;

/// Why a handler did not apply its side effects.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandlerError {
    /// The event cannot be applied as it is (missing field, unknown entity, unknown type).
    #[error("{0}")]
    Rejected(String),
    /// A statement failed; a database error (constraint, deadlock) is the event's failure,
    /// anything else (lost connection) is the worker's.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl HandlerError {
    /// The `error_message` to record, or `None` when the failure is not the event's fault
    /// and the whole delivery must be retried instead.
    pub(crate) fn event_message(&self) -> Option<String> {
        match self {
            HandlerError::Rejected(message) => Some(message.clone()),
            HandlerError::Database(error) => error.as_database_error().map(|e| e.message().into()),
        }
    }
}

/// Applies the side effects of one event, inside the caller's transaction.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    event_type: &str,
    payload: &Value,
) -> Result<(), HandlerError> {
    let Some(kind) = EventType::parse(event_type) else {
        return Err(HandlerError::Rejected(format!(
            "no handler for event type `{event_type}`"
        )));
    };
    match kind {
        EventType::ContributionSubmitted => {
            // The API writes the contribution before emitting the event; the handler only
            // makes sure it exists, so a hand-published submission is not lost.
            sqlx::query(
                "INSERT INTO contributions (id, member_id, period_id, type, amount, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5::numeric, 'pending', now()) ON CONFLICT (id) DO NOTHING",
            )
            .bind(uuid(payload, "contribution_id")?)
            .bind(optional_uuid(payload, "member_id")?)
            .bind(optional_uuid(payload, "period_id")?)
            .bind(text(payload, "type"))
            .bind(text(payload, "amount"))
            .execute(&mut *conn)
            .await?;
        }
        EventType::ContributionApproved | EventType::ContributionRejected => {
            let status = if kind == EventType::ContributionApproved {
                "approved"
            } else {
                "rejected"
            };
            let id = uuid(payload, "contribution_id")?;
            let updated = sqlx::query("UPDATE contributions SET status = $2 WHERE id = $1")
                .bind(id)
                .bind(status)
                .execute(&mut *conn)
                .await?;
            found(updated.rows_affected(), "contribution", id)?;
        }
        EventType::PeriodOpened => {
            sqlx::query(
                "INSERT INTO allocation_periods (id, status, start_date, end_date) \
                 VALUES ($1, 'open', $2::date, $3::date) ON CONFLICT (id) DO NOTHING",
            )
            .bind(uuid(payload, "period_id")?)
            .bind(text(payload, "start_date"))
            .bind(text(payload, "end_date"))
            .execute(&mut *conn)
            .await?;
        }
        EventType::PeriodClosed => {
            let id = uuid(payload, "period_id")?;
            let updated = sqlx::query(
                "UPDATE allocation_periods SET status = 'closed', closed_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
            found(updated.rows_affected(), "period", id)?;
            // The runbook's "replay period close" marks the period's allocations `pending`
            // before publishing `period.close`; closing settles them again.
            sqlx::query(
                "UPDATE allocations SET status = 'calculated' \
                 WHERE period_id = $1 AND status = 'pending'",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        EventType::AllocationCalculated => {
            let period = uuid(payload, "period_id")?;
            let member = uuid(payload, "member_id")?;
            // The runbook's `allocation.calculate` command carries neither id nor amount: the id
            // then follows from the (period, member) pair and the amount from the approved
            // contributions, so repeating the command collides instead of double-allocating.
            sqlx::query(
                "INSERT INTO allocations (id, period_id, member_id, amount, status) \
                 SELECT COALESCE($1, md5($2::text || ':' || $3::text)::uuid), $2, $3, \
                     COALESCE($4::numeric, (SELECT COALESCE(sum(amount), 0) FROM contributions \
                         WHERE member_id = $3 AND period_id = $2 AND status = 'approved')), \
                     'calculated'",
            )
            .bind(optional_uuid(payload, "allocation_id")?)
            .bind(period)
            .bind(member)
            .bind(text(payload, "amount"))
            .execute(&mut *conn)
            .await?;
        }
        EventType::AllocationDistributed => {
            let id = uuid(payload, "allocation_id")?;
            let updated =
                sqlx::query("UPDATE allocations SET status = 'distributed' WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            found(updated.rows_affected(), "allocation", id)?;
        }
        EventType::PaymentInitiated => {
            sqlx::query(
                "INSERT INTO payments (id, allocation_id, amount, status) \
                 VALUES ($1, $2, $3::numeric, 'initiated')",
            )
            .bind(uuid(payload, "payment_id")?)
            .bind(uuid(payload, "allocation_id")?)
            .bind(text(payload, "amount"))
            .execute(&mut *conn)
            .await?;
        }
        EventType::PaymentCompleted => {
            let id = uuid(payload, "payment_id")?;
            let updated = sqlx::query("UPDATE payments SET status = 'completed' WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            found(updated.rows_affected(), "payment", id)?;
        }
    }
    Ok(())
}

fn found(rows: u64, what: &str, id: Uuid) -> Result<(), HandlerError> {
    if rows == 0 {
        return Err(HandlerError::Rejected(format!("{what} `{id}` not found")));
    }
    Ok(())
}

/// A scalar payload field as text (numbers keep their JSON spelling), for casting in SQL.
fn text(payload: &Value, field: &str) -> Option<String> {
    match payload.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn optional_uuid(payload: &Value, field: &str) -> Result<Option<Uuid>, HandlerError> {
    text(payload, field)
        .map(|s| {
            Uuid::parse_str(&s).map_err(|_| {
                HandlerError::Rejected(format!("payload field `{field}` is not a uuid: `{s}`"))
            })
        })
        .transpose()
}

fn uuid(payload: &Value, field: &str) -> Result<Uuid, HandlerError> {
    optional_uuid(payload, field)?
        .ok_or_else(|| HandlerError::Rejected(format!("payload has no `{field}`")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{HandlerError, text, uuid};

    fn case(payload: serde_json::Value, expected: Result<&str, &str>) {
        let got = uuid(&payload, "allocation_id")
            .map(|u| u.to_string())
            .map_err(|e| match e {
                HandlerError::Rejected(m) => m,
                HandlerError::Database(e) => e.to_string(),
            });
        assert_eq!(
            got.as_deref().map_err(String::as_str),
            expected,
            "{payload}"
        );
    }

    #[test]
    fn reads_uuid_fields() {
        let id = "123e4567-e89b-12d3-a456-426614174000";
        case(json!({ "allocation_id": id }), Ok(id));
        case(json!({}), Err("payload has no `allocation_id`"));
        case(
            json!({ "allocation_id": "nope" }),
            Err("payload field `allocation_id` is not a uuid: `nope`"),
        );
    }

    #[test]
    fn keeps_number_spelling() {
        assert_eq!(
            text(&json!({ "amount": 100 }), "amount").as_deref(),
            Some("100")
        );
        assert_eq!(
            text(&json!({ "amount": 12.5 }), "amount").as_deref(),
            Some("12.5")
        );
        assert_eq!(text(&json!({ "amount": null }), "amount"), None);
    }
}
