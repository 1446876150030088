#!/usr/bin/env python3
"""A real SMTP server for the mail tests: aiosmtpd on 127.0.0.1, writing every message it
accepts to --inbox as <ns>-<n>.eml (headers X-Envelope-From, X-Envelope-To, X-Tls, X-Authenticated
first, then the message as received; written to a dot-file and renamed, so a reader never sees
half a message).

  --tls none|starttls|implicit   starttls: offers STARTTLS and requires it before MAIL;
                                 implicit: TLS from the first byte
  --cert-dir DIR                 where the test CA (ca.pem) is written; the server certificate
                                 (for 127.0.0.1 and localhost) is made by trustme at start
  --auth USER:PASSWORD           AUTH PLAIN/LOGIN required, with these credentials only
  --port N                       0 = a free port

Prints SMTP_PORT=<port> once it accepts connections, then runs until killed.
"""
import argparse
import os
import socket
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Inbox:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            name = f"{time.time_ns()}-{self.count}.eml"
        head = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {','.join(envelope.rcpt_tos)}\r\n"
            f"X-Tls: {'yes' if server.transport.get_extra_info('ssl_object') else 'no'}\r\n"
            f"X-Authenticated: {'yes' if session.authenticated else 'no'}\r\n"
        ).encode()
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode()
        tmp = os.path.join(self.directory, "." + name)
        with open(tmp, "wb") as f:
            f.write(head + body)
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 2.0.0 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--inbox", required=True)
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert-dir")
    p.add_argument("--auth")
    a = p.parse_args()
    os.makedirs(a.inbox, exist_ok=True)
    port = a.port or free_port()

    context = None
    if a.tls != "none":
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        os.makedirs(a.cert_dir, exist_ok=True)
        ca.cert_pem.write_to_path(os.path.join(a.cert_dir, "ca.pem"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)

    kwargs = {}
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login == user.encode() and auth_data.password == password.encode()
            return AuthResult(success=ok)

        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=(a.tls == "starttls"))
    if a.tls == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif a.tls == "implicit":
        kwargs.update(ssl_context=context)
    if not a.auth:
        kwargs.update(auth_require_tls=False)

    controller = Controller(Inbox(a.inbox), hostname="127.0.0.1", port=port, server_hostname="localhost", ready_timeout=10, **kwargs)
    controller.start()
    print(f"SMTP_PORT={port}", flush=True)
    try:
        threading.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
