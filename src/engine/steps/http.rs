//! `http`: a call to an endpoint for each selected event (or one for the run). A batch's calls
//! are made once the batch is claimed, `in_flight` at a time, and the batch is recorded once
//! every one of them came back accepted; a crash before that record makes that batch's calls
//! again, and only that batch's (one batch at a time per executor), each with its
//! `Idempotency-Key`.

use std::cell::RefCell;

use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use crate::engine::binds::audited;
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::http::{CallError, Failed, OutgoingRequest, Requests};
use crate::engine::pace::Clock;
use crate::engine::state::Checkpoint;
use crate::engine::writes::Writes;
use crate::plan::Plan;
use crate::plan::model::{HttpEach, HttpStep};
use crate::plan::template::{self, MessageField, Templates};

use super::StepContext;
use super::claimed::{self, BatchWork, Fault};
use super::render::EventRow;

#[allow(clippy::too_many_arguments)]
pub async fn run<W: Writes, H: Requests, C: Clock>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    requests: &H,
    clock: &mut C,
    step: &HttpStep,
    checkpoint: i64,
    touched: i64,
) -> Result<u64, RunError> {
    let renderer = CallRenderer::new(ctx.plan, step, ctx.run_id, ctx.started_at, requests)
        .map_err(|m| ctx.failed(&step.id, 0, m))?;
    let masked = requests.masked(&step.id);
    if step.each == HttpEach::Once {
        if checkpoint == 0 {
            let call = renderer
                .render(None)
                .map_err(|m| ctx.failed(&step.id, 0, m))?;
            requests
                .send_all(step, vec![call])
                .await
                .map_err(|f| failure(ctx, step, 0, &f, &masked))?;
        }
        let at = Checkpoint {
            checkpoint: 1,
            ..Checkpoint::finished(&step.id, 1)
        };
        ctx.checkpoint_alone(writes, at).await?;
        return Ok(1);
    }
    let total = ctx.limit as i64;
    if total == 0 || checkpoint >= total {
        let at = Checkpoint {
            checkpoint,
            ..Checkpoint::finished(&step.id, touched)
        };
        ctx.checkpoint_alone(writes, at).await?;
        return Ok(touched as u64);
    }
    let batch = i64::from(ctx.plan.raw.rate_limit.batch_size).max(1);
    match (writes.shared(), ctx.executor) {
        (Some(pool), Some(executor)) => {
            let work = Calls {
                requests,
                step,
                renderer: &renderer,
                run_id: ctx.run_id,
                selection: writes.selection_table(),
                masked: &masked,
                total: ctx.total,
                cancel: ctx.cancel.clone(),
            };
            // One batch at a time per executor: a crash makes at most that batch's calls again.
            claimed::run(ctx, &pool, executor, clock, &step.id, batch, 1, &work).await
        }
        _ => {
            let selection = writes.selection_table();
            let mut done = checkpoint;
            while done < total {
                let upto = (done + batch).min(total);
                clock.pace((upto - done) as u64).await;
                ctx.cancel.check()?;
                let failed = |e| ctx.db_failed(&step.id, done as u64, e);
                let mut tx = writes.begin().await.map_err(failed)?;
                let rows = fetch(&mut tx, selection, ctx.run_id, done, upto)
                    .await
                    .map_err(failed)?;
                let calls = rows
                    .iter()
                    .map(|row| renderer.render(Some(row)))
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(|m| ctx.failed(&step.id, done as u64, m))?;
                requests
                    .send_all(step, calls)
                    .await
                    .map_err(|f| failure(ctx, step, done, &f, &masked))?;
                let at = Checkpoint {
                    step: &step.id,
                    checkpoint: upto,
                    touched: touched - checkpoint + upto,
                    done: upto >= total,
                    wrote_rows: false,
                };
                let stop = W::checkpoint(&mut tx, ctx.run_id, ctx.lease, &at).await?;
                tx.commit()
                    .await
                    .map_err(|e| ctx.db_failed(&step.id, done as u64, e))?;
                ctx.note_stop(stop);
                done = upto;
                ctx.emit(RunEvent::Progress {
                    step: step.id.clone(),
                    done: done as u64,
                    total: total as u64,
                });
            }
            Ok((touched - checkpoint + total) as u64)
        }
    }
}

/// A call that failed for good: a status the step does not accept fails the step (the plan's
/// rollback runs); an endpoint that cannot be reached is a passing fault, retried from the
/// checkpoint; a refused certificate stops the run, resumable once fixed.
fn failure(
    ctx: &StepContext<'_>,
    step: &HttpStep,
    done: i64,
    failed: &Failed,
    masked: &[String],
) -> RunError {
    let message = failed.describe(masked);
    match &failed.error {
        CallError::Rejected { .. } | CallError::Invalid { .. } => {
            ctx.failed(&step.id, done as u64, message)
        }
        CallError::Unreachable { .. } | CallError::Certificate { .. } => RunError::Http {
            step: step.id.clone(),
            done: done as u64,
            total: ctx.total,
            message,
            transient: matches!(failed.error, CallError::Unreachable { .. }),
        },
    }
}

/// One claimed batch's calls.
struct Calls<'a, H> {
    requests: &'a H,
    step: &'a HttpStep,
    renderer: &'a CallRenderer,
    run_id: uuid::Uuid,
    selection: &'static str,
    masked: &'a [String],
    total: u64,
    /// A stop, a signal, a guard or a lost lease: no more calls of the batch are made (it is not
    /// recorded, so its calls are made again, with their keys, by whoever does it next).
    cancel: super::Cancel,
}

impl<H: Requests> BatchWork for Calls<'_, H> {
    async fn run(&self, _conn: &mut PgConnection, from: i64, upto: i64) -> Result<i64, Fault> {
        // Not reached: the calls are made outside the batch's transaction.
        Ok(upto - from)
    }

    async fn outside(&self, pool: &PgPool, from: i64, upto: i64) -> Result<Option<i64>, Fault> {
        let mut conn = pool.acquire().await.map_err(Fault::Db)?;
        let rows = fetch(&mut conn, self.selection, self.run_id, from, upto)
            .await
            .map_err(Fault::Db)?;
        drop(conn);
        let calls = rows
            .iter()
            .map(|row| self.renderer.render(Some(row)))
            .collect::<Result<Vec<_>, String>>()
            .map_err(Fault::Plan)?;
        let cancel = self.cancel.clone();
        let stopped = async move {
            while !cancel.is_cancelled() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        let sent = tokio::select! {
            sent = self.requests.send_all(self.step, calls) => sent,
            () = stopped => return Err(Fault::Run(RunError::Interrupted)),
        };
        match sent {
            Ok(()) => Ok(Some(upto - from)),
            Err(failed) => {
                let message = failed.describe(self.masked);
                Err(match failed.error {
                    CallError::Rejected { .. } | CallError::Invalid { .. } => Fault::Plan(message),
                    CallError::Unreachable { .. } | CallError::Certificate { .. } => {
                        Fault::Run(RunError::Http {
                            step: self.step.id.clone(),
                            done: from as u64,
                            total: self.total,
                            message,
                            transient: matches!(failed.error, CallError::Unreachable { .. }),
                        })
                    }
                })
            }
        }
    }
}

/// One batch of the frozen selection, in order.
async fn fetch(
    conn: &mut PgConnection,
    selection: &str,
    run_id: uuid::Uuid,
    after: i64,
    upto: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    let rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(audited(&format!(
        "SELECT seq, event_id, event_type, payload::text FROM {selection} \
         WHERE run_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
    )))
    .bind(run_id)
    .bind(after)
    .bind(upto)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, event_id, event_type, payload)| EventRow {
            seq,
            event_id,
            event_type,
            payload,
        })
        .collect())
}

/// How one field of a call is produced.
enum Field {
    /// Reads no `event.*`: rendered once, when the step starts (a URL, an `Authorization`).
    Fixed(String),
    /// Exactly `{{ event.event_id }}` (the default `Idempotency-Key`).
    EventId,
    /// A template of the plan, by its name in the plan's registry, rendered per event.
    PerEvent(String),
}

/// Renders an http step's calls from the plan's compiled templates: what reads no event once,
/// the rest per event (the stored payload is parsed only when a template reads it).
pub struct CallRenderer {
    templates: Templates,
    data: RefCell<Value>,
    step: String,
    method: &'static str,
    url: Field,
    body: Option<Field>,
    idempotency_key: Field,
    headers: Vec<(String, Field)>,
    /// A per-event template reads `event.payload`.
    reads_payload: bool,
}

impl CallRenderer {
    pub fn new<H: Requests>(
        plan: &Plan,
        step: &HttpStep,
        run_id: uuid::Uuid,
        started_at: chrono::DateTime<chrono::Utc>,
        requests: &H,
    ) -> Result<CallRenderer, String> {
        let data = json!({
            "params": plan.params_json(),
            "run": { "id": run_id.to_string(), "started_at": started_at.to_rfc3339() },
            "plan": { "name": plan.raw.name, "hash": plan.hash },
            "step": { "id": step.id },
            "secrets": requests.secrets(&step.id),
            "event": Value::Null,
        });
        let mut reads_payload = false;
        let mut field = |field: MessageField<'_>, text: &str| -> Result<Field, String> {
            // The canary records the plan's steps under ids of its own.
            let name = template::name(crate::engine::canary::plan_step_id(&step.id), field);
            if !plan.templates.has(&name) {
                return Err(format!(
                    "template `{name}` was not compiled with the plan (a bug in replay)"
                ));
            }
            let variables = template::analyze(text)?.variables;
            if text.split_whitespace().collect::<String>() == "{{event.event_id}}" {
                return Ok(Field::EventId);
            }
            if !variables
                .iter()
                .any(|v| v == "event" || v.starts_with("event."))
            {
                let fixed = plan
                    .templates
                    .render(&name, &data)
                    .map_err(|err| format!("cannot render `{name}`: {err}"))?;
                return Ok(Field::Fixed(fixed));
            }
            reads_payload |= variables
                .iter()
                .any(|v| v == "event" || v.starts_with("event.payload"));
            Ok(Field::PerEvent(name))
        };
        let url = field(MessageField::Url, &step.url)?;
        let body = step
            .body
            .as_deref()
            .map(|b| field(MessageField::Body, b))
            .transpose()?;
        let idempotency_key = field(
            MessageField::IdempotencyKey,
            step.idempotency_key_template(),
        )?;
        let headers = step
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), field(MessageField::Header(k), v)?)))
            .collect::<Result<_, String>>()?;
        Ok(CallRenderer {
            templates: plan.templates.clone(),
            data: RefCell::new(data),
            step: step.id.clone(),
            method: step.method.as_str(),
            url,
            body,
            idempotency_key,
            headers,
            reads_payload,
        })
    }

    /// The call for one event (or, with `None`, the single call of an `each: once` step).
    pub fn render(&self, event: Option<&EventRow>) -> Result<OutgoingRequest, String> {
        let mut data = self.data.borrow_mut();
        if let Some(e) = event {
            let payload = match self.reads_payload {
                true => e
                    .payload
                    .as_deref()
                    .map_or(Ok(Value::Null), serde_json::from_str)
                    .map_err(|err| {
                        format!("event `{}`: stored payload is not JSON: {err}", e.event_id)
                    })?,
                false => Value::Null,
            };
            data["event"] = json!({
                "event_id": e.event_id,
                "event_type": e.event_type,
                "payload": payload,
            });
        }
        let render = |f: &Field| -> Result<String, String> {
            match (f, event) {
                (Field::Fixed(text), _) => Ok(text.clone()),
                (Field::EventId, Some(e)) => Ok(e.event_id.clone()),
                (Field::EventId, None) => {
                    Err("`event` is not available in an `each: once` step".into())
                }
                (Field::PerEvent(name), _) => {
                    self.templates
                        .render(name, &data)
                        .map_err(|err| match event {
                            Some(e) => {
                                format!("event `{}`: cannot render `{name}`: {err}", e.event_id)
                            }
                            None => format!("cannot render `{name}`: {err}"),
                        })
                }
            }
        };
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, f)| Ok((k.clone(), render(f)?)))
            .collect::<Result<_, String>>()?;
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
        {
            headers.push(("Idempotency-Key".into(), render(&self.idempotency_key)?));
        }
        Ok(OutgoingRequest {
            event: event.map(|e| e.event_id.clone()),
            step: self.step.clone(),
            method: self.method.into(),
            url: render(&self.url)?,
            headers,
            body: self.body.as_ref().map(render).transpose()?,
        })
    }
}
