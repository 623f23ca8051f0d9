// The herd's devices, in Node (one event loop, no Python on the client side):
// node herd_client.mjs PLAN.json > RESULT.json
//
// PLAN: {"base": "http://127.0.0.1:PORT", "checkin_body": "...", "polls": ["/repos/x/metadata/2.root.json", ...],
//        "timeout_ms": 30000, "devices": [{"at": ms, "token": "..."} | {"at": ms, "enroll": {...}}]}
// Each device starts at its own time "at" (ms after the start), whatever the others do: an open
// loop, so a slow server does not slow the arrivals down (and its slowness shows in the latencies).
// Each device opens its own connection (kept alive for its requests): enroll if it has no token,
// check in, then GET each poll path.  Prints one JSON object: latencies (ms) per request kind,
// statuses per kind, socket errors, the tokens enrolled, and the seconds it all took.
import fs from 'node:fs';
import http from 'node:http';

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = new URL(plan.base);
const timeoutMs = plan.timeout_ms ?? 30000;
const lat = { enroll: [], checkin: [], poll: [] };
const statuses = { enroll: {}, checkin: {}, poll: {} };
const errors = [];
const timeline = [];  // [arrival ms, check-in ms] per device: where in the window the time went
const tokens = new Array(plan.devices.length).fill(null);

function request(agent, method, path, body, headers) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const data = body === null ? null : Buffer.from(body);
    const h = { ...headers };
    if (data) { h['Content-Type'] = 'application/json'; h['Content-Length'] = data.length; }
    const req = http.request({ host: base.hostname, port: base.port, method, path, agent, headers: h,
                               timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks),
                                    ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
      res.on('error', (e) => resolve({ error: String(e) }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ error: `${method} ${path}: ${e.message}` }));
    if (data) req.write(data);
    req.end();
  });
}

function count(kind, r) {
  if (r.error) { errors.push(r.error.slice(0, 200)); return false; }
  lat[kind].push(r.ms);
  statuses[kind][r.status] = (statuses[kind][r.status] ?? 0) + 1;
  return true;
}

async function device(i) {
  const d = plan.devices[i];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    let token = d.token;
    if (!token) {
      const r = await request(agent, 'POST', '/api/v1/enroll', JSON.stringify(d.enroll), {});
      if (!count('enroll', r) || r.status !== 200) {
        if (!r.error) errors.push(`enroll ${r.status} ${r.body.toString().slice(0, 160)}`);
        return;
      }
      token = JSON.parse(r.body).token;
      tokens[i] = token;
    }
    const c = await request(agent, 'POST', '/api/v1/checkin', plan.checkin_body,
                            { Authorization: `Bearer ${token}` });
    if (!c.error) timeline.push([d.at, Math.round(c.ms)]);
    if (count('checkin', c) && c.status !== 200) errors.push(`checkin ${c.status} ${c.body.toString().slice(0, 160)}`);
    for (const path of plan.polls ?? []) count('poll', await request(agent, 'GET', path, null, {}));
  } finally {
    agent.destroy();
  }
}

const started = process.hrtime.bigint();
const all = [];
for (let i = 0; i < plan.devices.length; i++) {
  all.push(new Promise((resolve) => setTimeout(() => device(i).then(resolve), plan.devices[i].at)));
}
await Promise.all(all);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stdout.write(JSON.stringify({ seconds, latencies: lat, statuses, errors, tokens, timeline }));
