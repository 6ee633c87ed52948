// The peer of bench/ws.sh: Socket.IO serving the same fan-out as harmar's /v1/ws. Every client
// connects over the WebSocket transport; POST /send with a body broadcasts it to all of them as
// one "message" event (what harmar does for a message posted to a conversation every socket
// listens to). Usage: node socketio_server.js PORT READY_FILE
import { createServer } from "node:http";
import { writeFileSync } from "node:fs";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 0);
const ready = process.argv[3];

const http = createServer((req, res) => {
  if (req.method === "POST" && req.url === "/send") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      io.emit("message", { body: Buffer.concat(chunks).toString() });
      res.writeHead(201, { "Content-Type": "application/json" }).end('{"ok":true}');
    });
    return;
  }
  if (req.url === "/clients") {
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ clients: io.engine.clientsCount }));
    return;
  }
  res.writeHead(404).end();
});

// WebSocket only (no long-polling upgrade dance), no compression: the same work as harmar's side.
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false, serveClient: false });

http.listen(port, "127.0.0.1", () => {
  if (ready) writeFileSync(ready, String(http.address().port));
});
