// The BullMQ side of bench/queue.sh: N echo jobs added one by one by PRODUCERS concurrent
// producers, processed by 4 Workers (each with CONCURRENCY) that return the job's data.
// Prints "jobs_per_s elapsed_s".
import { Queue, Worker } from 'bullmq';

const [redisUrl, nText, producersText, concurrencyText] = process.argv.slice(2);
const N = Number(nText), PRODUCERS = Number(producersText), CONCURRENCY = Number(concurrencyText);
const u = new URL(redisUrl);
const connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
const name = `bench-${process.pid}`;
const queue = new Queue(name, { connection });
await queue.waitUntilReady();

let completed = 0;
let done;
const finished = new Promise((r) => { done = r; });
const workers = [...Array(4)].map(() => new Worker(name, async (job) => job.data,
  { connection, concurrency: CONCURRENCY, removeOnComplete: { count: 0 }, removeOnFail: { count: 0 } }));
for (const w of workers) {
  w.on('completed', () => { if (++completed === N) done(); });
  w.on('error', (e) => { console.error(e); process.exit(1); });
}
await Promise.all(workers.map((w) => w.waitUntilReady()));

let added = 0;
const start = process.hrtime.bigint();
async function producer() {
  while (added < N) {
    const i = added++;
    await queue.add('echo', { i }, { removeOnComplete: true });
  }
}
await Promise.all([...Array(PRODUCERS)].map(producer));
await finished;
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`${(N / elapsed).toFixed(0)} ${elapsed.toFixed(2)}`);
await Promise.all(workers.map((w) => w.close()));
await queue.obliterate({ force: true });
await queue.close();
