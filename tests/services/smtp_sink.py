"""An SMTP server for tests (python3-aiosmtpd): accepts every mail and saves it, untouched, into a
maildir-like directory: DIR/new/<time>.<n>.eml, written to DIR/tmp first and renamed, so a reader
never sees half a file. The envelope goes in front as X-Envelope-From / X-Envelope-To headers.

    /usr/bin/python3 tests/services/smtp_sink.py --port 2525 --dir /tmp/mails [--pidfile F]
        [--auth USER:PASSWORD]   # require SMTP AUTH (PLAIN/LOGIN, allowed without TLS: loopback tests)
"""
import argparse
import asyncio
import itertools
import os
import signal
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class SaveToDir:
    def __init__(self, directory):
        self.dir = directory
        self.counter = itertools.count()
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time():.6f}.{os.getpid()}.{next(self.counter)}.eml"
        head = f"X-Envelope-From: {envelope.mail_from}\r\n"
        head += "".join(f"X-Envelope-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos)
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        tmp = os.path.join(self.dir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(head.encode() + data)
        os.rename(tmp, os.path.join(self.dir, "new", name))
        return "250 OK saved"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--pidfile")
    ap.add_argument("--auth", help="USER:PASSWORD that clients must AUTH with")
    args = ap.parse_args()
    extra = {}
    if args.auth:
        user, password = args.auth.encode().split(b":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (user, password)
            return AuthResult(success=ok)

        extra = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
    controller = Controller(SaveToDir(args.dir), hostname=args.host, port=args.port,
                            data_size_limit=10 * 1024 * 1024, **extra)
    controller.start()
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(str(os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
