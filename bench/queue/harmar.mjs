// The harmar side of bench/queue.sh: N echo tasks created through POST /v1/tasks by PRODUCERS
// concurrent clients, claimed by 4 workers through POST /v1/daemon/tasks/pending (batches of
// BATCH, long-poll) and completed one by one through POST /v1/daemon/tasks/{id}/result — the
// HTTP API `harmar agent` uses. Prints "jobs_per_s elapsed_s".
import http from 'node:http';

const [base, token, keysJson, nText, producersText, batchText] = process.argv.slice(2);
const keys = JSON.parse(keysJson);
const N = Number(nText), PRODUCERS = Number(producersText), BATCH = Number(batchText);
const url = new URL(base);
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

function call(method, path, body, bearer) {
  const data = body === undefined ? '' : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data),
                 Authorization: `Bearer ${bearer}` } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 200)}`));
        else resolve(text ? JSON.parse(text) : null);
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

let created = 0, completed = 0;
const start = process.hrtime.bigint();

async function producer() {
  while (created < N) {
    const i = created++;
    await call('POST', '/v1/tasks', { type: 'echo', payload: { i } }, token);
  }
}

async function worker(key) {
  while (completed < N) {
    const r = await call('POST', '/v1/daemon/tasks/pending', { max: BATCH, wait_s: 1, types: ['echo'] }, key);
    await Promise.all(r.tasks.map(async (t) => {
      await call('POST', `/v1/daemon/tasks/${t.id}/result`, { status: 'succeeded', result: t.payload, attempt: t.attempts }, key);
      completed++;
    }));
  }
}

await Promise.all([...Array(PRODUCERS)].map(producer).concat(keys.map(worker)));
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`${(N / elapsed).toFixed(0)} ${elapsed.toFixed(2)}`);
agent.destroy();
