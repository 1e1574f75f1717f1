// Takes a CPU profile of a Worker under `wrangler dev` through workerd's DevTools endpoint.
//
//   node scripts/cpu-profile.mjs <inspector port> <out.cpuprofile>
//
// Starts the profiler, prints "started", and stops when a line arrives on stdin; then writes
// the profile (open it in Chrome DevTools or speedscope), the source of every script it ran
// beside it (<out>.<script name>, to read a frame's line), and prints the functions with the
// most self time as JSON lines: {"self_ms", "share", "function", "url"}. The self times are
// samples × the mean interval: read them as shares, not as CPU (scripts/bench measures that).
import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import WebSocket from "ws";

const [port, out] = process.argv.slice(2);
const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
const socket = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => { socket.on("open", resolve); socket.on("error", reject); });

let next = 0;
const waiting = new Map();
socket.on("message", (raw) => {
  const message = JSON.parse(raw);
  if (message.id !== undefined && waiting.has(message.id)) {
    waiting.get(message.id)(message);
    waiting.delete(message.id);
  }
});
function call(method, params = {}) {
  const id = ++next;
  socket.send(JSON.stringify({ id, method, params }));
  return new Promise((resolve) => waiting.set(id, resolve));
}

// The scripts, so that a frame's line can be read in its source (written beside the profile).
const scripts = [];
socket.on("message", (raw) => {
  const message = JSON.parse(raw);
  if (message.method === "Debugger.scriptParsed" && message.params.url.endsWith(".js")) scripts.push(message.params);
});
await call("Debugger.enable");
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 50 });
await call("Profiler.start");
console.log("started");
await new Promise((resolve) => createInterface({ input: process.stdin }).once("line", resolve));
const { result } = await call("Profiler.stop");
const profile = result.profile;
writeFileSync(out, JSON.stringify(profile));
for (const script of scripts) {
  const { result: source } = await call("Debugger.getScriptSource", { scriptId: script.scriptId });
  if (source?.scriptSource) writeFileSync(`${out}.${script.url.split("/").pop()}`, source.scriptSource);
}
await call("Debugger.disable");

// Self time per function: samples × the mean interval between them.
const total = profile.endTime - profile.startTime; // µs
const perSample = total / Math.max(1, profile.samples.length);
const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
for (const id of profile.samples) {
  const frame = byNode.get(id).callFrame;
  const key = `${frame.functionName || "(anonymous)"}\u0000${frame.url}`;
  self.set(key, (self.get(key) ?? 0) + perSample);
}
const busy = [...self].filter(([key]) => !key.startsWith("(idle)") && !key.startsWith("(program)"));
const busyTotal = busy.reduce((sum, [, us]) => sum + us, 0);
for (const [key, us] of busy.sort((a, b) => b[1] - a[1]).slice(0, 40)) {
  const [fn, url] = key.split("\u0000");
  console.log(JSON.stringify({ self_ms: +(us / 1000).toFixed(2), share: +(us / busyTotal).toFixed(4), function: fn, url }));
}
console.log(JSON.stringify({ busy_ms: +(busyTotal / 1000).toFixed(1), wall_ms: +(total / 1000).toFixed(1) }));
socket.close();
