"""DKIM under workerd, verified by an independent verifier: keys made with openssl at test
time (RSA 2048 and Ed25519, PKCS#8), signatures made by workerd's WebCrypto, and dkimpy
checking each received message against the public key (supplied in place of DNS). A message
with attachments and non-ASCII headers verifies; a tampered copy, or one with a From
prepended, does not."""

import base64
import subprocess
import uuid

import dkim
import pytest

from conftest import Client

SELECTORS = {"rsa": "rsa2026", "ed25519": "ed2026"}


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def key_pair(kind: str) -> tuple[str, bytes]:
    """A PKCS#8 PEM private key and the DNS TXT record of its public key."""
    if kind == "rsa":
        pem = openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
        public = openssl("pkey", "-pubout", "-outform", "DER", data=pem)
        return pem.decode(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    pem = openssl("genpkey", "-algorithm", "ed25519")
    # RFC 8463: p= is the raw 32-byte key, the end of its SubjectPublicKeyInfo.
    public = openssl("pkey", "-pubout", "-outform", "DER", data=pem)[-32:]
    return pem.decode(), b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)


@pytest.fixture(scope="module")
def signers(stack):
    keys = {kind: key_pair(kind) for kind in SELECTORS}
    workers = stack.start_workers({
        f"dkim_{kind}": {"SMTP_SESSIONS": "0", "DKIM_SELECTOR": SELECTORS[kind],
                         # One line: a .dev.vars value cannot hold line breaks, so \n stands for them.
                         "DKIM_PRIVATE_KEY": pem.strip().replace("\n", "\\n")}
        for kind, (pem, _) in keys.items()
    })
    return {kind: (Client(workers[f"dkim_{kind}"]), keys[kind][1]) for kind in SELECTORS}


def dns_for(kind: str, record: bytes):
    def lookup(name, timeout=5):
        wanted = f"{SELECTORS[kind]}._domainkey.edge-mailer.localhost."
        return record if name.decode().rstrip(".") + "." == wanted else None
    return lookup


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_received_messages_verify_and_tampered_copies_do_not(signers, client, kind):
    worker, record = signers[kind]
    tag = uuid.uuid4().hex
    status, _, answer = worker.send({
        "from": "Jürgen Groß <app@edge-mailer.localhost>", "to": "Zoë <someone@example.org>",
        "subject": f"Grüße aus Köln — {tag}", "text": "Hällo  wörld \n\nline", "html": "<p>Hällo</p>",
        "headers": {"X-Campaign": "straße 5"},
        "attachments": [{"filename": "résumé.pdf", "content": base64.b64encode(bytes(range(256)) * 40).decode()},
                        {"filename": "a.txt", "content": base64.b64encode(b"plain  text \r\n").decode()}],
    })
    assert status == 200, answer
    raw, received = client.wait_for_message(answer["message_id"])  # the subject is encoded: the tag is not in it as is
    assert tag in received["Subject"]
    # What Postfix added on top (Return-Path, Received, …) is not signed; verify from our header.
    signed = raw[raw.index(b"DKIM-Signature:"):]
    assert signed.startswith(f"DKIM-Signature: v=1; a={'rsa' if kind == 'rsa' else 'ed25519'}-sha256;".encode())
    assert b"d=edge-mailer.localhost; s=" + SELECTORS[kind].encode() in signed
    assert dkim.verify(signed, dnsfunc=dns_for(kind, record)), "dkimpy could not verify the signature"

    # One character of the last part's base64 changed (Postfix stores the message with LF).
    at = signed.rindex(b"cGxhaW4")
    tampered_body = signed[:at] + b"Q" + signed[at + 1:]
    assert not dkim.verify(tampered_body, dnsfunc=dns_for(kind, record))
    at = signed.index(b"\nSubject: ") + len(b"\nSubject: ")
    tampered_subject = signed[:at] + b"Re: " + signed[at:]
    assert not dkim.verify(tampered_subject, dnsfunc=dns_for(kind, record))
    # A From added under the signature's header, where a forwarder would put it.
    end_of_signature = signed.index(b"\n", signed.index(b"\tb=")) + 1
    while signed[end_of_signature:end_of_signature + 1] in (b" ", b"\t"):
        end_of_signature = signed.index(b"\n", end_of_signature) + 1
    prepended = signed[:end_of_signature] + b"From: Boss <ceo@example.org>\n" + signed[end_of_signature:]
    assert not dkim.verify(prepended, dnsfunc=dns_for(kind, record)), "a prepended From must break the signature"
