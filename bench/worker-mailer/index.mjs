// POST /send: one message through worker-mailer, as its README shows it (connect, send); the
// answer goes out as soon as the message is accepted and close() (QUIT) follows in waitUntil,
// as edge-mailer does, so both are timed to the relay's acceptance.
import { LogLevel, WorkerMailer } from "worker-mailer";

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/v1/health") return Response.json({ ok: true });
    if (request.method !== "POST" || url.pathname !== "/send") return new Response("not found", { status: 404 });
    const secure = env.SMTP_SECURITY === "tls";
    const mailer = await WorkerMailer.connect({
      host: env.SMTP_HOST,
      port: Number(env.SMTP_PORT),
      secure,
      startTls: !secure,
      credentials: { username: env.SMTP_USERNAME, password: env.SMTP_PASSWORD },
      authType: "plain",
      // Errors only, as edge-mailer logs only failed requests: its default (INFO) logs every
      // send, which under `wrangler dev` costs wrangler's own process CPU for each line.
      logLevel: LogLevel.ERROR,
    });
    const { to, subject, text, html } = await request.json();
    await mailer.send({ from: { name: "edge-mailer bench", email: env.MAIL_FROM_ADDRESS }, to: { email: to }, subject, text, html });
    ctx.waitUntil(mailer.close());
    return Response.json({ ok: true });
  },
};
