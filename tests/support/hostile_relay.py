#!/usr/bin/env python3
"""A hostile SMTP relay for the transport tests: misbehaviours aiosmtpd will
not produce. Standard library only.

    python3 tests/support/hostile_relay.py MODE [--tls-cert CERT --tls-key KEY]

Binds 127.0.0.1 on an ephemeral port, prints ``LISTENING <port>`` on stdout,
and serves connections until stdin closes (the test process went away).
With --tls-cert/--tls-key every connection is implicit TLS (port 465 style).

Modes:
  endless-line  greets, reads the EHLO, then answers with a reply line that
                never ends ("250-" and 64 KiB chunks of "A", no line break)
                until the client hangs up. Writes the bytes it managed to
                send, one line per connection, to stderr as ``SENT <n>``.
  silent-quit   a plain relay (no PIPELINING, no AUTH) that answers every
                command with 250, except QUIT, which it never answers.
"""

import socket
import ssl
import sys
import threading


def read_line(conn):
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            return None
        line += chunk
    return line


def endless_line(conn):
    sent = 0
    try:
        conn.sendall(b"220 hostile.example ESMTP\r\n")
        if read_line(conn) is None:
            return
        conn.sendall(b"250-")
        chunk = b"A" * 65536
        while True:
            conn.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    finally:
        print(f"SENT {sent}", file=sys.stderr, flush=True)


def silent_quit(conn):
    try:
        conn.sendall(b"220 quiet.example ESMTP\r\n")
        while True:
            line = read_line(conn)
            if line is None:
                return
            verb = line.strip().split(b" ")[0].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-quiet.example\r\n250 8BITMIME\r\n")
            elif verb == b"QUIT":
                # Never answered; the connection stays open until the
                # client gives up on it.
                while conn.recv(4096):
                    pass
                return
            else:
                conn.sendall(b"250 ok\r\n")
    except OSError:
        pass


def main():
    mode = sys.argv[1]
    handler = {"endless-line": endless_line, "silent-quit": silent_quit}[mode]
    context = None
    if "--tls-cert" in sys.argv:
        cert = sys.argv[sys.argv.index("--tls-cert") + 1]
        key = sys.argv[sys.argv.index("--tls-key") + 1]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"LISTENING {listener.getsockname()[1]}", flush=True)

    def serve():
        while True:
            conn, _ = listener.accept()
            if context is not None:
                try:
                    conn = context.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    main()
