// The peer of bench/records.sh: harmar's records API for one table collection (create and list,
// the shapes of shared/API.md "Data services"), written in Hono on @hono/node-server with the npm
// pg client on PostgreSQL. One Node process per worker (node:cluster), each with its own pg pool,
// so it uses as many cores as harmar's --workers.
//   node hono.mjs PG_URL PORT WORKERS POOL_PER_WORKER
import cluster from "node:cluster";
import { randomBytes } from "node:crypto";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import pg from "pg";

const [url, port, workers, poolSize] = process.argv.slice(2);
const table = "hono_notes";

// UUIDv7, as harmar's ids, so both sides insert into the primary key in order.
function uuidv7() {
  const b = randomBytes(16);
  b.writeUIntBE(Date.now(), 0, 6);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const iso = (ms) => new Date(Number(ms)).toISOString();
const record = (r) => ({
  id: r.id, title: r.title, done: r.done, owner: r.owner,
  created_at: iso(r.created_at), updated_at: iso(r.updated_at), version: Number(r.version),
});
const problem = (c, status, code, detail, errors) =>
  c.json({ type: "about:blank", title: code, status, detail, code, ...(errors ? { errors } : {}) }, status,
    { "Content-Type": "application/problem+json" });

if (cluster.isPrimary) {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  await db.query(`CREATE TABLE IF NOT EXISTS ${table} (id TEXT COLLATE "C" PRIMARY KEY, created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL, version BIGINT NOT NULL, title TEXT COLLATE "C" NOT NULL, done BOOLEAN,
    owner TEXT COLLATE "C")`);
  await db.query(`CREATE INDEX IF NOT EXISTS ${table}_owner ON ${table} (owner)`);
  await db.end();
  for (let i = 0; i < Number(workers); i++) cluster.fork();
} else {
  const pool = new pg.Pool({ connectionString: url, max: Number(poolSize) });
  const app = new Hono();

  app.post("/v1/collections/notes/records", async (c) => {
    let body;
    try {
      body = await c.req.json();
    } catch {
      return problem(c, 400, "invalid_json", "the body is not JSON");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body))
      return problem(c, 422, "validation_failed", "the body must be an object");
    const errors = [];
    for (const k of Object.keys(body))
      if (!["title", "done", "owner"].includes(k)) errors.push({ field: k, message: "unknown field" });
    if (typeof body.title !== "string" || body.title.length === 0) errors.push({ field: "title", message: "required" });
    else if (body.title.length > 10000) errors.push({ field: "title", message: "too long" });
    if (body.done !== undefined && body.done !== null && typeof body.done !== "boolean")
      errors.push({ field: "done", message: "must be a boolean" });
    if (body.owner !== undefined && body.owner !== null && typeof body.owner !== "string")
      errors.push({ field: "owner", message: "must be a string" });
    if (errors.length) return problem(c, 422, "validation_failed", "the record is invalid", errors);
    const now = Date.now();
    const { rows } = await pool.query(
      `INSERT INTO ${table} (id, created_at, updated_at, version, title, done, owner)
       VALUES ($1, $2, $2, 1, $3, $4, $5) RETURNING *`,
      [uuidv7(), now, body.title, body.done ?? null, body.owner ?? null]);
    const r = record(rows[0]);
    return c.json(r, 201, { Location: `/v1/collections/notes/records/${r.id}` });
  });

  app.get("/v1/collections/notes/records", async (c) => {
    const limit = c.req.query("limit") === undefined ? 50 : Number(c.req.query("limit"));
    if (!Number.isInteger(limit) || limit < 1 || limit > 200)
      return problem(c, 422, "validation_failed", "limit must be 1..200", [{ field: "limit", message: "1..200" }]);
    const cursor = c.req.query("cursor");
    const after = cursor ? Buffer.from(cursor, "base64url").toString() : "";
    const { rows } = await pool.query(
      `SELECT * FROM ${table} WHERE id > $1 ORDER BY id LIMIT $2`, [after, limit + 1]);
    const more = rows.length > limit;
    const items = rows.slice(0, limit).map(record);
    const next = more ? Buffer.from(items[items.length - 1].id).toString("base64url") : null;
    return c.json({ items, next_cursor: next });
  });

  serve({ fetch: app.fetch, port: Number(port), hostname: "127.0.0.1" });
}
