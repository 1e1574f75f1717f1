// Verifies webhooks as a receiver would: with the `resend` SDK's webhooks.verify and with the
// `standardwebhooks` library (the reference implementation of Standard Webhooks). Run by
// tests/e2e/test_webhooks.py: a JSON list of {"body", "headers"} on stdin, the secret in
// WEBHOOK_SECRET; prints one JSON list, per webhook what each verifier said.
import { Resend } from "resend";
import { Webhook } from "standardwebhooks";

const secret = process.env.WEBHOOK_SECRET;
const received = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => { text += chunk; });
  process.stdin.on("end", () => resolve(text));
}));
const resend = new Resend("re_unused_for_verifying");
const standard = new Webhook(secret);

const outcome = (verify) => {
  try {
    return { ok: true, type: verify().type };
  } catch (error) {
    return { ok: false, error: String(error) };
  }
};
console.log(JSON.stringify(received.map(({ body, headers }) => ({
  resend: outcome(() => resend.webhooks.verify({
    payload: body,
    headers: { id: headers["svix-id"], timestamp: headers["svix-timestamp"], signature: headers["svix-signature"] },
    webhookSecret: secret,
  })),
  standard: outcome(() => standard.verify(body, {
    "webhook-id": headers["webhook-id"],
    "webhook-timestamp": headers["webhook-timestamp"],
    "webhook-signature": headers["webhook-signature"],
  })),
}))));
