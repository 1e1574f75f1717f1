//! The Worker's Durable Objects. Each answers the Worker's `fetch` with JSON; a failed
//! call is an error, which the Worker takes as the object being unavailable.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use worker::{
    console_log, durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue, State,
};

use super::{from_json, now_millis, post_webhook, to_json, Workers, MESSAGE_BODIES};
use crate::config::rate::RateLimit;
use crate::config::{Config, WebhookSettings};
use crate::delivery::idempotency::{self, KeyCall, KeyRecord};
use crate::delivery::queue::{self, Claimed, Record, Status};
use crate::delivery::quota::Windows;
use crate::delivery::ratelimit::Window;
use crate::delivery::record::{next_retention_run, RETENTION_BATCH};
use crate::delivery::reports::{Applied, Finding};
use crate::delivery::shard::Cursor;
use crate::delivery::stats::{self, HourCounts};
use crate::delivery::suppression::Suppression;
use crate::delivery::transaction::{Outcome, Transaction};
use crate::delivery::warm::WarmSession;
use crate::delivery::webhook::{self, Delivery, Webhook};
use crate::http;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn failure(why: impl Into<String>) -> worker::Error {
    worker::Error::RustError(why.into())
}

fn json_response(value: &impl Serialize) -> Result<Response> {
    Response::ok(to_json(value))
}

/// A JSON body the Worker sent one of its objects.
async fn json_request<T: DeserializeOwned>(request: &mut Request) -> Result<T> {
    from_json(&request.bytes().await?).map_err(failure)
}

/// The call's query argument `name` (the URL as workerd serialised it, split, not re-parsed).
fn query_arg(request: &Request, name: &str) -> Option<String> {
    let url = request.inner().url();
    let (_, query) = http::request::path_and_query(&url);
    form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// Every row `statement` gives, each as its columns.
fn rows(sql: &SqlStorage, statement: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<Vec<SqlStorageValue>>> {
    sql.exec(statement, bindings)?.raw().collect()
}

/// A column that holds a number (SQLite hands integers over as whole floats or integers).
fn number_of(value: &SqlStorageValue) -> u64 {
    match value {
        SqlStorageValue::Integer(n) => (*n).max(0) as u64,
        SqlStorageValue::Float(n) => n.max(0.0) as u64,
        _ => 0,
    }
}

/// Most webhooks one alarm run sends (each waits up to its timeout).
const WEBHOOKS_PER_RUN: usize = 20;

/// The first column of each row `statement` gives, as text (the records' JSON).
fn texts(sql: &SqlStorage, statement: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for row in sql.exec(statement, bindings)?.raw() {
        match row?.into_iter().next() {
            Some(SqlStorageValue::String(text)) => texts.push(text),
            _ => return Err(failure("a stored record that is not text")),
        }
    }
    Ok(texts)
}

fn read_stored<T: DeserializeOwned>(text: &str) -> Result<T> {
    from_json(text.as_bytes()).map_err(|e| failure(format!("a stored record does not parse: {e}")))
}

/// One per form and client (`idFromName`): a sliding window of that client's posts. It lives
/// in memory; if the object is evicted the window starts afresh, which errs toward allowing.
#[durable_object(fetch)]
pub struct RateLimiter {
    window: RefCell<Window>,
}

impl DurableObject for RateLimiter {
    fn new(_state: State, _env: Env) -> Self {
        RateLimiter { window: RefCell::new(Window::default()) }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        let param = |name: &str| query_arg(&request, name).and_then(|v| v.parse::<u32>().ok());
        let (limit, window) = (param("limit").unwrap_or(1), param("window").unwrap_or(60));
        let decision = self.window.borrow_mut().hit(now_millis(), limit, u64::from(window) * 1000);
        json_response(&decision)
    }
}

/// The relay account's quota (`SMTP_RATE`), one object per account: its counts per window, in
/// memory for the arithmetic and in storage so a restart does not hand out a fresh quota. A
/// take is one step: nothing else runs in the object between reading the counts and writing
/// them, and the answer waits for the write (the output gate).
#[durable_object(fetch)]
pub struct RelayQuota {
    state: State,
    windows: RefCell<Option<Windows>>,
}

impl DurableObject for RelayQuota {
    fn new(state: State, _env: Env) -> Self {
        RelayQuota { state, windows: RefCell::new(None) }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        let limits = query_arg(&request, "limits")
            .and_then(|text| RateLimit::parse_list(&text))
            .ok_or_else(|| failure("no limits"))?;
        if self.windows.borrow().is_none() {
            let stored = self.state.storage().get::<String>("windows").await?;
            let stored = stored.map(|text| from_json::<Windows>(text.as_bytes())).transpose().map_err(failure)?;
            let mut windows = self.windows.borrow_mut();
            if windows.is_none() {
                *windows = stored;
            }
        }
        let now = now_millis();
        let (taken, stored) = {
            let mut windows = self.windows.borrow_mut();
            let windows = windows.get_or_insert_with(Windows::default);
            let token = match request.path().as_str() {
                "/reserve" => windows.reserve(&limits, now),
                _ => windows.take(&limits, now),
            };
            (token, to_json(&*windows))
        };
        self.state.storage().put("windows", stored).await?;
        json_response(&taken)
    }
}

/// One warm SMTP session (`SMTP_SESSIONS` of these, by name): sends from every request of
/// the Worker run on it one at a time, and it closes with QUIT after `SMTP_IDLE_SECONDS`
/// unused (an alarm). workerd lets a Durable Object keep a socket between requests; an
/// evicted object loses it, and the next send simply opens a new one.
#[durable_object(alarm)]
pub struct SmtpSession {
    state: State,
    workers: Workers,
    warm: WarmSession<Workers>,
}

impl SmtpSession {
    async fn arm_idle_alarm(&self, after_ms: u64) {
        let _ = self.state.storage().set_alarm(Duration::from_millis(after_ms)).await;
    }
}

impl DurableObject for SmtpSession {
    fn new(state: State, env: Env) -> Self {
        SmtpSession { state, workers: Workers { env }, warm: WarmSession::default() }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        let bytes = request.bytes().await?;
        let transaction = Transaction::from_bytes(&bytes).ok_or_else(|| failure("not a transaction"))?;
        drop(bytes);
        // `?if_free=1`: answer `null` at once, sending nothing, while another send has the
        // session (the Worker then asks the next object).
        let if_free = query_arg(&request, "if_free").is_some();
        let outcome = match self.workers.config().as_ref() {
            Err(error) => Some(Outcome::failed(error.clone())),
            Ok(config) => {
                let (net, relay) = (&self.workers, &config.relay);
                let outcome = match if_free {
                    true => self.warm.send_if_free(net, relay, &transaction).await,
                    false => Some(self.warm.send(net, relay, &transaction).await),
                };
                if outcome.is_some() {
                    self.arm_idle_alarm(config.smtp_idle_seconds * 1000).await;
                }
                outcome
            }
        };
        json_response(&outcome)
    }

    async fn alarm(&self) -> Result<Response> {
        let idle_ms = self.workers.config().as_ref().as_ref().map(|c| c.smtp_idle_seconds).unwrap_or(30) * 1000;
        if let Some(left) = self.warm.close_if_idle(now_millis(), idle_ms).await {
            self.arm_idle_alarm(left).await;
        }
        Response::ok("")
    }
}

/// One shard of the delivery ledger: the records of the queued messages whose ids name it
/// ([`crate::delivery::shard::shard_of`]), in this object's SQLite. Every call for one message comes here, so
/// reads and writes are strongly consistent and a claim (read, check, write) happens in one
/// step: nothing else runs in the object between them. An alarm deletes the records that
/// ended more than `RETENTION_DAYS` ago, and their bodies.
#[durable_object(alarm)]
pub struct DeliveryLedger {
    state: State,
    workers: Workers,
    sql: SqlStorage,
    /// When the alarm is set to go off, once known: a save that needs it no earlier asks
    /// storage nothing.
    alarm_at: Cell<Option<u64>>,
}

/// The statuses after which no attempt is made any more, in SQL (reports may still change
/// a sent message's status, but retention may delete it).
const FINAL: &str = "status NOT IN ('queued', 'sending')";

impl DeliveryLedger {
    fn load(&self, id: &str) -> Result<Option<Record>> {
        let rows = texts(&self.sql, "SELECT record FROM records WHERE id = ?", vec![id.into()])?;
        // A record that does not parse is an error (the consumer retries), never "no record"
        // (which would drop the message).
        rows.first().map(|row| read_stored(row)).transpose()
    }

    /// Writes `record` whole; with `WEBHOOK_URL` set, the webhooks of the events it has beyond
    /// the stored one's go into the outbox in the same write (one event, one output gate), so
    /// no event is stored without its webhook. `true` when there are webhooks to send.
    fn save(&self, record: &Record) -> Result<bool> {
        let config = self.workers.config();
        let mut hooks = Vec::new();
        if let Ok(Config { webhook: Some(_), .. }) = config.as_ref() {
            hooks = webhook::new_webhooks(self.load(&record.id)?.as_ref(), record);
        }
        let now = now_millis() as f64;
        for hook in &hooks {
            self.sql.exec(
                "INSERT OR IGNORE INTO webhooks (id, body, attempts, next_at) VALUES (?, ?, 0, ?)",
                vec![hook.id.as_str().into(), hook.body.as_str().into(), now.into()],
            )?;
        }
        self.sql.exec(
            "INSERT INTO records (id, status, created_at, record) VALUES (?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, record = excluded.record",
            vec![
                record.id.as_str().into(),
                record.status.as_str().into(),
                (record.created_at as f64).into(),
                to_json(record).into(),
            ],
        )?;
        Ok(!hooks.is_empty())
    }

    /// This shard's hours from `since` on, as [`crate::delivery::stats::count`] counts them:
    /// messages by the hour they were accepted and status, and attempts' answer times by the
    /// hour they ended. Attempts end after their message was accepted, at most a day after for
    /// the retry schedules allowed, so the records looked into start a day earlier.
    fn hour_stats(&self, since: u64) -> Result<Vec<HourCounts>> {
        let mut hours: Vec<HourCounts> = Vec::new();
        let counted = rows(
            &self.sql,
            "SELECT CAST(created_at / 3600000 AS INTEGER), status, COUNT(*) FROM records \
             WHERE created_at >= ? GROUP BY 1, 2",
            vec![(since as f64).into()],
        )?;
        for row in counted {
            let [at, SqlStorageValue::String(status), n] = &row[..] else { continue };
            let Some(status) = Status::parse(status) else { continue };
            stats::add(&mut stats::hour_of(&mut hours, number_of(at)).statuses, status, number_of(n));
        }
        let answered = rows(
            &self.sql,
            "SELECT CAST(json_extract(e.value, '$.at') / 3600000 AS INTEGER), json_extract(e.value, '$.took_ms') \
             FROM records, json_each(records.record, '$.events') AS e \
             WHERE records.created_at >= ? AND json_extract(e.value, '$.at') >= ? \
             AND json_extract(e.value, '$.type') IN ('sent', 'deferred', 'failed', 'unknown') \
             AND json_extract(e.value, '$.took_ms') IS NOT NULL",
            vec![(since.saturating_sub(86_400_000) as f64).into(), (since as f64).into()],
        )?;
        for row in answered {
            let [at, took] = &row[..] else { continue };
            let bucket = stats::bucket_of(number_of(took));
            stats::add(&mut stats::hour_of(&mut hours, number_of(at)).answers, bucket, 1);
        }
        Ok(hours)
    }

    /// Has the alarm go off by `at_ms` (an earlier one set stays).
    async fn wake_by(&self, at_ms: u64) -> Result<()> {
        if self.alarm_at.get().is_some_and(|set| set <= at_ms) {
            return Ok(());
        }
        let storage = self.state.storage();
        if let Some(set) = storage.get_alarm().await?.map(|set| set as u64).filter(|set| *set <= at_ms) {
            self.alarm_at.set(Some(set));
            return Ok(());
        }
        storage.set_alarm(Duration::from_millis(at_ms.saturating_sub(now_millis()))).await?;
        self.alarm_at.set(Some(at_ms));
        Ok(())
    }

    /// Sends the outbox's due webhooks (at most [`WEBHOOKS_PER_RUN`]), then says when the next
    /// one is due. A `2xx` removes one; anything else (a redirect is never followed) tries it
    /// again on the schedule, or, once that is spent, keeps it marked failed and says so in
    /// the log. A delivered one stays, marked delivered, for the message's timeline.
    async fn send_webhooks(&self, settings: &WebhookSettings, now: u64) -> Result<Option<u64>> {
        let due = rows(
            &self.sql,
            "SELECT id, body, attempts FROM webhooks WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?",
            vec![(now as f64).into(), (WEBHOOKS_PER_RUN as f64).into()],
        )?;
        for row in due {
            let [SqlStorageValue::String(id), SqlStorageValue::String(body), attempts] = &row[..] else { continue };
            let attempts = number_of(attempts) as u32 + 1;
            let hook = Webhook { id: id.clone(), body: body.clone() };
            if post_webhook(settings, &hook).await {
                // Kept, without its body, for the message's timeline until retention takes it.
                self.sql.exec(
                    "UPDATE webhooks SET body = '', attempts = ?, next_at = NULL, delivered_at = ? WHERE id = ?",
                    vec![f64::from(attempts).into(), (now_millis() as f64).into(), id.as_str().into()],
                )?;
                continue;
            }
            let next_at = webhook::retry_after(&settings.retry_seconds, attempts)
                .map(|delay| (now_millis() + u64::from(delay) * 1000) as f64);
            if next_at.is_none() {
                console_log!("webhook {id}: no 2xx after {attempts} deliveries; kept in the outbox as failed");
            }
            let next_at = next_at.map_or(SqlStorageValue::Null, SqlStorageValue::from);
            self.sql.exec(
                "UPDATE webhooks SET attempts = ?, next_at = ? WHERE id = ?",
                vec![f64::from(attempts).into(), next_at, id.as_str().into()],
            )?;
        }
        let next = rows(&self.sql, "SELECT MIN(next_at) FROM webhooks WHERE next_at IS NOT NULL", vec![])?;
        Ok(next.first().and_then(|row| row.first()).map(number_of).filter(|at| *at > 0))
    }

    /// When the oldest record that has ended was created.
    fn oldest_final(&self) -> Result<Option<u64>> {
        let statement = format!(
            "SELECT CAST(CAST(created_at AS INTEGER) AS TEXT) FROM records WHERE {FINAL} ORDER BY created_at LIMIT 1"
        );
        Ok(texts(&self.sql, &statement, vec![])?.first().and_then(|t| t.parse::<u64>().ok()))
    }
}

impl DurableObject for DeliveryLedger {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        // Created on first use: no migration step, under wrangler dev or deployed.
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, status TEXT NOT NULL, \
             created_at INTEGER NOT NULL, record TEXT NOT NULL)",
            None,
        );
        let _ = sql.exec("CREATE INDEX IF NOT EXISTS records_by_status ON records (status, created_at)", None);
        let _ = sql.exec("CREATE INDEX IF NOT EXISTS records_by_time ON records (created_at, id)", None);
        // What arrived at the bounce domain and changed nothing, counted (in shard 0's object).
        let _ =
            sql.exec("CREATE TABLE IF NOT EXISTS report_counts (name TEXT PRIMARY KEY, count INTEGER NOT NULL)", None);
        // The webhooks of this shard's events: due at `next_at` until a 2xx takes one (then
        // `delivered_at`; neither: failed for good). Kept until their record goes.
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, body TEXT NOT NULL, \
             attempts INTEGER NOT NULL, next_at INTEGER, delivered_at INTEGER)",
            None,
        );
        // An outbox made before deliveries were kept (the column exists: an error, ignored).
        let _ = sql.exec("ALTER TABLE webhooks ADD COLUMN delivered_at INTEGER", None);
        let _ = sql.exec("CREATE INDEX IF NOT EXISTS webhooks_by_time ON webhooks (next_at)", None);
        // Version 2 of the records: a message the relay accepted is `sent` (`delivered` is what
        // a report says). A record of before reads so by itself; its status column, which the
        // listing filters on, is brought along once per object.
        let _ = sql.exec("CREATE TABLE IF NOT EXISTS form (version INTEGER NOT NULL)", None);
        let version = texts(&sql, "SELECT CAST(MAX(version) AS TEXT) FROM form", vec![]).ok();
        if version.as_ref().and_then(|v| v.first()).is_none_or(|v| v != "2") {
            let _ = sql.exec("UPDATE records SET status = 'sent' WHERE status = 'delivered'", None);
            let _ = sql.exec("DELETE FROM form", None);
            let _ = sql.exec("INSERT INTO form (version) VALUES (2)", None);
        }
        DeliveryLedger { state, workers: Workers { env }, sql, alarm_at: Cell::new(None) }
    }

    /// The outbox's due webhooks ([`DeliveryLedger::send_webhooks`]); then retention: at most
    /// [`RETENTION_BATCH`] records that ended more than `RETENTION_DAYS` ago, each body first
    /// (a body without its record is garbage the next run does not need; a record without its
    /// body is a message that can no longer be looked at); then the alarm for whichever is
    /// next. A message that has not ended is never touched.
    async fn alarm(&self) -> Result<Response> {
        self.alarm_at.set(None);
        let config = self.workers.config();
        let Ok(config) = config.as_ref() else { return Response::ok("") };
        let now = now_millis();
        let next_webhook = match &config.webhook {
            Some(settings) => self.send_webhooks(settings, now).await?,
            None => None,
        };
        let cutoff = now.saturating_sub(config.retention_ms) as f64;
        let statement = format!("SELECT id FROM records WHERE {FINAL} AND created_at < ? ORDER BY created_at LIMIT ?");
        let expired = texts(&self.sql, &statement, vec![cutoff.into(), (RETENTION_BATCH as f64).into()])?;
        let bucket = self.workers.env.bucket(MESSAGE_BODIES)?;
        for id in &expired {
            bucket.delete(id).await?;
            let (first, end) = webhook::id_range(id);
            self.sql.exec(
                "DELETE FROM webhooks WHERE id >= ? AND id < ? AND next_at IS NULL",
                vec![first.as_str().into(), end.as_str().into()],
            )?;
            self.sql.exec("DELETE FROM records WHERE id = ?", vec![id.as_str().into()])?;
        }
        let next_retention = next_retention_run(now, config.retention_ms, expired.len(), self.oldest_final()?);
        if let Some(at) = [next_retention, next_webhook].into_iter().flatten().min() {
            self.wake_by(at.max(now + 1_000)).await?;
        }
        Response::ok("")
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        let arg = |name: &str| query_arg(&request, name);
        let number = |name: &str| arg(name).and_then(|v| v.parse::<u64>().ok());
        let missing = || failure("a ledger call without its arguments");
        let url = request.inner().url();
        match http::request::path_and_query(&url).0 {
            "/save" => {
                let records: Vec<Record> = json_request(&mut request).await?;
                let mut hooks = false;
                for record in &records {
                    hooks |= self.save(record)?;
                }
                if hooks {
                    self.wake_by(now_millis()).await?;
                }
                let ended = records.iter().filter(|r| r.status.is_final()).map(|r| r.created_at).min();
                if let (Some(created_at), Ok(config)) = (ended, self.workers.config().as_ref()) {
                    self.wake_by(created_at.saturating_add(config.retention_ms)).await?;
                }
                json_response(&true)
            }
            "/load" => json_response(&self.load(&arg("id").ok_or_else(missing)?)?),
            "/webhooks" => {
                let (first, end) = webhook::id_range(&arg("id").ok_or_else(missing)?);
                let rows = rows(
                    &self.sql,
                    "SELECT id, attempts, delivered_at, next_at FROM webhooks WHERE id >= ? AND id < ?",
                    vec![first.as_str().into(), end.as_str().into()],
                )?;
                let at = |value: &SqlStorageValue| Some(number_of(value)).filter(|at| *at > 0);
                let mut deliveries: Vec<Delivery> = (rows.iter())
                    .filter_map(|row| match &row[..] {
                        [SqlStorageValue::String(id), attempts, delivered_at, next_at] => Some(Delivery {
                            id: id.clone(),
                            attempts: number_of(attempts) as u32,
                            delivered_at: at(delivered_at),
                            next_at: at(next_at),
                        }),
                        _ => None,
                    })
                    .collect();
                // In the order of their events (`_10` after `_9`).
                deliveries.sort_by_key(Delivery::seq);
                json_response(&deliveries)
            }
            "/list" => {
                // The listing's order is (created_at, id), both descending; `after` is the last
                // record of the page before, so one page starts exactly where that one ended.
                let mut conditions: Vec<&str> = Vec::new();
                let mut values: Vec<SqlStorageValue> = Vec::new();
                if let Some(status) = arg("status").as_deref().and_then(Status::parse) {
                    conditions.push("status = ?");
                    values.push(status.as_str().into());
                }
                if let Some(after) = arg("after").as_deref().and_then(Cursor::parse) {
                    conditions.push("(created_at, id) < (?, ?)");
                    values.push((after.created_at as f64).into());
                    values.push(after.id.as_str().into());
                }
                // A subject or a recipient that holds the text (LIKE: ASCII letters in any case).
                if let Some(search) = arg("q") {
                    conditions.push(
                        "(json_extract(record, '$.subject') LIKE ? ESCAPE '\\' OR EXISTS \
                         (SELECT 1 FROM json_each(record, '$.to') WHERE value LIKE ? ESCAPE '\\'))",
                    );
                    let pattern = format!("%{}%", search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
                    values.push(pattern.as_str().into());
                    values.push(pattern.as_str().into());
                }
                values.push((number("limit").ok_or_else(missing)? as f64).into());
                let filter = match conditions.is_empty() {
                    true => String::new(),
                    false => format!("WHERE {}", conditions.join(" AND ")),
                };
                let statement =
                    format!("SELECT record FROM records {filter} ORDER BY created_at DESC, id DESC LIMIT ?");
                let rows = texts(&self.sql, &statement, values)?;
                let records: Vec<Record> = rows.iter().filter_map(|row| read_stored(row).ok()).collect();
                json_response(&records)
            }
            "/report" => {
                // Read, apply and write in one step, as a claim: two reports at once each see
                // the other's events.
                let (id, now_ms) = (arg("id"), number("now_ms"));
                let (Some(id), Some(now_ms)) = (id, now_ms) else { return Err(missing()) };
                let findings: Vec<Finding> = json_request(&mut request).await?;
                let Some(mut record) = self.load(&id)? else { return json_response(&None::<Applied>) };
                let applied = record.apply_findings(&findings, now_ms);
                if applied.added > 0 && self.save(&record)? {
                    self.wake_by(now_millis()).await?;
                }
                json_response(&Some(applied))
            }
            "/stats" => {
                let since = number("since").ok_or_else(missing)?;
                json_response(&self.hour_stats(since)?)
            }
            "/count" => {
                let name = arg("name").ok_or_else(missing)?;
                self.sql.exec(
                    "INSERT INTO report_counts (name, count) VALUES (?, 1) \
                     ON CONFLICT(name) DO UPDATE SET count = count + 1",
                    vec![name.as_str().into()],
                )?;
                json_response(&true)
            }
            "/counts" => {
                let rows = texts(&self.sql, "SELECT name || ' ' || CAST(count AS TEXT) FROM report_counts", vec![])?;
                let counts: Vec<(String, u64)> = (rows.iter())
                    .filter_map(|row| row.split_once(' ').and_then(|(n, c)| Some((n.to_string(), c.parse().ok()?))))
                    .collect();
                json_response(&counts)
            }
            "/claim" => {
                let (id, now_ms, lease_ms) = (arg("id"), number("now_ms"), number("lease_ms"));
                let (Some(id), Some(now_ms), Some(lease_ms)) = (id, now_ms, lease_ms) else { return Err(missing()) };
                let Some(mut record) = self.load(&id)? else { return json_response(&Claimed::Done) };
                let claimed = queue::claim(&mut record, now_ms, lease_ms);
                if matches!(claimed, Claimed::Granted(_)) {
                    self.save(&record)?;
                }
                json_response(&claimed)
            }
            _ => Response::error("no such ledger call", 404),
        }
    }
}

/// One shard of the suppression list ([`crate::delivery::suppression::shard_of`]): its
/// addresses in this object's SQLite, keyed as [`suppression::key`] writes them.
#[durable_object(fetch)]
pub struct SuppressionList {
    sql: SqlStorage,
}

impl SuppressionList {
    fn find(&self, address: &str) -> Result<Option<Suppression>> {
        let rows = texts(&self.sql, "SELECT entry FROM suppressions WHERE address = ?", vec![address.into()])?;
        rows.first().map(|row| read_stored(row)).transpose()
    }
}

impl DurableObject for SuppressionList {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS suppressions (address TEXT PRIMARY KEY, created_at INTEGER NOT NULL, \
             entry TEXT NOT NULL)",
            None,
        );
        let _ = sql.exec("CREATE INDEX IF NOT EXISTS suppressions_by_time ON suppressions (created_at, address)", None);
        SuppressionList { sql }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        let url = request.inner().url();
        match http::request::path_and_query(&url).0 {
            "/check" => {
                let keys: Vec<String> = json_request(&mut request).await?;
                let mut found = Vec::new();
                for key in keys.iter().take(100) {
                    found.extend(self.find(key)?);
                }
                json_response(&found)
            }
            "/add" => {
                // The first entry of an address stays: a report that comes twice changes nothing.
                let entry: Suppression = json_request(&mut request).await?;
                let added = self.find(&entry.address)?.is_none();
                if added {
                    self.sql.exec(
                        "INSERT INTO suppressions (address, created_at, entry) VALUES (?, ?, ?)",
                        vec![entry.address.as_str().into(), (entry.created_at as f64).into(), to_json(&entry).into()],
                    )?;
                }
                json_response(&added)
            }
            "/remove" => {
                let address = query_arg(&request, "address").ok_or_else(|| failure("no address"))?;
                let entry = self.find(&address)?;
                if entry.is_some() {
                    self.sql.exec("DELETE FROM suppressions WHERE address = ?", vec![address.as_str().into()])?;
                }
                json_response(&entry)
            }
            "/list" => {
                let limit = query_arg(&request, "limit").and_then(|v| v.parse::<u32>().ok()).unwrap_or(50);
                let after = query_arg(&request, "after").and_then(|a| Cursor::parse_with(&a, |_| true));
                let mut values: Vec<SqlStorageValue> = Vec::new();
                if let Some(after) = after.as_ref() {
                    values.push((after.created_at as f64).into());
                    values.push(after.id.as_str().into());
                }
                values.push(f64::from(limit.min(101)).into());
                let filter = if after.is_some() { "WHERE (created_at, address) < (?, ?)" } else { "" };
                let statement =
                    format!("SELECT entry FROM suppressions {filter} ORDER BY created_at DESC, address DESC LIMIT ?");
                let rows = texts(&self.sql, &statement, values)?;
                let entries: Vec<Suppression> = rows.iter().filter_map(|row| read_stored(row).ok()).collect();
                json_response(&entries)
            }
            _ => Response::error("no such suppression list call", 404),
        }
    }
}

/// One Idempotency-Key (named by a hash of API key and key): its record in this object's
/// SQLite, changed by [`idempotency::apply`] in one step, since the SQL calls are synchronous
/// and nothing else runs in the object meanwhile. An alarm deletes the record when it expires.
#[durable_object(alarm)]
pub struct IdempotencyKey {
    state: State,
    sql: SqlStorage,
}

impl IdempotencyKey {
    fn load(&self) -> Result<Option<KeyRecord>> {
        let rows = texts(&self.sql, "SELECT record FROM key WHERE id = 1", vec![])?;
        Ok(rows.first().and_then(|row| read_stored(row).ok()))
    }
}

impl DurableObject for IdempotencyKey {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        let _ = sql.exec("CREATE TABLE IF NOT EXISTS key (id INTEGER PRIMARY KEY, record TEXT NOT NULL)", None);
        IdempotencyKey { state, sql }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        let call: KeyCall = json_request(&mut request).await?;
        let mut record = self.load()?;
        let answer = idempotency::apply(&mut record, call);
        match &record {
            Some(record) => {
                self.sql.exec("INSERT OR REPLACE INTO key (id, record) VALUES (1, ?)", vec![to_json(record).into()])?;
                let expires_in = record.expires_at_ms.saturating_sub(now_millis());
                let _ = self.state.storage().set_alarm(Duration::from_millis(expires_in)).await;
            }
            None => {
                self.sql.exec("DELETE FROM key", None)?;
            }
        }
        json_response(&answer)
    }

    async fn alarm(&self) -> Result<Response> {
        let now = now_millis();
        if self.load()?.is_some_and(|record| record.expires_at_ms <= now) {
            self.sql.exec("DELETE FROM key", None)?;
        }
        Response::ok("")
    }
}
