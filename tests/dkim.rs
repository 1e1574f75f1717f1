//! DKIM natively: with a key set, every message reaches the relay signed — the
//! DKIM-Signature header first, its body hash right, its signature over the header fields it
//! names (the scripted platform "signs" with a SHA-256, so what it covered shows) — and a
//! bad key is a misconfiguration that never shows the key. dkimpy verifies real signatures in
//! the e2e suite.

use base64::{engine::general_purpose::STANDARD, Engine};

use crate::support::{call, chunking_opening, relay_vars, Req, ScriptedEnv, ScriptedRelay, Step::*, AUTH_DEV_SECRET};

/// RFC 8410 §10.3's Ed25519 private key, as a one-line secret with `\n` escapes.
const ED25519_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\\n-----END PRIVATE KEY-----";

fn send(env: &ScriptedEnv) -> (u16, serde_json::Value) {
    let body = r#"{"to": "a@example.org", "subject": "Grüße  aus  Köln", "text": "Hello  there \r\n\r\n", "attachments": [{"filename": "a.txt", "content": "aGk="}]}"#;
    let req = Req::new("POST", "/v1/send", body)
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-one");
    let (response, json) = call(env, req);
    (response.status, json)
}

fn tag<'a>(header: &'a str, name: &str) -> &'a str {
    let start = header.find(&format!(" {name}=")).unwrap_or_else(|| panic!("no {name}= in {header}")) + name.len() + 2;
    header[start..].split(';').next().unwrap().trim()
}

#[test]
fn every_message_is_signed_for_the_from_domain_with_from_signed_twice() {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    script.extend([
        ExpectChunked,
        Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n"),
        Expect("QUIT\r\n"),
        Say("221 Bye\r\n"),
    ]);
    let vars = relay_vars(&[("SMTP_SESSIONS", "0"), ("DKIM_PRIVATE_KEY", ED25519_PEM), ("DKIM_SELECTOR", "mail2026")]);
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &vars);
    let (status, json) = send(&env);
    assert_eq!(status, 200, "{json}");
    let data = String::from_utf8(env.relay.seen.borrow().data.clone()).unwrap();
    assert!(
        data.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com; s=mail2026;"),
        "{data}"
    );
    let (head, body) = data.split_once("\r\n\r\n").unwrap();
    let header = head
        .split("\r\n")
        .take_while(|l| l.starts_with("DKIM-Signature:") || l.starts_with('\t'))
        .collect::<Vec<_>>()
        .join("\r\n");
    let unfolded: String = header.split("\r\n").map(str::trim_start).collect::<Vec<_>>().join(" ");
    let signed = tag(&unfolded, "h");
    assert!(signed.starts_with("from:from:subject:date:to:message-id:mime-version:content-type"), "{signed}");
    assert_eq!(tag(&unfolded, "bh"), STANDARD.encode(edge_mailer::dkim::body_hash(body.as_bytes())));
    // ed25519-sha256 signs the SHA-256 of the canonical header fields; the scripted
    // "signature" is the SHA-256 of that digest.
    let b: String = tag(&unfolded, "b").chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(STANDARD.decode(&b).unwrap().len(), 32);
}

#[test]
fn a_key_that_is_not_usable_is_a_misconfiguration_that_never_shows_it() {
    for (key, selector, wanted) in [
        ("-----BEGIN RSA PRIVATE KEY-----\\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\\n-----END RSA PRIVATE KEY-----", "s", "DKIM_PRIVATE_KEY must be a PKCS#8 PEM"),
        (ED25519_PEM, "", "DKIM_SELECTOR must be set"),
    ] {
        let vars = relay_vars(&[("DKIM_PRIVATE_KEY", key), ("DKIM_SELECTOR", selector)]);
        let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &vars);
        let (status, json) = send(&env);
        assert_eq!((status, json["error"]["code"].as_str()), (500, Some("misconfigured")), "{json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(wanted), "{message}");
        assert!(!message.contains("MC4CAQAw") && !message.contains("MIIBOg"), "the key shows: {message}");
    }
}
