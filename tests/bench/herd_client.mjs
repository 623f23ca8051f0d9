// The herd's devices, in Node (one event loop, no Python on the client side):
// node herd_client.mjs PLAN.json > RESULT.json
//
// PLAN: {"base": "http://127.0.0.1:PORT", "checkin_body": "...", "polls": ["/repos/x/metadata/2.root.json", ...],
//        "timeout_ms": 30000, "deadline_ms": 300000,
//        "devices": [{"at": ms, "token": "..."} | {"at": ms, "enroll": {...}}]}
// Each device starts at its own time "at" (ms after the start), whatever the others do: an open
// loop, so a slow server does not slow the arrivals down (and its slowness shows in the latencies).
// Each device opens its own TCP connection, kept alive for its requests: enroll if it has no token,
// check in, then GET each poll path, then close.  HTTP/1.1 is written and read by hand on plain
// sockets (node's http module costs several times more per request, and the client must not be
// what limits the herd).  After deadline_ms the devices not done count as errors.  Prints one JSON
// object: latencies (ms) per request kind, statuses per kind, errors, the tokens enrolled, and
// [arrival ms, check-in ms] per device; and how late the client's own event loop ran (its p99 and
// max in ms): a late loop reads answers late and inflates every latency measured meanwhile.
import fs from 'node:fs';
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = new URL(plan.base);
const host = base.hostname;
const port = Number(base.port);
const timeoutMs = plan.timeout_ms ?? 30000;
const lat = { enroll: [], checkin: [], poll: [] };
const statuses = { enroll: {}, checkin: {}, poll: {} };
const errors = [];
const timeline = [];
const tokens = new Array(plan.devices.length).fill(null);
let done = 0;
const LOOP_RESOLUTION_MS = 10;  // the histogram records each whole timer interval: this much is not lateness
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
loopDelay.enable();

// One connection: requests one after the other, each answered before the next is sent.
class Connection {
  constructor() {
    this.open();
  }

  open() {
    this.buf = Buffer.alloc(0);
    this.waiting = null;  // {resolve, t0, timer, what}
    this.closed = null;
    this.byServer = false;
    const sock = this.sock = net.connect({ host, port });
    sock.setNoDelay(true);
    sock.on('data', (chunk) => {
      if (sock !== this.sock) return;
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      this.parse();
    });
    sock.on('error', (e) => { if (sock === this.sock) this.fail(e.code || e.message); });
    sock.on('close', () => {
      if (sock !== this.sock) return;
      if (!this.closed) { this.closed = 'connection closed by the server'; this.byServer = true; }
      this.fail(this.closed);
    });
  }

  fail(why) {
    this.closed = this.closed || why;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      clearTimeout(w.timer);
      w.resolve({ error: `${w.what}: ${why}` });
    }
  }

  parse() {
    if (!this.waiting) return;
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buf.subarray(0, end).toString('latin1');
    const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
    const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!m || !len) { this.sock.destroy(); this.fail(`unreadable answer ${JSON.stringify(head.slice(0, 120))}`); return; }
    const total = end + 4 + Number(len[1]);
    if (this.buf.length < total) return;
    const body = this.buf.subarray(end + 4, total);
    this.buf = this.buf.subarray(total);
    if (/\r\nconnection:\s*close/i.test(head)) {  // the server closes: the next request reconnects
      this.closed = 'closed by the server';
      this.byServer = true;
      this.sock.end();
    }
    const w = this.waiting;
    this.waiting = null;
    clearTimeout(w.timer);
    w.resolve({ status: Number(m[1]), body, ms: Number(process.hrtime.bigint() - w.t0) / 1e6 });
  }

  request(method, path, body, headers) {
    return new Promise((resolve) => {
      const what = `${method} ${path}`;
      if (this.closed && this.byServer && !this.waiting) this.open();  // closed after an answer: as a device would, reconnect
      if (this.closed) { resolve({ error: `${what}: ${this.closed}` }); return; }
      let text = `${method} ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n${headers}`;
      const data = body === null ? null : Buffer.from(body);
      if (data) text += `Content-Type: application/json\r\nContent-Length: ${data.length}\r\n`;
      const t0 = process.hrtime.bigint();
      const timer = setTimeout(() => { this.sock.destroy(); this.fail(`no answer within ${timeoutMs} ms`); }, timeoutMs);
      this.waiting = { resolve, t0, timer, what };
      this.sock.write(data ? Buffer.concat([Buffer.from(text + '\r\n', 'latin1'), data]) : text + '\r\n');
    });
  }

  close() { this.closed = this.closed || 'closed'; this.sock.end(); }
}

function count(kind, r) {
  if (r.error) { errors.push(r.error.slice(0, 200)); return false; }
  lat[kind].push(r.ms);
  statuses[kind][r.status] = (statuses[kind][r.status] ?? 0) + 1;
  return true;
}

async function device(i) {
  const d = plan.devices[i];
  const conn = new Connection();
  try {
    let token = d.token;
    if (!token) {
      const r = await conn.request('POST', '/api/v1/enroll', JSON.stringify(d.enroll), '');
      if (!count('enroll', r) || r.status !== 200) {
        if (!r.error) errors.push(`enroll ${r.status} ${r.body.toString().slice(0, 160)}`);
        return;
      }
      token = JSON.parse(r.body).token;
      tokens[i] = token;
    }
    const c = await conn.request('POST', '/api/v1/checkin', plan.checkin_body, `Authorization: Bearer ${token}\r\n`);
    if (!c.error) timeline.push([d.at, Math.round(c.ms)]);
    if (count('checkin', c) && c.status !== 200) errors.push(`checkin ${c.status} ${c.body.toString().slice(0, 160)}`);
    if (c.error) return;
    for (const path of plan.polls ?? []) {
      if (!count('poll', await conn.request('GET', path, null, ''))) return;
    }
  } finally {
    conn.close();
    done += 1;
  }
}

const started = process.hrtime.bigint();
function finish() {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  for (let k = done; k < plan.devices.length; k++) errors.push(`device not done within ${plan.deadline_ms} ms`);
  loopDelay.disable();
  const late = (ns) => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS);
  const loop_delay_ms = { p99: late(loopDelay.percentile(99)), max: late(loopDelay.max) };
  process.stdout.write(JSON.stringify({ seconds, latencies: lat, statuses, errors, tokens, timeline, loop_delay_ms }),
    () => process.exit(0));
}
const all = [];
for (let i = 0; i < plan.devices.length; i++) {
  all.push(new Promise((resolve) => setTimeout(() => device(i).then(resolve), plan.devices[i].at)));
}
const deadline = setTimeout(finish, plan.deadline_ms ?? 600000);
await Promise.all(all);
clearTimeout(deadline);
finish();
