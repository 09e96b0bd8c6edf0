#!/usr/bin/env python3
"""A real SMTP server for Agora's e-mail tests, built on aiosmtpd.

    python3 smtp_sink.py OUT_FILE [PORT]

Listens on 127.0.0.1:PORT (0 or omitted: a free port), prints
"READY <port>" once it accepts connections, and appends every message it
receives to OUT_FILE as one JSON line:
    {"to": [envelope recipients], "subject": ..., "message_id": ..., "from": ...}
It runs until it is killed.

Exit status: 3 when aiosmtpd is not installed, 2 on bad arguments.
"""

import asyncio
import email
import email.policy
import json
import sys

try:
    from aiosmtpd.smtp import SMTP
except ImportError:
    print("aiosmtpd is not installed (pip install -r escrow/tests/requirements.txt)", file=sys.stderr)
    sys.exit(3)


class Sink:
    def __init__(self, out_path):
        self.out_path = out_path

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        line = {
            "to": list(envelope.rcpt_tos),
            "from": envelope.mail_from,
            "subject": str(message.get("Subject", "")),
            "message_id": str(message.get("Message-ID", "")),
        }
        # One write per line, flushed, so a reader never sees half a record.
        with open(self.out_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
            out.flush()
        return "250 Message accepted for delivery"


async def main(out_path, port):
    loop = asyncio.get_running_loop()
    handler = Sink(out_path)
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.localhost"), "127.0.0.1", port)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 0))
    except KeyboardInterrupt:
        pass
