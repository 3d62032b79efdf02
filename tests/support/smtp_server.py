#!/usr/bin/env python3
"""Scriptable SMTP test server for the integration tests (built on aiosmtpd).

The Rust integration tests spawn this script as a child process, read one line
from its stdout to learn the port, drive it over SMTP, and inspect the files it
writes. Install its dependency with `pip install -r tests/support/requirements.txt`.

Usage
-----
    python3 tests/support/smtp_server.py --dir DIR [options]
    python3 tests/support/smtp_server.py --make-cert DIR

Server mode binds 127.0.0.1 (port 0 = an ephemeral port, unless --port N),
then prints exactly one line, ``LISTENING <port>``, to stdout and flushes it.
Nothing else is ever written to stdout; diagnostics go to stderr (warnings only,
unless -v). The server runs until SIGTERM or SIGINT and then exits with code 0.

Files written to DIR (created if missing; DIR should be fresh for each server --
the two .jsonl files are truncated at startup and numbering restarts at 1):

  DIR/<n>.eml       every accepted message (the DATA reply was 2xx), n = 1, 2, ...
                    The exact bytes the client meant: after SMTP dot-unstuffing,
                    line endings as sent (normally CRLF). Written atomically
                    (temp file + rename).
  DIR/received.jsonl  one JSON object per accepted message:
                    {"n", "mail_from", "rcpt_tos", "message_id", "size",
                     "conn", "tls", "auth", "pipelined"}
  DIR/abandoned.jsonl  one JSON object per transaction the client gave up
                    after the 354, before the final dot (nothing delivered,
                    and not an outcome the client was told of):
                    {"n", "mail_from", "rcpt_tos", "conn", "tls", "auth"}
  DIR/attempts.jsonl  one JSON object per transaction outcome, accepted or not:
                    {"n", "stage", "reply", "message_id", "mail_from",
                     "rcpt_tos", "conn", "tls", "auth"}  (+ "rcpt" for stage rcpt)

  n           received: message number (= the .eml name); attempts: attempt number
  mail_from   envelope sender as given in MAIL FROM ("<>" for the null sender)
  message_id  value of the Message-ID header (unfolded, stripped) or null
  size        length of the .eml in bytes
  conn        connection number (1-based, counted over the server's lifetime)
  tls         true if the transaction ran after STARTTLS
  auth        the AUTH username of the session, or null
  pipelined   true if RCPT TO and DATA had already arrived when MAIL FROM
              was answered: the client sent them without waiting
              (PIPELINING, which the server offers unless --no-pipelining)
  stage       "data"       the final dot was received and `reply` was sent
              "rcpt"       a RCPT TO was refused (--rcpt-reply); one line per RCPT
              "mail"/"rcpt"/"data" with reply "530 5.7.0 Authentication
                           required": command sent without AUTH while --auth is on
              "drop"       --drop-after-data closed the connection; reply is null
              "drop-after-354"  --drop-after-354 closed the connection right
                           after answering DATA; nothing of the message came
              "disconnect" the client went away while the server was delaying
                           its DATA reply (--data-delay); reply is null
              "greeting"   (--fault-rate) a connection whose 220 greeting was
                           withheld; reply, message_id and mail_from are null,
                           rcpt_tos is []
              "reset"      (--fault-rate) the connection was reset when the
                           DATA command arrived, before the 354: nothing of
                           the message was received; message_id is null
              "stall"      (--fault-rate) the final dot was received and the
                           message stored as accepted, then no reply was ever
                           sent; reply is null
              "reset-after-dot"  (--fault-rate) the final dot was received and
                           the message stored as accepted, then the connection
                           was reset without a reply; reply is null
  reply       the full reply line sent ("451 4.3.0 try again later"), or null
  fault       only on lines written by --fault-rate: the fault's name (one of
              the --faults names); a "data" line with a fault is a 421 or 451
              reply that the fault mode chose

All files are written and flushed *before* the SMTP reply is sent, so once a
client has seen a reply, the matching lines and .eml are already on disk. Within
one transaction the order is attempts.jsonl, then <n>.eml, then received.jsonl.
Replies that aiosmtpd generates itself without consulting this script (syntax
errors, bad command sequence, "530 Must issue a STARTTLS command first", AUTH
results) are not recorded.

Options
-------
  --dir DIR              where to write messages and logs (required in server mode)
  --port N               port to bind on 127.0.0.1 (default 0 = ephemeral)
  --data-replies LIST    comma-separated replies for the 1st, 2nd, 3rd, ... DATA
                         transaction (counted from 1 across all connections);
                         after the list runs out: 250. Each item is a code
                         ("451") or a code plus text ("451 4.7.1 greylisted";
                         the text cannot contain a comma).
                         Default texts: 250 "2.0.0 Ok: queued as <n>",
                         421 "4.3.2 service shutting down" (the connection is then
                         closed), 450 "4.2.0 mailbox busy, try again later",
                         451 "4.3.0 try again later", 452 "4.3.1 insufficient
                         system storage", 550 "5.1.1 mailbox unavailable",
                         552 "5.3.4 message too big", 553 "5.1.3 mailbox name not
                         allowed", 554 "5.7.1 rejected"; others get a generic text.
  --rcpt-reply REPLY     answer every RCPT TO with this code (or "code text"),
                         e.g. 550. A 2xx accepts the recipient. Default: 250.
  --data-delay SECONDS   sleep this long after the final dot before answering
                         DATA (for client timeout tests). Float allowed.
  --greeting-delay SECONDS  delay the 220 greeting of every connection.
  --drop-after-data N    after receiving the Nth DATA transaction's final dot
                         (same global count as --data-replies, whose Nth entry
                         is then unused), abort the connection without replying.
  --tls-cert FILE --tls-key FILE
                         offer STARTTLS with this PEM certificate and key.
  --require-starttls     refuse other commands than EHLO/NOOP/QUIT/STARTTLS
                         with 530 until STARTTLS was done (needs --tls-cert).
  --auth USER:PASS       require AUTH (PLAIN or LOGIN) with these credentials
                         before MAIL; anything else gets 535. AUTH is offered
                         on plaintext connections, unless --tls-cert is given:
                         then only after STARTTLS.
  --fault-rate RATE      seeded random fault mode (default 0: off). Each
                         fault named in --faults hits an opportunity with
                         probability RATE / (number of --faults names), so at
                         most RATE of all transactions are faulted. The
                         opportunities: every new connection (for `greeting`)
                         and every DATA command (for all other faults); one
                         random draw each. A drawn fault overrides
                         --data-replies and --drop-after-data for that
                         transaction. Every fault is written to attempts.jsonl
                         with a "fault" field (see above).
  --fault-seed N         seed for --fault-rate (default: a random seed, logged
                         at INFO). The same seed gives the same sequence of
                         draws; with concurrent clients, which connection gets
                         which draw depends on arrival order.
  --faults LIST          comma-separated fault names for --fault-rate
                         (default: 421,451,reset,greeting,stall):
                           421      reply "421 4.3.2 service shutting down" to the
                                    final dot and close the connection; the
                                    message is not accepted
                           451      reply "451 4.3.0 try again later" to the
                                    final dot; the message is not accepted
                           reset    reset the connection (TCP RST) when the DATA
                                    command arrives, before the 354 reply
                           greeting never send the 220 greeting on a new
                                    connection (until the client goes away)
                           stall    after the final dot store the message as
                                    accepted (<n>.eml, received.jsonl), then never
                                    reply (until the client goes away)
                           reset-after-dot  after the final dot store the message
                                    as accepted, then reset the connection
                                    without a reply
                         stall and reset-after-dot are the worst case for a
                         client: the server has the message, the client cannot
                         know it.
  --exit-on-stdin-eof    also stop (exit 0) when stdin reaches EOF, so a test
                         that spawns the server with a piped stdin cannot leave
                         it running after the test process dies.
  -v, --verbose          log SMTP sessions to stderr (beware: a test that pipes
                         stderr must read it, or the server blocks once the pipe
                         is full; without -v only warnings are logged).
  --make-cert DIR        helper mode: write DIR/cert.pem and DIR/key.pem, a
                         self-signed certificate for CN=localhost with
                         subjectAltName DNS:localhost, IP:127.0.0.1 (an
                         end-entity cert, CA:FALSE, serverAuth; usable as its own
                         trust anchor by rustls/webpki and OpenSSL), print both
                         paths, one per line, and exit 0. Uses the `openssl` CLI
                         if it is on PATH, otherwise the `cryptography` package.

Examples
--------
    python3 tests/support/smtp_server.py --dir /tmp/m --data-replies 451,250
    python3 tests/support/smtp_server.py --make-cert /tmp/tls
    python3 tests/support/smtp_server.py --dir /tmp/m --fault-rate 0.3 \\
        --fault-seed 7 --faults 421,451,reset,greeting,stall,reset-after-dot
    python3 tests/support/smtp_server.py --dir /tmp/m --auth user:secret \\
        --tls-cert /tmp/tls/cert.pem --tls-key /tmp/tls/key.pem --require-starttls
"""

import argparse
import asyncio
import json
import logging
import os
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException

log = logging.getLogger("smtp_server")

# Default reply texts (code -> text after the code).
REPLY_TEXTS = {
    250: "2.0.0 Ok",
    421: "4.3.2 service shutting down",
    450: "4.2.0 mailbox busy, try again later",
    451: "4.3.0 try again later",
    452: "4.3.1 insufficient system storage",
    550: "5.1.1 mailbox unavailable",
    551: "5.1.6 user not local",
    552: "5.3.4 message too big",
    553: "5.1.3 mailbox name not allowed",
    554: "5.7.1 rejected",
}
GENERIC_TEXTS = {2: "2.0.0 Ok", 4: "4.0.0 temporary failure", 5: "5.0.0 permanent failure"}

# What aiosmtpd answers when a command needs AUTH first (see check_auth_needed).
AUTH_REQUIRED_REPLY = "530 5.7.0 Authentication required"


# --------------------------------------------------------------------------
# Reply scripting helpers
# --------------------------------------------------------------------------

def parse_reply_spec(spec):
    """Parse "451" or "451 custom text" into (451, None) / (451, "custom text")."""
    m = re.fullmatch(r"\s*([245]\d\d)(?:\s+(.*?))?\s*", spec)
    if not m:
        raise argparse.ArgumentTypeError(
            f"invalid reply {spec!r}: expected a 2xx/4xx/5xx code, optionally followed by text")
    return int(m.group(1)), (m.group(2) or None)


def parse_reply_list(value):
    """Parse the comma-separated --data-replies list."""
    return [parse_reply_spec(item) for item in value.split(",") if item.strip()]


def format_reply(code, text, stage, n=None):
    """Build the full reply line for a code, using a default text if none given."""
    if text is None:
        if code == 250 and stage == "data":
            text = f"2.0.0 Ok: queued as {n}"
        elif code == 250 and stage == "rcpt":
            text = "2.1.5 Ok"
        else:
            text = REPLY_TEXTS.get(code, GENERIC_TEXTS[code // 100])
    return f"{code} {text}"


def non_negative_float(value):
    f = float(value)
    if f < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return f


def positive_int(value):
    i = int(value)
    if i < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return i


def fault_rate(value):
    f = float(value)
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return f


# The faults --faults may name. "greeting" hits a new connection; the others
# hit a transaction.
FAULT_NAMES = ("421", "451", "reset", "greeting", "stall", "reset-after-dot")
DEFAULT_FAULTS = "421,451,reset,greeting,stall"


def parse_fault_list(value):
    names = [item.strip() for item in value.split(",") if item.strip()]
    for name in names:
        if name not in FAULT_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown fault {name!r} (expected some of {', '.join(FAULT_NAMES)})")
    if not names:
        raise argparse.ArgumentTypeError("name at least one fault")
    return list(dict.fromkeys(names))


class Faults:
    """The seeded random fault mode (--fault-rate, --fault-seed, --faults)."""

    def __init__(self, rate, seed, names):
        self.rate = rate
        self.names = names
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
        self.seed = seed
        self.rng = random.Random(seed)
        log.info("fault mode: rate %s, seed %s, faults %s", rate, seed, ",".join(names))

    def _draw(self, kinds):
        """One draw for an opportunity where `kinds` could apply."""
        if not kinds or self.rate <= 0:
            return None
        each = self.rate / len(self.names)
        r = self.rng.random()
        for i, kind in enumerate(kinds):
            if r < each * (i + 1):
                return kind
        return None

    def on_connection(self):
        return self._draw([k for k in self.names if k == "greeting"])

    def on_data_command(self):
        return self._draw([k for k in self.names if k != "greeting"])


# --------------------------------------------------------------------------
# Message inspection
# --------------------------------------------------------------------------

def clean_text(value):
    """Make a str JSON-safe: aiosmtpd decodes 8-bit input with surrogateescape,
    and lone surrogates would produce JSON that strict parsers (serde) reject."""
    if value is None:
        return None
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def extract_message_id(content):
    """Return the unfolded Message-ID header value from raw message bytes, or None.

    Scans the header block by hand (up to the first empty line) rather than using
    the email package, so odd bytes or malformed headers never raise."""
    if content is None:
        return None
    lines = re.split(rb"\r?\n", content)
    current = None  # (name, value) of the header being unfolded
    headers = []
    for line in lines:
        if line == b"":
            break  # end of header block
        if line[:1] in (b" ", b"\t") and current is not None:
            current[1].append(line.strip())  # folded continuation line
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            current = None
            continue
        current = (name.strip().lower(), [value.strip()])
        headers.append(current)
    for name, parts in headers:
        if name == b"message-id":
            value = b" ".join(p for p in parts if p).decode("utf-8", "replace").strip()
            return value or None
    return None


# --------------------------------------------------------------------------
# Recording of results in DIR
# --------------------------------------------------------------------------

class Recorder:
    """Writes DIR/<n>.eml, DIR/received.jsonl and DIR/attempts.jsonl."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.received_path = os.path.join(directory, "received.jsonl")
        self.attempts_path = os.path.join(directory, "attempts.jsonl")
        self.abandoned_path = os.path.join(directory, "abandoned.jsonl")
        # Start with empty logs so tests can open them right away.
        for path in (self.received_path, self.attempts_path, self.abandoned_path):
            open(path, "w").close()
        self.received_count = 0
        self.attempt_count = 0
        self.abandoned_count = 0

    @staticmethod
    def _append(path, obj):
        # One write per line in append mode; closing flushes it to the OS at once.
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()

    @staticmethod
    def session_fields(server, session, envelope):
        auth = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            auth = session.auth_data.login.decode("utf-8", "replace")
        return {
            "mail_from": clean_text(envelope.mail_from),
            "rcpt_tos": [clean_text(r) for r in envelope.rcpt_tos],
            "conn": server.conn_id,
            "tls": session.ssl is not None,
            "auth": auth,
        }

    def attempt(self, stage, reply, message_id, server, session, envelope, **extra):
        self.attempt_count += 1
        record = {"n": self.attempt_count, "stage": stage, "reply": reply,
                  "message_id": message_id}
        record.update(self.session_fields(server, session, envelope))
        record.update(extra)
        self._append(self.attempts_path, record)
        log.info("attempt %s", record)

    def abandoned(self, server, session, envelope):
        self.abandoned_count += 1
        record = {"n": self.abandoned_count}
        record.update(self.session_fields(server, session, envelope))
        self._append(self.abandoned_path, record)
        log.info("abandoned %s", record)

    def bare_attempt(self, stage, server, **extra):
        """An attempts.jsonl line for a connection without a transaction."""
        self.attempt_count += 1
        record = {"n": self.attempt_count, "stage": stage, "reply": None,
                  "message_id": None, "mail_from": None, "rcpt_tos": [],
                  "conn": server.conn_id, "tls": False, "auth": None}
        record.update(extra)
        self._append(self.attempts_path, record)
        log.info("attempt %s", record)

    def next_message_number(self):
        self.received_count += 1
        return self.received_count

    def save_message(self, n, content, message_id, server, session, envelope):
        # Atomic write: a test polling for <n>.eml never sees a partial file.
        final = os.path.join(self.dir, f"{n}.eml")
        fd, tmp = tempfile.mkstemp(prefix=f".{n}.", suffix=".tmp", dir=self.dir)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
        os.replace(tmp, final)
        record = {"n": n, "mail_from": clean_text(envelope.mail_from),
                  "rcpt_tos": [clean_text(r) for r in envelope.rcpt_tos],
                  "message_id": message_id, "size": len(content)}
        fields = self.session_fields(server, session, envelope)
        record.update({k: fields[k] for k in ("conn", "tls", "auth")})
        record["pipelined"] = getattr(session, "pipelined", False)
        self._append(self.received_path, record)
        log.info("received %s", record)


# --------------------------------------------------------------------------
# aiosmtpd handler (the hooks aiosmtpd calls for RCPT and DATA)
# --------------------------------------------------------------------------

async def reply_and_close(server, reply):
    """Send `reply` ourselves, then close the connection (used for 421).

    After close(), aiosmtpd's connection_lost() cancels the session task, which
    interrupts the sleep below; nothing else is sent."""
    await server.push(reply)
    server.transport.close()
    await asyncio.sleep(3600)


class Handler:
    def __init__(self, args, recorder):
        self.args = args
        self.recorder = recorder
        self.data_count = 0  # DATA transactions seen (final dot received)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # Offer PIPELINING (RFC 2920) as most relays do; aiosmtpd reads
        # commands one at a time whether or not they came together. This
        # hook must set the session's host name itself.
        session.host_name = hostname
        if not self.args.no_pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.rcpt_reply is None:
            code, text = 250, None
        else:
            code, text = self.args.rcpt_reply
        reply = format_reply(code, text, "rcpt")
        if code // 100 == 2:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            return reply
        self.recorder.attempt("rcpt", reply, None, server, session, envelope,
                              rcpt=clean_text(address))
        if code == 421:
            await reply_and_close(server, reply)
        return reply

    async def handle_DATA(self, server, session, envelope):
        # Called after the final dot; envelope.original_content holds the
        # dot-unstuffed message bytes exactly as the client meant them.
        self.data_count += 1
        k = self.data_count
        content = envelope.original_content or b""
        message_id = clean_text(extract_message_id(content))

        if self.args.data_delay:
            try:
                await asyncio.sleep(self.args.data_delay)
            except asyncio.CancelledError:
                # aiosmtpd cancels the session task when the client disconnects.
                self.recorder.attempt("disconnect", None, message_id,
                                      server, session, envelope)
                raise

        fault = getattr(server, "pending_fault", None)
        server.pending_fault = None
        if fault in ("stall", "reset-after-dot"):
            # The worst case for a client: the message is stored as accepted,
            # and the client never learns it.
            n = self.recorder.next_message_number()
            self.recorder.attempt(fault, None, message_id, server, session, envelope,
                                  fault=fault)
            self.recorder.save_message(n, content, message_id, server, session, envelope)
            if fault == "reset-after-dot":
                server.transport.abort()
            # Cancelled when the connection goes (the client gave up on us).
            await asyncio.sleep(3600)
        if fault in ("421", "451"):
            reply = format_reply(int(fault), None, "data")
            self.recorder.attempt("data", reply, message_id, server, session, envelope,
                                  fault=fault)
            if fault == "421":
                await reply_and_close(server, reply)
            return reply

        if self.args.drop_after_data == k:
            self.recorder.attempt("drop", None, message_id, server, session, envelope)
            # abort(): close the socket at once, discarding anything unsent.
            # connection_lost() then cancels the session task (and this sleep).
            server.transport.abort()
            await asyncio.sleep(3600)

        script = self.args.data_replies
        code, text = script[k - 1] if k <= len(script) else (250, None)
        if code // 100 == 2:
            n = self.recorder.next_message_number()
            reply = format_reply(code, text, "data", n)
            self.recorder.attempt("data", reply, message_id, server, session, envelope)
            self.recorder.save_message(n, content, message_id, server, session, envelope)
        else:
            reply = format_reply(code, text, "data")
            self.recorder.attempt("data", reply, message_id, server, session, envelope)
        if code == 421:
            await reply_and_close(server, reply)
        return reply

    async def handle_exception(self, error):
        # Called by aiosmtpd for an exception in a session. Without this hook it
        # logs a full traceback at ERROR level, e.g. whenever a test client
        # rightly rejects the certificate during STARTTLS; keep that to one line.
        if isinstance(error, TLSSetupException):
            log.info("STARTTLS handshake failed: %r", error.__cause__)
        else:
            log.warning("session error", exc_info=error)
        # Same reply as aiosmtpd's default (not sent after a failed handshake).
        return f"500 Error: ({error.__class__.__name__}) {error}"


# --------------------------------------------------------------------------
# SMTP protocol subclass: greeting delay, connection numbering, shutdown
# --------------------------------------------------------------------------

class TestSMTP(SMTP):
    def __init__(self, handler, *, conn_id, greeting_delay, recorder, live, faults=None,
                 **kwargs):
        super().__init__(handler, **kwargs)
        self.conn_id = conn_id
        self.greeting_delay = greeting_delay
        self.recorder = recorder
        self.live = live  # set of open connections, to abort them on shutdown
        self.faults = faults  # Faults, or None when --fault-rate is off
        self.pending_fault = None  # the fault drawn for the current DATA

    def connection_made(self, transport):
        self.live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error):
        self.live.discard(self)
        super().connection_lost(error)

    async def _handle_client(self):
        # aiosmtpd sends the 220 greeting first thing in _handle_client().
        if self.greeting_delay:
            await asyncio.sleep(self.greeting_delay)
        if self.faults is not None and self.faults.on_connection() == "greeting":
            self.recorder.bare_attempt("greeting", self, fault="greeting")
            # No greeting, ever: connection_lost() cancels this when the
            # client gives up.
            await asyncio.sleep(3600)
            return
        await super()._handle_client()

    async def smtp_MAIL(self, arg):
        # What the client sent after MAIL FROM before hearing its reply is
        # already in the read buffer.
        waiting = b"\r\n" + bytes(self._reader._buffer).upper()
        self.session.pipelined = b"\r\nRCPT " in waiting and b"\r\nDATA\r\n" in waiting
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg):
        ready = self.envelope is not None and self.envelope.rcpt_tos and not arg
        if ready and self.event_handler.args.drop_after_354:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            self.recorder.attempt("drop-after-354", None, None, self, self.session,
                                  self.envelope)
            self.transport.close()
            return
        try:
            await self._data_with_faults(arg)
        except asyncio.CancelledError:
            # The connection went away during DATA: before the final dot
            # (aiosmtpd stores the content once the dot is in), it took
            # nothing. A "reset" fault is recorded as such.
            if ready and self.envelope.content is None and self.pending_fault != "reset":
                self.recorder.abandoned(self, self.session, self.envelope)
            raise

    async def _data_with_faults(self, arg):
        self.pending_fault = None
        if (self.faults is not None and self.envelope is not None
                and self.envelope.rcpt_tos and not arg):
            fault = self.faults.on_data_command()
            if fault == "reset":
                self.pending_fault = fault
                self.recorder.attempt("reset", None, None, self, self.session,
                                      self.envelope, fault="reset")
                # abort(): an immediate close (RST), nothing more is read or sent.
                self.transport.abort()
                await asyncio.sleep(3600)
                return
            self.pending_fault = fault
        await super().smtp_DATA(arg)

    async def check_auth_needed(self, caller_method):
        # Record commands refused because the client has not authenticated.
        needed = await super().check_auth_needed(caller_method)
        if needed:
            self.recorder.attempt(caller_method.lower(), AUTH_REQUIRED_REPLY, None,
                                  self, self.session, self.envelope)
        return needed


# --------------------------------------------------------------------------
# Certificate helper (--make-cert)
# --------------------------------------------------------------------------

OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = v3
prompt = no
[dn]
CN = localhost
[v3]
subjectAltName = DNS:localhost, IP:127.0.0.1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
"""


def make_cert_openssl(openssl, cert_path, key_path):
    with tempfile.TemporaryDirectory() as tmp:
        cnf = os.path.join(tmp, "req.cnf")
        with open(cnf, "w") as f:
            f.write(OPENSSL_CONFIG)
        subprocess.run(
            [openssl, "req", "-x509", "-config", cnf, "-newkey", "rsa:2048", "-nodes",
             "-sha256", "-days", "3650", "-keyout", key_path, "-out", cert_path],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_cert_cryptography(cert_path, key_path):
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=True, content_commitment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def make_cert(directory):
    os.makedirs(directory, exist_ok=True)
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    openssl = shutil.which("openssl")
    if openssl:
        make_cert_openssl(openssl, cert_path, key_path)
    else:
        try:
            make_cert_cryptography(cert_path, key_path)
        except ImportError:
            sys.exit("--make-cert needs the openssl CLI or `pip install cryptography`")
    print(cert_path)
    print(key_path, flush=True)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Scriptable SMTP test server (see the module docstring).")
    p.add_argument("--dir", help="directory for <n>.eml, received.jsonl, attempts.jsonl")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = ephemeral)")
    p.add_argument("--data-replies", type=parse_reply_list, default=[],
                   help='e.g. "451,250,550": reply for the 1st, 2nd, ... DATA; then 250')
    p.add_argument("--rcpt-reply", type=parse_reply_spec, default=None,
                   help="reply code (optionally with text) for every RCPT TO, e.g. 550")
    p.add_argument("--data-delay", type=non_negative_float, default=0.0,
                   help="seconds to wait before answering DATA")
    p.add_argument("--greeting-delay", type=non_negative_float, default=0.0,
                   help="seconds to wait before the 220 greeting")
    p.add_argument("--drop-after-data", type=positive_int, default=None, metavar="N",
                   help="abort the connection, unanswered, after the Nth DATA's final dot")
    p.add_argument("--no-pipelining", action="store_true",
                   help="do not offer PIPELINING in the EHLO reply")
    p.add_argument("--drop-after-354", action="store_true",
                   help="close the connection right after answering DATA with 354")
    p.add_argument("--tls-cert", help="PEM certificate: offer STARTTLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--require-starttls", action="store_true",
                   help="require STARTTLS before MAIL/AUTH etc. (needs --tls-cert)")
    p.add_argument("--auth", metavar="USER:PASS",
                   help="require AUTH PLAIN/LOGIN with these credentials")
    p.add_argument("--fault-rate", type=fault_rate, default=0.0, metavar="RATE",
                   help="seeded random faults on this share of transactions (0..1)")
    p.add_argument("--fault-seed", type=int, default=None, metavar="N",
                   help="seed for --fault-rate (default: random)")
    p.add_argument("--faults", type=parse_fault_list, default=None, metavar="LIST",
                   help=f"fault names for --fault-rate (default {DEFAULT_FAULTS})")
    p.add_argument("--exit-on-stdin-eof", action="store_true",
                   help="exit when stdin is closed (parent process gone)")
    p.add_argument("-v", "--verbose", action="store_true", help="log sessions to stderr")
    p.add_argument("--make-cert", metavar="DIR",
                   help="write DIR/cert.pem and DIR/key.pem for localhost, then exit")
    args = p.parse_args(argv)
    if args.make_cert:
        return args
    if not args.dir:
        p.error("--dir is required (unless --make-cert)")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.require_starttls and not args.tls_cert:
        p.error("--require-starttls needs --tls-cert/--tls-key")
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth expects USER:PASS")
    if args.faults is None:
        args.faults = parse_fault_list(DEFAULT_FAULTS)
    return args


def make_authenticator(user, password):
    user_b, pass_b = user.encode("utf-8"), password.encode("utf-8")

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == user_b and auth_data.password == pass_b)
        log.info("AUTH %s for %r: %s", mechanism,
                 getattr(auth_data, "login", None), "ok" if ok else "refused")
        # A failed result makes aiosmtpd reply "535 5.7.8 Authentication
        # credentials invalid".
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


async def serve(args):
    loop = asyncio.get_running_loop()
    recorder = Recorder(args.dir)
    handler = Handler(args, recorder)

    tls_context = None
    if args.tls_cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)

    authenticator = None
    if args.auth is not None:
        user, _, password = args.auth.partition(":")
        authenticator = make_authenticator(user, password)

    faults = None
    if args.fault_rate > 0:
        faults = Faults(args.fault_rate, args.fault_seed, args.faults)

    live = set()
    conn_counter = 0

    def factory():
        nonlocal conn_counter
        conn_counter += 1
        return TestSMTP(
            handler,
            conn_id=conn_counter,
            greeting_delay=args.greeting_delay,
            recorder=recorder,
            live=live,
            faults=faults,
            loop=loop,
            hostname="localhost",       # avoid a slow getfqdn() lookup
            enable_SMTPUTF8=True,
            decode_data=False,          # keep raw bytes (original_content)
            tls_context=tls_context,
            require_starttls=args.require_starttls,
            auth_required=authenticator is not None,
            # Plaintext AUTH is fine for tests, unless TLS is configured.
            auth_require_tls=tls_context is not None,
            authenticator=authenticator,
        )

    server = await loop.create_server(factory, host="127.0.0.1", port=args.port)
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_on_stdin_eof:
        def watch_stdin():
            try:
                while sys.stdin.buffer.read(65536):
                    pass
            except OSError:
                pass
            loop.call_soon_threadsafe(stop.set)
        threading.Thread(target=watch_stdin, daemon=True).start()

    # The one and only stdout line: tests wait for it.
    sys.stdout.write(f"LISTENING {port}\n")
    sys.stdout.flush()

    await stop.wait()
    log.info("shutting down")
    server.close()
    for proto in list(live):
        if proto.transport is not None:
            proto.transport.abort()
    await asyncio.sleep(0.05)  # let connection_lost() callbacks run


def main(argv=None):
    args = parse_args(argv)
    if args.make_cert:
        make_cert(args.make_cert)
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="smtp_server: %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # aiosmtpd logs as "mail.log"; its per-connection warnings (e.g. about
    # plaintext AUTH) are expected here, so keep it quiet unless -v.
    logging.getLogger("mail.log").setLevel(logging.INFO if args.verbose else logging.ERROR)
    # Plaintext AUTH is deliberate here (see --auth); silence aiosmtpd's warning.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
