//! Records in Durable Object storage and the calls between the Worker and its objects, as the
//! code before serde wrote them (src/json.rs, printed from commit 5bcaca1 with these samples):
//! serde must write the same bytes, and read them back to the same values.

use serde::de::DeserializeOwned;
use serde::Serialize;

use edge_mailer::delivery::key::{KeyAnswer, KeyCall, KeyRecord};
use edge_mailer::delivery::queue::{Claimed, Record, RecordParts, Status, Tag};
use edge_mailer::delivery::ratelimit::Decision;
use edge_mailer::delivery::record::{Event, EventType, RECORD_VERSION};
use edge_mailer::delivery::transaction::{Outcome, Rejected, Sent, SessionUse, Transaction};
use edge_mailer::error::{ApiError, ErrorCode, SmtpDetail};
use edge_mailer::smtp::envelope::{Dsn, Notify};
use edge_mailer::smtp::transcript::Transcript;

fn smtp() -> SmtpDetail {
    SmtpDetail { code: 250, enhanced: Some("2.0.0".into()), text: "queued as \"x\"\n é".into(), phase: "data".into() }
}

fn error() -> ApiError {
    let mut error = ApiError::new(ErrorCode::RelayBusy, "try later").with_smtp(SmtpDetail {
        code: 451,
        enhanced: None,
        text: "busy".into(),
        phase: "mail".into(),
    });
    error.details.push(("to".into(), "bad".into()));
    error.message_id = Some("<a@b>".into());
    error.retry_after = Some(30);
    error
}

fn record(full: bool) -> Record {
    Record::from_parts(RecordParts {
        v: RECORD_VERSION,
        id: "0123456789abcdef0123456789abcdef".into(),
        status: if full { Status::Failed } else { Status::Queued },
        message_id: "<m@example.com>".into(),
        attempts: 3,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_001_000,
        next_attempt_at: full.then_some(1_700_000_060_000),
        accepted: vec!["a@example.org".into()],
        rejected: if full {
            vec![Rejected { email: "r@example.org".into(), code: None, smtp: Some(smtp()), retryable: true }]
        } else {
            vec![]
        },
        smtp: full.then(smtp),
        last_error: full.then(error),
        form: full.then(|| "contact".into()),
        dead_lettered: full,
        from: "Site <noreply@example.com>".into(),
        to: vec!["a@example.org".into(), "b@example.org".into()],
        subject: "Grüße".into(),
        tags: if full { vec![Tag { name: "k".into(), value: "v".into() }] } else { vec![] },
        scheduled_at: full.then_some(1_700_000_100_000),
        relay_slot_at: None,
        events: vec![],
    })
}

fn transcript() -> Transcript {
    let mut transcript = Transcript::default();
    transcript.note(0, "connected");
    transcript.sent_message(12, 345);
    transcript
}

fn sent() -> Sent {
    Sent {
        message_id: "<m@example.com>".into(),
        accepted: vec!["a@example.org".into()],
        rejected: vec![Rejected { email: "r@example.org".into(), code: None, smtp: Some(smtp()), retryable: false }],
        smtp: smtp(),
    }
}

struct Samples {
    records: Vec<Record>,
    key_records: Vec<KeyRecord>,
    key_calls: Vec<KeyCall>,
    key_answers: Vec<KeyAnswer>,
    claims: Vec<Claimed>,
    decisions: Vec<Decision>,
    outcomes: Vec<Outcome>,
    transactions: Vec<Transaction>,
    errors: Vec<ApiError>,
}

fn samples() -> Samples {
    Samples {
        records: vec![record(true), record(false)],
        key_records: vec![
            KeyRecord { body: "d1".into(), claim: "c1".into(), answer: None, expires_at_ms: 5 },
            KeyRecord {
                body: "d1".into(),
                claim: "c1".into(),
                answer: Some((200, "{\"ok\":true}".into())),
                expires_at_ms: 5,
            },
        ],
        key_calls: vec![
            KeyCall::Begin { body: "d".into(), claim: "c".into(), now_ms: 1, pending_ms: 2 },
            KeyCall::Finish { body: "d".into(), claim: "c".into(), now_ms: 1, answer: Some((422, "x".into())) },
            KeyCall::Finish { body: "d".into(), claim: "c".into(), now_ms: 1, answer: None },
        ],
        key_answers: vec![
            KeyAnswer::Claimed,
            KeyAnswer::Replay { status: 200, body: "b".into() },
            KeyAnswer::Conflict,
            KeyAnswer::InProgress,
            KeyAnswer::Done,
        ],
        claims: vec![Claimed::Granted(record(false)), Claimed::Done, Claimed::Busy(59_000)],
        decisions: vec![Decision { allowed: false, retry_after: 7 }],
        outcomes: vec![
            Outcome { result: Ok(sent()), transcript: transcript(), round_trips: 4, session: SessionUse::Warm },
            Outcome {
                result: Err(error()),
                transcript: Transcript::default(),
                round_trips: 0,
                session: SessionUse::New,
            },
        ],
        transactions: vec![
            Transaction {
                message_id: "<m@example.com>".into(),
                sender: "s@example.com".into(),
                recipients: vec!["a@example.org".into()],
                suppressed: vec![],
                dsn: Some(Dsn {
                    notify: Some(vec![Notify::Failure, Notify::Delay]),
                    return_headers_only: Some(true),
                    envelope_id: Some("e1".into()),
                }),
                utf8_headers: true,
                message: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            },
            Transaction {
                message_id: "<m@example.com>".into(),
                sender: "s@example.com".into(),
                recipients: vec![],
                suppressed: vec![],
                dsn: Some(Dsn::default()),
                utf8_headers: false,
                message: vec![],
            },
        ],
        errors: vec![error(), ApiError::new(ErrorCode::InvalidRequest, "x")],
    }
}

/// One line per sample, in the order of [`Samples`]; a transaction's message follows its JSON
/// after a line feed (`\n` and `\r` written out here).
const WRITTEN_BEFORE_SERDE: &[&str] = &[
    r#"{"id":"0123456789abcdef0123456789abcdef","status":"failed","message_id":"<m@example.com>","attempts":3,"created_at":1700000000000,"updated_at":1700000001000,"next_attempt_at":1700000060000,"accepted":["a@example.org"],"rejected":[{"email":"r@example.org","smtp":{"code":250,"enhanced":"2.0.0","text":"queued as \"x\"\n é","phase":"data"},"retryable":true}],"smtp":{"code":250,"enhanced":"2.0.0","text":"queued as \"x\"\n é","phase":"data"},"last_error":{"code":"relay_busy","message":"try later","smtp":{"code":451,"enhanced":null,"text":"busy","phase":"mail"},"message_id":"<a@b>","retry_after":30,"details":[["to","bad"]]},"form":"contact","dead_lettered":true,"from":"Site <noreply@example.com>","to":["a@example.org","b@example.org"],"subject":"Grüße","tags":[{"name":"k","value":"v"}],"scheduled_at":1700000100000}"#,
    r#"{"id":"0123456789abcdef0123456789abcdef","status":"queued","message_id":"<m@example.com>","attempts":3,"created_at":1700000000000,"updated_at":1700000001000,"accepted":["a@example.org"],"rejected":[],"from":"Site <noreply@example.com>","to":["a@example.org","b@example.org"],"subject":"Grüße"}"#,
    r#"{"body":"d1","claim":"c1","answer":null,"expires_at_ms":5}"#,
    r#"{"body":"d1","claim":"c1","answer":[200,"{\"ok\":true}"],"expires_at_ms":5}"#,
    r#"{"Begin":{"body":"d","claim":"c","now_ms":1,"pending_ms":2}}"#,
    r#"{"Finish":{"body":"d","claim":"c","now_ms":1,"answer":[422,"x"]}}"#,
    r#"{"Finish":{"body":"d","claim":"c","now_ms":1,"answer":null}}"#,
    r#""Claimed""#,
    r#"{"Replay":{"status":200,"body":"b"}}"#,
    r#""Conflict""#,
    r#""InProgress""#,
    r#""Done""#,
    r#"{"Granted":{"id":"0123456789abcdef0123456789abcdef","status":"queued","message_id":"<m@example.com>","attempts":3,"created_at":1700000000000,"updated_at":1700000001000,"accepted":["a@example.org"],"rejected":[],"from":"Site <noreply@example.com>","to":["a@example.org","b@example.org"],"subject":"Grüße"}}"#,
    r#""Done""#,
    r#"{"Busy":59000}"#,
    r#"{"allowed":false,"retry_after":7}"#,
    r#"{"result":{"Ok":{"message_id":"<m@example.com>","accepted":["a@example.org"],"rejected":[{"email":"r@example.org","smtp":{"code":250,"enhanced":"2.0.0","text":"queued as \"x\"\n é","phase":"data"},"retryable":false}],"smtp":{"code":250,"enhanced":"2.0.0","text":"queued as \"x\"\n é","phase":"data"}}},"transcript":[{"at_ms":0,"from":"client","line":"<connected>"},{"at_ms":12,"from":"client","line":"<message, 345 bytes>"}],"round_trips":4,"session":"warm"}"#,
    r#"{"result":{"Err":{"code":"relay_busy","message":"try later","smtp":{"code":451,"enhanced":null,"text":"busy","phase":"mail"},"message_id":"<a@b>","retry_after":30,"details":[["to","bad"]]}},"transcript":[],"round_trips":0,"session":"new"}"#,
    r#"{"message_id":"<m@example.com>","sender":"s@example.com","recipients":["a@example.org"],"dsn":{"notify":["Failure","Delay"],"return_headers_only":true,"envelope_id":"e1"},"utf8_headers":true}\nSubject: x\r\n\r\nbody\r\n"#,
    r#"{"message_id":"<m@example.com>","sender":"s@example.com","recipients":[],"dsn":{"notify":null,"return_headers_only":null,"envelope_id":null},"utf8_headers":false}\n"#,
    r#"{"code":"relay_busy","message":"try later","smtp":{"code":451,"enhanced":null,"text":"busy","phase":"mail"},"message_id":"<a@b>","retry_after":30,"details":[["to","bad"]]}"#,
    r#"{"code":"invalid_request","message":"x","smtp":null,"message_id":null,"retry_after":null,"details":[]}"#,
];

/// `value` is written as `before`, and `before` reads back to a value written the same way.
fn same<T: Serialize + DeserializeOwned>(value: &T, before: &str) {
    let written = serde_json::to_string(value).unwrap();
    assert_eq!(written, before);
    let read: T = serde_json::from_str(before).unwrap_or_else(|e| panic!("{before}: {e}"));
    assert_eq!(serde_json::to_string(&read).unwrap(), before);
}

/// A record written before version 2 reads back to `value`, which is written as it was with
/// `"v":2` first.
fn same_record<T: Serialize + DeserializeOwned>(value: &T, before: &str) {
    let now = before.replacen(r#"{"id":"#, r#"{"v":2,"id":"#, 1);
    assert_eq!(serde_json::to_string(value).unwrap(), now);
    let read: T = serde_json::from_str(before).unwrap_or_else(|e| panic!("{before}: {e}"));
    assert_eq!(serde_json::to_string(&read).unwrap(), now);
}

#[test]
fn a_record_of_before_version_2_that_says_delivered_reads_as_sent() {
    let before = WRITTEN_BEFORE_SERDE[1].replace(r#""status":"queued""#, r#""status":"delivered""#);
    let read: Record = serde_json::from_str(&before).unwrap();
    assert_eq!((read.status, read.v, read.events.len()), (Status::Sent, RECORD_VERSION, 0));
    // Written since, "delivered" means what a report said, and stays.
    let mut delivered = record(false);
    delivered.status = Status::Delivered;
    delivered.push_event(Event::new(EventType::Delivered, 5));
    let read: Record = serde_json::from_str(&serde_json::to_string(&delivered).unwrap()).unwrap();
    assert_eq!(read, delivered);
    assert_eq!(read.last_event(), Some(EventType::Delivered));
}

#[test]
fn records_and_calls_read_and_write_as_before_serde() {
    let s = samples();
    let mut lines = WRITTEN_BEFORE_SERDE.iter().copied();
    let mut next = || lines.next().expect("a line per sample");
    s.records.iter().for_each(|v| same_record(v, next()));
    s.key_records.iter().for_each(|v| same(v, next()));
    s.key_calls.iter().for_each(|v| same(v, next()));
    s.key_answers.iter().for_each(|v| same(v, next()));
    same_record(&s.claims[0], next());
    s.claims[1..].iter().for_each(|v| same(v, next()));
    s.decisions.iter().for_each(|v| same(v, next()));
    s.outcomes.iter().for_each(|v| same(v, next()));
    for transaction in &s.transactions {
        let bytes = next().replace("\\r", "\r").replace("\\n", "\n");
        assert_eq!(String::from_utf8(transaction.to_bytes()).unwrap(), bytes);
        let read = Transaction::from_bytes(bytes.as_bytes()).expect("reads back");
        assert_eq!((read.to_bytes(), read.message), (transaction.to_bytes(), transaction.message.clone()));
    }
    s.errors.iter().for_each(|v| same(v, next()));
    assert_eq!(lines.next(), None, "a sample per line");
}
