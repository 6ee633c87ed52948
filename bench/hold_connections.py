"""Opens N keep-alive connections to 127.0.0.1:PORT, makes one request on each, keeps them open,
then writes READY_FILE and waits to be killed. Used by bench/http.sh to measure idle memory."""
import asyncio
import pathlib
import sys


async def one(port, conns):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /v1/version HTTP/1.1\r\nHost: bench\r\n\r\n")
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await r.readexactly(length)
    conns.append((r, w))


async def main(port, n, ready):
    conns = []
    sem = asyncio.Semaphore(500)

    async def guarded():
        async with sem:
            await one(port, conns)

    await asyncio.gather(*(guarded() for _ in range(n)))
    pathlib.Path(ready).write_text(str(len(conns)))
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
