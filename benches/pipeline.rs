//! What every request costs in CPU before and after the network, measured natively: the JSON
//! body parsed and validated, the message rendered, and its bytes made ready for the wire.
//!
//!     cargo bench --bench pipeline
//!
//! Three requests: a small text + HTML message, one with a 1 MB attachment, and a form post.

use std::hint::black_box;

use base64::{engine::general_purpose::STANDARD, Engine};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge_mailer::config::Config;
use edge_mailer::delivery::transaction::{Submission, Transaction};
use edge_mailer::http::{forms, send};
use edge_mailer::smtp::data::Payload;

fn config() -> Config {
    Config::from_lookup(|name| match name {
        "SMTP_HOST" => Some("smtp.example.com".into()),
        "MAIL_FROM" => Some("Site <noreply@example.com>".into()),
        "ALLOWED_FROM" => Some("*@example.com".into()),
        "FORMS" => Some(r#"{"contact": {"to": "owner@example.com", "subject": "Contact: {{name}}"}}"#.into()),
        _ => None,
    })
    .expect("bench settings")
}

/// Render and encode for the wire: what happens to every submission once it is valid.
fn to_wire(submission: &Submission, config: &Config) -> usize {
    let transaction =
        Transaction::render(submission, Vec::new(), &config.message_id_domain, 1_764_000_000_000).expect("render");
    let payload = Payload::for_bdat(&transaction.message).expect("wire");
    payload.pieces(64 * 1024).map(|piece| piece.len()).sum()
}

fn send_body(attachment: Option<&[u8]>) -> Vec<u8> {
    let mut body = serde_json::json!({
        "from": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "to": ["Grace Hopper <grace@example.org>", "linus@example.net"],
        "reply_to": "ada@example.com",
        "subject": "Quarterly report — numbers for März",
        "text": "Hello,\n\nthe numbers are attached. Let me know what you think.\n\nAda\n".repeat(4),
        "html": "<p>Hello,</p><p>the numbers are <b>attached</b>. Let me know what you think.</p><p>Ada</p>".repeat(4),
        "headers": {"X-Campaign": "q3"},
    });
    if let Some(data) = attachment {
        body["attachments"] = serde_json::json!([{"filename": "report.pdf", "content_type": "application/pdf",
            "content": STANDARD.encode(data)}]);
    }
    body.to_string().into_bytes()
}

fn pipeline(c: &mut Criterion) {
    let config = config();
    let small = send_body(None);
    let attachment: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let large = send_body(Some(&attachment));
    let form_body = b"name=Ada+Lovelace&email=ada%40example.com&phone=%2B44+20+7946+0000\
        &message=Hello%2C+I+would+like+to+know+more+about+your+analytical+engine.%0D%0AThanks!"
        .to_vec();
    let form = config.forms.get("contact").unwrap();

    let mut group = c.benchmark_group("per request");
    for (name, body) in [("send, small text + HTML", &small), ("send, 1 MB attachment", &large)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name}: parse + validate"), |b| {
            b.iter(|| send::parse(black_box(body), &config).expect("valid"))
        });
        let submission = send::parse(body, &config).expect("valid");
        group.bench_function(format!("{name}: render + wire"), |b| b.iter(|| to_wire(black_box(&submission), &config)));
        group.bench_function(format!("{name}: all"), |b| {
            b.iter(|| to_wire(&send::parse(black_box(body), &config).expect("valid"), &config))
        });
    }
    group.throughput(Throughput::Bytes(form_body.len() as u64));
    group.bench_function("form post (urlencoded): all", |b| {
        b.iter(|| {
            let fields = forms::urlencoded_fields(black_box(&form_body));
            to_wire(&forms::submission(&config, "contact", form, fields).expect("valid"), &config)
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
