"""An SMTP server with AUTH PLAIN and LOGIN over TLS, for mailshot's tests.

Uses Debian's python3-aiosmtpd. Usage:
    auth_server.py MODE PORT USER PASSWORD CERT KEY OUTDIR
MODE is "starttls" (plain listener offering STARTTLS; AUTH only after it,
RFC 3207 + RFC 4954 section 4) or "implicit" (TLS from the first byte,
RFC 8314). Each accepted message is written atomically to OUTDIR/<n>.eml
with Return-Path, X-Mailshot-Rcpt and X-Auth-User headers prepended.
Prints "READY <port>" on stdout once listening; exits when stdin closes.
"""

import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    mode, port, user, password, cert, key, outdir = sys.argv[1:8]
    port = int(port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    counter = {"n": 0}

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            counter["n"] += 1
            name = os.path.join(outdir, "%06d.eml" % counter["n"])
            data = getattr(session, "auth_data", None)
            login = data.login if isinstance(data, LoginPassword) else b""
            head = "Return-Path: <%s>\r\nX-Mailshot-Rcpt: %s\r\nX-Auth-User: %s\r\n" % (
                envelope.mail_from,
                ", ".join(envelope.rcpt_tos),
                login.decode("utf-8", "replace") if isinstance(login, bytes) else login,
            )
            tmp = name + ".tmp"
            with open(tmp, "wb") as f:
                f.write(head.encode("utf-8"))
                f.write(envelope.original_content)
            os.rename(tmp, name)
            return "250 2.0.0 Ok: queued as %s" % os.path.basename(name)

    def factory():
        return SMTP(
            Handler(),
            hostname="auth.test",
            tls_context=context if mode == "starttls" else None,
            require_starttls=(mode == "starttls"),
            # With implicit TLS aiosmtpd does not see a STARTTLS layer, but
            # the whole session is already encrypted.
            auth_require_tls=(mode == "starttls"),
            auth_required=True,
            authenticator=authenticator,
            enable_SMTPUTF8=True,
            decode_data=False,
        )

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(
            factory,
            host="127.0.0.1",
            port=port,
            ssl=context if mode == "implicit" else None,
        )
    )
    bound = server.sockets[0].getsockname()[1]
    print("READY %d" % bound, flush=True)

    # The parent keeps our stdin open; EOF means it is gone, so stop.
    def on_stdin():
        if not os.read(sys.stdin.fileno(), 4096):
            loop.stop()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    loop.run_forever()
    server.close()


if __name__ == "__main__":
    main()
