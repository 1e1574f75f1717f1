// Resend's own Node SDK against the local Worker: RESEND_BASE_URL points it at edge-mailer,
// RESEND_API_KEY is one of the Worker's API_KEYS. Run by tests/e2e/test_resend.py, which
// checks what it prints (one JSON object) and what reached the relay's inbox.
//
//   RESEND_BASE_URL=http://127.0.0.1:8787 RESEND_API_KEY=… TAG=… FROM=… node tests/e2e/resend_sdk.mjs
import { Resend } from "resend";

const { TAG: tag, FROM: from } = process.env;
const resend = new Resend(process.env.RESEND_API_KEY);
const to = "someone@example.org";
const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) % 256));
const results = {};

results.send = await resend.emails.send({
  from, to: [to], subject: `sdk send ${tag}`, html: `<p>html ${tag}</p>`, text: `text ${tag}`,
  tags: [{ name: "case", value: "send" }], headers: { "X-Entity-Ref-ID": tag },
});
results.attachment = await resend.emails.send({
  from, to, subject: `sdk attachment ${tag}`, text: "see the file",
  attachments: [{ filename: "data.bin", content: bytes }],
});
results.batch = await resend.batch.send([
  { from, to, subject: `sdk batch one ${tag}`, text: "one" },
  { from, to, subject: `sdk batch two ${tag}`, text: "two" },
]);
results.invalid = await resend.emails.send({ from, to: "not an address", subject: "x", text: "y" });
results.wrong_key = await new Resend("re_not_a_key_of_this_worker").emails.send({ from, to, subject: "x", text: "y" });

// The status of the first message, until the queue has delivered it.
const id = results.send.data?.id;
const deadline = Date.now() + 60_000;
do {
  results.get = await resend.emails.get(id);
  if (results.get.data?.last_event === "delivered") break;
  await new Promise((resolve) => setTimeout(resolve, 300));
} while (id && Date.now() < deadline);

console.log(JSON.stringify(results));
