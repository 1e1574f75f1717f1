//! Scripted relays: a transcript of what the server says and expects, run over an in-memory
//! stream, with everything the client wrote kept for byte-for-byte assertions.

pub mod alloc;

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use std::collections::HashMap;

use edge_mailer::config::rate::RateLimit;
use edge_mailer::config::Config;
use edge_mailer::delivery::env::{Environment, Store, Unavailable, WarmUnavailable};
use edge_mailer::delivery::idempotency::{self, KeyAnswer, KeyCall, KeyRecord};
use edge_mailer::delivery::queue::{self, Claimed, Record};
use edge_mailer::delivery::quota::{Token, Windows};
use edge_mailer::delivery::ratelimit::{Decision, Window};
use edge_mailer::delivery::record::Filter;
use edge_mailer::delivery::reports::{Applied, Finding};
use edge_mailer::delivery::shard::{self, Cursor};
use edge_mailer::delivery::stats::{self, HourCounts};
use edge_mailer::delivery::suppression::{self, Suppression};
use edge_mailer::delivery::transaction::{Outcome, Transaction};
use edge_mailer::delivery::warm::WarmSession;
use edge_mailer::delivery::webhook::{self, Delivery};
use edge_mailer::http::body::{BodySource, WholeBody};
use edge_mailer::http::{after_response, serve, Field, FieldValue, HttpResponse, Platform, RequestHead};
use edge_mailer::smtp::client::Network;
use edge_mailer::smtp::settings::Security;
use mail_parser::MimeHeaders;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

#[derive(Clone, Debug)]
pub enum Step {
    /// The server writes these bytes.
    Say(&'static str),
    /// The server reads exactly these bytes from the client.
    Expect(&'static str),
    /// The server reads a DATA payload up to and including CRLF.CRLF.
    ExpectData,
    /// The server reads a pipelined transaction with CHUNKING: command lines up to and
    /// including `BDAT <n> LAST`, then the n bytes of the message.
    ExpectChunked,
    /// The server waits this many milliseconds (virtual time) before its next step, so the
    /// client sees what came before in a read of its own.
    Pause(u64),
    /// The server reads this many bytes, then closes the connection.
    ReadThenClose(usize),
    /// The server closes the connection.
    Close,
    /// The server never answers again.
    Hang,
}

/// What the scripted relay saw.
#[derive(Default, Debug)]
pub struct Seen {
    pub wire: Vec<u8>,
    pub data: Vec<u8>,
    /// Whole messages the relay read (DATA or BDAT), over every connection.
    pub messages: usize,
    /// Writes the client made (each `poll_write` that wrote something).
    pub writes: usize,
    pub tls_upgrades: usize,
    /// Timers the client armed (each one costs the runtime a callback and two calls).
    pub timers: usize,
    pub connects: usize,
    /// Connections opened with implicit TLS (each one a handshake round trip).
    pub tls_connects: usize,
    /// Times the relay answered after reading from the client (or greeted): round trips as
    /// the relay sees them.
    pub turns: usize,
    /// A script step that did not match, if any.
    pub mismatch: Option<String>,
}

#[derive(Clone)]
pub struct ScriptedRelay {
    /// One script per connection, in order; the last one serves any further connection.
    scripts: Rc<Vec<Rc<Vec<Step>>>>,
    pub seen: Rc<RefCell<Seen>>,
    pub refuse_connect: bool,
    /// How a refused connect fails (workerd's "cannot connect" is `Other`).
    pub refuse_with: io::ErrorKind,
    pub fail_tls: bool,
    /// Bytes the client may write before the relay reads them (small: writes wait on a slow
    /// relay, as they do on a real socket).
    pub buffer: usize,
    /// Virtual milliseconds that connecting and the TLS handshake take.
    pub handshake_delay: u64,
    /// Every flush fails, as workerd's socket reports a write that did not complete: the
    /// Workers connection hands a write over and waits for it at the next read or flush.
    pub fail_flush: bool,
}

impl ScriptedRelay {
    pub fn new(script: Vec<Step>) -> Self {
        ScriptedRelay {
            scripts: Rc::new(vec![Rc::new(script)]),
            seen: Rc::default(),
            refuse_connect: false,
            refuse_with: io::ErrorKind::ConnectionRefused,
            fail_tls: false,
            buffer: 1 << 20,
            handshake_delay: 0,
            fail_flush: false,
        }
    }

    /// A relay whose first connection follows `scripts[0]`, the second `scripts[1]`, …
    pub fn per_connection(scripts: Vec<Vec<Step>>) -> Self {
        let mut relay = ScriptedRelay::new(Vec::new());
        relay.scripts = Rc::new(scripts.into_iter().map(Rc::new).collect());
        relay
    }

    pub fn wire(&self) -> String {
        String::from_utf8_lossy(&self.seen.borrow().wire).into_owned()
    }
}

async fn run_script(mut server: DuplexStream, script: Rc<Vec<Step>>, seen: Rc<RefCell<Seen>>) {
    let mut read_since_say = true;
    for step in script.iter() {
        match step {
            Step::Say(text) => {
                if std::mem::take(&mut read_since_say) {
                    seen.borrow_mut().turns += 1;
                }
                if server.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
            }
            Step::Pause(millis) => tokio::time::sleep(Duration::from_millis(*millis)).await,
            Step::ReadThenClose(count) => {
                let mut got = vec![0u8; *count];
                let _ = server.read_exact(&mut got).await;
                seen.borrow_mut().wire.extend_from_slice(&got);
                return;
            }
            Step::Expect(expected) => {
                read_since_say = true;
                let mut got = vec![0u8; expected.len()];
                if server.read_exact(&mut got).await.is_err() {
                    seen.borrow_mut().mismatch = Some(format!("connection ended while expecting {expected:?}"));
                    return;
                }
                seen.borrow_mut().wire.extend_from_slice(&got);
                if got != expected.as_bytes() {
                    seen.borrow_mut().mismatch =
                        Some(format!("expected {expected:?}, got {:?}", String::from_utf8_lossy(&got)));
                    return;
                }
            }
            Step::ExpectData => {
                read_since_say = true;
                let mut data = Vec::new();
                let mut byte = [0u8; 1];
                while !data.ends_with(b"\r\n.\r\n") {
                    if server.read_exact(&mut byte).await.is_err() {
                        seen.borrow_mut().mismatch = Some("connection ended inside DATA".into());
                        return;
                    }
                    data.push(byte[0]);
                }
                let mut seen = seen.borrow_mut();
                seen.wire.extend_from_slice(&data);
                seen.data = data;
                seen.messages += 1;
            }
            Step::ExpectChunked => {
                read_since_say = true;
                let mut flight = Vec::new();
                let mut byte = [0u8; 1];
                let size = loop {
                    if server.read_exact(&mut byte).await.is_err() {
                        seen.borrow_mut().mismatch = Some("connection ended inside a flight".into());
                        return;
                    }
                    flight.push(byte[0]);
                    let line_start = flight[..flight.len() - 1].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    let line = &flight[line_start..];
                    if line.ends_with(b" LAST\r\n") && line.starts_with(b"BDAT ") {
                        break std::str::from_utf8(&line[5..line.len() - 7]).unwrap().parse::<usize>().unwrap();
                    }
                };
                let mut data = vec![0u8; size];
                if server.read_exact(&mut data).await.is_err() {
                    seen.borrow_mut().mismatch = Some("connection ended inside BDAT".into());
                    return;
                }
                let mut seen = seen.borrow_mut();
                seen.wire.extend_from_slice(&flight);
                seen.wire.extend_from_slice(&data);
                seen.data = data;
                seen.messages += 1;
            }
            Step::Close => return,
            Step::Hang => {
                tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
                return;
            }
        }
    }
    // Keep reading (QUIT and the like) until the client goes away.
    let mut rest = Vec::new();
    let _ = server.read_to_end(&mut rest).await;
    seen.borrow_mut().wire.extend_from_slice(&rest);
}

impl Network for ScriptedRelay {
    type Conn = Counted;

    async fn connect(&self, _host: &str, _port: u16, security: Security) -> io::Result<Counted> {
        tokio::time::sleep(Duration::from_millis(self.handshake_delay)).await;
        if self.refuse_connect {
            return Err(io::Error::new(self.refuse_with, "refused"));
        }
        self.seen.borrow_mut().connects += 1;
        if security == Security::ImplicitTls {
            self.seen.borrow_mut().tls_connects += 1;
        }
        let (client, server) = tokio::io::duplex(self.buffer);
        let script = self.scripts[(self.seen.borrow().connects - 1).min(self.scripts.len() - 1)].clone();
        tokio::task::spawn_local(run_script(server, script, self.seen.clone()));
        Ok(Counted { stream: client, seen: self.seen.clone(), fail_flush: self.fail_flush })
    }

    async fn start_tls(&self, conn: Counted) -> io::Result<Counted> {
        tokio::time::sleep(Duration::from_millis(self.handshake_delay)).await;
        if self.fail_tls {
            return Err(io::Error::other("certificate verify failed"));
        }
        self.seen.borrow_mut().tls_upgrades += 1;
        Ok(conn)
    }

    type Timer = Pin<Box<tokio::time::Sleep>>;

    fn sleep(&self, millis: u64) -> Self::Timer {
        self.seen.borrow_mut().timers += 1;
        Box::pin(tokio::time::sleep(Duration::from_millis(millis)))
    }

    fn now_millis(&self) -> u64 {
        virtual_now()
    }
}

/// The client's end of a scripted connection, counting its writes.
pub struct Counted {
    stream: DuplexStream,
    seen: Rc<RefCell<Seen>>,
    fail_flush: bool,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.seen.borrow_mut().writes += 1;
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if self.fail_flush {
            return std::task::Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the write failed")));
        }
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The clock of the tests: 2023-11-14 22:13:20 UTC plus the (paused, virtual) tokio time
/// since the test started.
pub fn virtual_now() -> u64 {
    thread_local!(static START: tokio::time::Instant = tokio::time::Instant::now());
    1_700_000_000_000 + START.with(|start| start.elapsed().as_millis() as u64)
}

impl Seen {
    /// Round trips as the relay saw them: its answers after reads, plus TLS handshakes.
    pub fn round_trips(&self) -> usize {
        self.turns + self.tls_upgrades + self.tls_connects
    }
}

/// Runs a test body on a single-threaded runtime with a LocalSet (the relay task is !Send).
pub fn run<F: std::future::Future>(body: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, body)
}

/// An outbound POST the Worker made: URL and form fields.
pub type Posted = (String, Vec<(String, String)>);

/// A Worker environment for the HTTP layer: variables from a map, the network scripted.
#[derive(Clone)]
pub struct ScriptedEnv {
    pub relay: ScriptedRelay,
    pub vars: Rc<HashMap<String, String>>,
    /// The Idempotency-Key objects: store key → the record each holds.
    pub keys: Rc<RefCell<HashMap<String, Option<KeyRecord>>>>,
    /// Every call to them, with the virtual time it was made at.
    pub key_calls: Rc<RefCell<Vec<(KeyCall, u64)>>>,
    pub rate_windows: Rc<RefCell<HashMap<String, Window>>>,
    /// Answers to outbound POSTs (the Turnstile fake), and what was posted.
    pub post_answer: Rc<RefCell<(u16, String)>>,
    pub posted: Rc<RefCell<Vec<Posted>>>,
    /// R2: stored bodies by id.
    pub bodies: Rc<RefCell<HashMap<String, Vec<u8>>>>,
    /// The queue and the dead-letter queue: ids in the order sent, with their delays.
    pub queue: Rc<RefCell<Vec<(String, u32)>>>,
    /// The queue takes this many more messages, then is unavailable (`None`: always up).
    pub queue_room: Rc<RefCell<Option<usize>>>,
    pub dead_letters: Rc<RefCell<Vec<String>>>,
    /// The ledger, in the order records were first written.
    pub ledger: Rc<RefCell<Vec<Record>>>,
    /// Calls to the ledger's objects (save, load, list of one shard, claim), in order, each
    /// with the shard it went to.
    pub ledger_calls: Rc<RefCell<Vec<(&'static str, u8)>>>,
    /// The warm sessions the platform keeps in Durable Objects, by index.
    pub warm: Rc<Vec<WarmSession<ScriptedRelay>>>,
    /// The index of each warm session asked, in order.
    pub warm_used: Rc<RefCell<Vec<u32>>>,
    /// Each relay account's quota windows, as their object stores them (JSON).
    pub quotas: Rc<RefCell<HashMap<String, String>>>,
    /// The suppression list's objects: each entry with the object it is kept in.
    pub suppressions: Rc<RefCell<Vec<(u8, Suppression)>>>,
    /// The objects of the suppression list asked by sends, in order.
    pub suppression_checks: Rc<RefCell<Vec<u8>>>,
    /// Every call to the suppression list fails.
    pub suppression_list_down: Rc<RefCell<bool>>,
    /// What arrived at the bounce domain and changed nothing, by name.
    pub report_counts: Rc<RefCell<HashMap<String, u64>>>,
    /// The webhooks' outbox, as the ledger's objects keep it.
    pub webhook_outbox: Rc<RefCell<Vec<Delivery>>>,
    /// The stores this deployment does not bind: every call to them fails.
    pub unbound: Rc<RefCell<Vec<Store>>>,
}

impl ScriptedEnv {
    pub fn new(relay: ScriptedRelay, vars: &[(&str, &str)]) -> Self {
        ScriptedEnv {
            relay,
            vars: Rc::new(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            keys: Rc::default(),
            key_calls: Rc::default(),
            rate_windows: Rc::default(),
            post_answer: Rc::new(RefCell::new((200, r#"{"success": true}"#.into()))),
            posted: Rc::default(),
            bodies: Rc::default(),
            queue: Rc::default(),
            queue_room: Rc::default(),
            dead_letters: Rc::default(),
            ledger: Rc::default(),
            ledger_calls: Rc::default(),
            warm: Rc::new((0..32).map(|_| WarmSession::default()).collect()),
            warm_used: Rc::default(),
            quotas: Rc::default(),
            suppressions: Rc::default(),
            suppression_checks: Rc::default(),
            suppression_list_down: Rc::default(),
            report_counts: Rc::default(),
            webhook_outbox: Rc::default(),
            unbound: Rc::default(),
        }
    }
}

impl ScriptedEnv {
    fn suppression_list(&self) -> Result<std::cell::RefMut<'_, Vec<(u8, Suppression)>>, Unavailable> {
        match *self.suppression_list_down.borrow() || !self.binds(Store::SuppressionList) {
            true => Err(Unavailable),
            false => Ok(self.suppressions.borrow_mut()),
        }
    }

    /// The ledger's reads fail where it is not bound.
    fn ledger_bound(&self) -> Result<(), Unavailable> {
        self.binds(Store::Ledger).then_some(()).ok_or(Unavailable)
    }

    fn ledger_call(&self, call: &'static str, id: &str) {
        self.ledger_calls.borrow_mut().push((call, shard::shard_of(id).expect("an id of the Worker's own form")));
    }
}

impl Network for ScriptedEnv {
    type Conn = Counted;

    async fn connect(&self, host: &str, port: u16, security: Security) -> io::Result<Counted> {
        self.relay.connect(host, port, security).await
    }

    async fn start_tls(&self, conn: Counted) -> io::Result<Counted> {
        self.relay.start_tls(conn).await
    }

    type Timer = <ScriptedRelay as Network>::Timer;

    fn sleep(&self, millis: u64) -> Self::Timer {
        self.relay.sleep(millis)
    }

    fn now_millis(&self) -> u64 {
        virtual_now()
    }
}

impl ScriptedEnv {
    /// The configuration the platform would parse from these variables.
    pub fn config(&self) -> Result<Config, edge_mailer::error::ApiError> {
        Config::from_lookup(|name| self.vars.get(name).cloned())
    }
}

impl Environment for ScriptedEnv {
    fn binds(&self, store: Store) -> bool {
        !self.unbound.borrow().contains(&store)
    }

    /// Not a real signature (the e2e suite verifies real ones with dkimpy): the SHA-256 of
    /// what would be signed, so a test can tell what the signature covers.
    async fn dkim_sign(&self, _key: &edge_mailer::dkim::DkimKey, data: &[u8]) -> Result<Vec<u8>, Unavailable> {
        use sha2::Digest;
        Ok(sha2::Sha256::digest(data).to_vec())
    }

    async fn idempotency(&self, store_key: &str, call: KeyCall) -> Result<KeyAnswer, Unavailable> {
        self.key_calls.borrow_mut().push((call.clone(), virtual_now()));
        let mut keys = self.keys.borrow_mut();
        Ok(idempotency::apply(keys.entry(store_key.to_string()).or_default(), call))
    }

    async fn rate_limit(&self, key: &str, limit: u32, window_seconds: u32) -> Result<Decision, Unavailable> {
        let mut windows = self.rate_windows.borrow_mut();
        Ok(windows.entry(key.to_string()).or_default().hit(virtual_now(), limit, u64::from(window_seconds) * 1000))
    }

    async fn get_text(&self, url: &str) -> Result<(u16, String), Unavailable> {
        self.posted.borrow_mut().push((url.to_string(), Vec::new()));
        Ok(self.post_answer.borrow().clone())
    }

    async fn put_body(&self, id: &str, bytes: &[u8]) -> Result<(), Unavailable> {
        self.bodies.borrow_mut().insert(id.to_string(), bytes.to_vec());
        Ok(())
    }

    async fn get_body(&self, id: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        Ok(self.bodies.borrow().get(id).cloned())
    }

    async fn enqueue(&self, id: &str, delay_seconds: u32) -> Result<(), Unavailable> {
        if let Some(room) = self.queue_room.borrow_mut().as_mut() {
            if *room == 0 {
                return Err(Unavailable);
            }
            *room -= 1;
        }
        self.queue.borrow_mut().push((id.to_string(), delay_seconds));
        Ok(())
    }

    async fn dead_letter(&self, id: &str) -> Result<(), Unavailable> {
        self.dead_letters.borrow_mut().push(id.to_string());
        Ok(())
    }

    async fn save_record(&self, record: &Record) -> Result<(), Unavailable> {
        self.ledger_call("save", &record.id);
        let mut ledger = self.ledger.borrow_mut();
        match ledger.iter_mut().find(|r| r.id == record.id) {
            Some(existing) => *existing = record.clone(),
            None => ledger.push(record.clone()),
        }
        Ok(())
    }

    /// One call (`save_records`) for records of one shard.
    async fn save_records(&self, shard: u8, records: &[Record]) -> Result<(), Unavailable> {
        self.ledger_calls.borrow_mut().push(("save_records", shard));
        let mut ledger = self.ledger.borrow_mut();
        for record in records {
            assert_eq!(shard::shard_of(&record.id), Some(shard), "a record saved in another shard");
            match ledger.iter_mut().find(|r| r.id == record.id) {
                Some(existing) => *existing = record.clone(),
                None => ledger.push(record.clone()),
            }
        }
        Ok(())
    }

    async fn load_record(&self, id: &str) -> Result<Option<Record>, Unavailable> {
        self.ledger_call("load", id);
        self.ledger_bound()?;
        Ok(self.ledger.borrow().iter().find(|r| r.id == id).cloned())
    }

    async fn webhook_deliveries(&self, id: &str) -> Result<Vec<Delivery>, Unavailable> {
        let (first, end) = webhook::id_range(id);
        let outbox = self.webhook_outbox.borrow();
        Ok(outbox.iter().filter(|d| d.id >= first && d.id < end).cloned().collect())
    }

    /// As a shard's object answers: its records in the listing's order, after the cursor.
    async fn list_records(
        &self,
        shard: u8,
        filter: &Filter<'_>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<Record>, Unavailable> {
        self.ledger_calls.borrow_mut().push(("list", shard));
        self.ledger_bound()?;
        let mut records: Vec<Record> = (self.ledger.borrow().iter())
            .filter(|r| shard::shard_of(&r.id) == Some(shard) && filter.matches(r))
            .filter(|r| after.is_none_or(|a| (r.created_at, &r.id) < (a.created_at, &a.id)))
            .cloned()
            .collect();
        records.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        records.truncate(limit as usize);
        Ok(records)
    }

    async fn claim_attempt(&self, id: &str, now_ms: u64, lease_ms: u64) -> Result<Claimed, Unavailable> {
        self.ledger_call("claim", id);
        let mut ledger = self.ledger.borrow_mut();
        Ok(ledger.iter_mut().find(|r| r.id == id).map_or(Claimed::Done, |r| queue::claim(r, now_ms, lease_ms)))
    }

    /// Session number `index`, as the platform's objects are named; the transaction makes the
    /// same JSON round trip it makes between a Worker and a Durable Object.
    async fn send_warm(
        &self,
        transaction: &Transaction,
        index: u32,
        wait: bool,
    ) -> Result<Option<Outcome>, WarmUnavailable> {
        self.warm_used.borrow_mut().push(index);
        let travelled = Transaction::from_bytes(&transaction.to_bytes()).unwrap();
        let config = self.config().map_err(|_| WarmUnavailable { handed_over: false })?;
        let session = &self.warm[index as usize];
        let outcome = match wait {
            true => Some(session.send(&self.relay, &config.relay, &travelled).await),
            false => session.send_if_free(&self.relay, &config.relay, &travelled).await,
        };
        // As it travels back from the session object: through its JSON.
        Ok(serde_json::from_str(&serde_json::to_string(&outcome).unwrap()).unwrap())
    }

    async fn take_relay_token(&self, account: &str, limits: &[RateLimit], reserve: bool) -> Result<Token, Unavailable> {
        let now = self.now_millis();
        let mut quotas = self.quotas.borrow_mut();
        let mut windows = match quotas.get(account) {
            Some(stored) => serde_json::from_str(stored).unwrap(),
            None => Windows::default(),
        };
        let token = if reserve { windows.reserve(limits, now) } else { windows.take(limits, now) };
        quotas.insert(account.to_string(), serde_json::to_string(&windows).unwrap());
        Ok(token)
    }

    /// As the record's shard applies it: in one step, written only when something was added.
    async fn apply_report(&self, id: &str, findings: &[Finding], now_ms: u64) -> Result<Option<Applied>, Unavailable> {
        self.ledger_call("report", id);
        let mut ledger = self.ledger.borrow_mut();
        Ok(ledger.iter_mut().find(|r| r.id == id).map(|record| record.apply_findings(findings, now_ms)))
    }

    async fn hour_stats(&self, shard: u8, since_ms: u64) -> Result<Vec<HourCounts>, Unavailable> {
        self.ledger_bound()?;
        let records: Vec<Record> =
            self.ledger.borrow().iter().filter(|r| shard::shard_of(&r.id) == Some(shard)).cloned().collect();
        Ok(stats::count(&records, since_ms))
    }

    async fn count_report(&self, name: &str) -> Result<(), Unavailable> {
        *self.report_counts.borrow_mut().entry(name.to_string()).or_default() += 1;
        Ok(())
    }

    async fn report_counts(&self) -> Result<Vec<(String, u64)>, Unavailable> {
        Ok(self.report_counts.borrow().iter().map(|(k, v)| (k.clone(), *v)).collect())
    }

    /// As the object `shard` answers: only entries kept in it (a key asked of the wrong
    /// object is not found, as on the platform).
    async fn suppressed(&self, shard: u8, keys: &[String]) -> Result<Vec<Suppression>, Unavailable> {
        self.suppression_checks.borrow_mut().push(shard);
        let list = self.suppression_list()?;
        Ok(list.iter().filter(|(s, e)| *s == shard && keys.contains(&e.address)).map(|(_, e)| e.clone()).collect())
    }

    async fn suppress(&self, entry: &Suppression) -> Result<bool, Unavailable> {
        let mut list = self.suppression_list()?;
        if list.iter().any(|(_, e)| e.address == entry.address) {
            return Ok(false);
        }
        list.push((suppression::shard_of(&entry.address), entry.clone()));
        Ok(true)
    }

    async fn unsuppress(&self, key: &str) -> Result<Option<Suppression>, Unavailable> {
        let mut list = self.suppression_list()?;
        let at = list.iter().position(|(_, e)| e.address == key);
        Ok(at.map(|at| list.remove(at).1))
    }

    async fn list_suppressions(
        &self,
        shard: u8,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<Suppression>, Unavailable> {
        let list = self.suppression_list()?;
        let mut entries: Vec<Suppression> = (list.iter())
            .filter(|(s, e)| *s == shard && after.is_none_or(|a| (e.created_at, &e.address) < (a.created_at, &a.id)))
            .map(|(_, e)| e.clone())
            .collect();
        entries.sort_by(|a, b| (b.created_at, &b.address).cmp(&(a.created_at, &a.address)));
        entries.truncate(limit as usize);
        Ok(entries)
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Result<(u16, String), Unavailable> {
        let fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.posted.borrow_mut().push((url.to_string(), fields));
        Ok(self.post_answer.borrow().clone())
    }
}

impl Platform for ScriptedEnv {
    /// An independent multipart parser (mail-parser) stands in for workerd's `formData()`.
    async fn parse_multipart(&self, content_type: &str, body: Vec<u8>) -> Result<Vec<Field>, Unavailable> {
        let mut raw = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
        raw.extend_from_slice(&body);
        let message = mail_parser::MessageParser::default().parse(&raw).ok_or(Unavailable)?;
        let mut fields = Vec::new();
        for part in message.parts.iter().skip(1) {
            let disposition = part.content_disposition().ok_or(Unavailable)?;
            let name = disposition.attribute("name").ok_or(Unavailable)?.to_string();
            let value = match disposition.attribute("filename") {
                Some(filename) => FieldValue::File {
                    filename: filename.to_string(),
                    content_type: part
                        .content_type()
                        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                        .unwrap_or_default(),
                    data: part.contents().to_vec(),
                },
                None => FieldValue::Text(String::from_utf8_lossy(part.contents()).into_owned()),
            };
            fields.push(Field { name, value });
        }
        Ok(fields)
    }
}

/// A request as a test builds it: the head and the whole body.
pub struct Req {
    pub head: RequestHead,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, path_and_query: &str, body: impl Into<Vec<u8>>) -> Self {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let head = RequestHead { method: method.into(), path: path.into(), query: query.into(), headers: Vec::new() };
        Req { head, body: body.into() }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.head.headers.push((name.into(), value.into()));
        self
    }

    /// A `multipart/form-data` body of these fields, as a browser would send it.
    pub fn multipart(self, fields: &[Field]) -> Self {
        let boundary = "----edge-mailer-test-7f3a9c";
        let mut body = Vec::new();
        for field in fields {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match &field.value {
                FieldValue::Text(text) => {
                    let head = format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", field.name);
                    body.extend_from_slice(head.as_bytes());
                    body.extend_from_slice(text.as_bytes());
                }
                FieldValue::File { filename, content_type, data } => {
                    let head = format!(
                        "Content-Disposition: form-data; name=\"{}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n",
                        field.name
                    );
                    body.extend_from_slice(head.as_bytes());
                    body.extend_from_slice(data);
                }
            }
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let req = self.header("content-type", &format!("multipart/form-data; boundary={boundary}"));
        Req { body, ..req }
    }
}

/// Serves `req` as the platform would (configuration parsed once, the body streamed in), then
/// lets the QUIT after the answer run.
pub fn call(env: &ScriptedEnv, req: Req) -> (HttpResponse, serde_json::Value) {
    call_with_body(env, req.head, WholeBody::new(req.body))
}

pub fn call_with_body(
    env: &ScriptedEnv,
    head: RequestHead,
    body: impl BodySource,
) -> (HttpResponse, serde_json::Value) {
    run(serve_now(env, head, body))
}

/// [`call`] inside a runtime that is already running: for several requests that share what
/// lives between them (warm sessions, whose relay runs on that runtime).
pub async fn serve_now(
    env: &ScriptedEnv,
    head: RequestHead,
    body: impl BodySource,
) -> (HttpResponse, serde_json::Value) {
    let config = env.config();
    let handled = serve(env.clone(), config.as_ref(), head, body).await;
    if let Some(quit) = after_response(env.clone(), handled.after, handled.records) {
        quit.await;
    }
    let response = handled.response;
    let json = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    (response, json)
}

/// A relay's side of opening a session to `example.com` with STARTTLS, PIPELINING and
/// CHUNKING, and AUTH PLAIN answering `auth` (the line the client must send).
pub fn chunking_opening(auth: &'static str) -> Vec<Step> {
    opening_with("250-relay.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 AUTH PLAIN\r\n", auth)
}

/// A relay's side of opening a session to `example.com`: STARTTLS, then `capabilities` (its
/// EHLO reply over TLS), then AUTH answering `auth` (the line the client must send).
pub fn opening_with(capabilities: &'static str, auth: &'static str) -> Vec<Step> {
    vec![
        Step::Say("220 relay.test ESMTP\r\n"),
        Step::Expect("EHLO example.com\r\n"),
        Step::Say("250-relay.test\r\n250 STARTTLS\r\n"),
        Step::Expect("STARTTLS\r\n"),
        Step::Say("220 go\r\n"),
        Step::Expect("EHLO example.com\r\n"),
        Step::Say(capabilities),
        Step::Expect(auth),
        Step::Say("235 2.7.0 ok\r\n"),
    ]
}

/// POSTs `body` as JSON to `path` with the API key, and `Prefer: respond-async` when `queued`.
pub fn post_json(env: &ScriptedEnv, path: &str, body: &serde_json::Value, queued: bool) -> (u16, serde_json::Value) {
    let mut req = Req::new("POST", path, body.to_string())
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-one");
    if queued {
        req = req.header("prefer", "respond-async");
    }
    let (response, json) = call(env, req);
    (response.status, json)
}

/// AUTH PLAIN for user `dev`, password `secret`.
pub const AUTH_DEV_SECRET: &str = "AUTH PLAIN AGRldgBzZWNyZXQ=\r\n";

/// The settings the scripted relay of `chunking_opening` expects (relay.test, user `dev`,
/// password `secret`, key `key-one`), with `extra` after them.
pub fn relay_vars(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars = vec![
        ("SMTP_HOST", "relay.test"),
        ("SMTP_USERNAME", "dev"),
        ("SMTP_PASSWORD", "secret"),
        ("MAIL_FROM", "Site <noreply@example.com>"),
        ("API_KEYS", "key-one"),
    ];
    vars.extend_from_slice(extra);
    vars
}
