// A recording SMTP sink on nodemailer's `smtp-server`, started by
// `smtp_server.rs`. Two listeners on 127.0.0.1: one offering STARTTLS, one
// with implicit TLS. AUTH PLAIN and LOGIN with one fixed account, only inside
// TLS. Every accepted message is stored once per envelope recipient as
// DIR/mail/<recipient>/<n>.eml, with X-Auth-User and X-Session headers
// prepended. DIR/policy holds lines `ADDRESS CODE` (550, 451, ...): RCPT TO
// that address gets that code; the file is read for every RCPT, so a test can
// lift a refusal between runs.
//
// Usage: node smtp_server.js STARTTLS_PORT TLS_PORT CERT KEY USER PASS DIR
// Prints `READY` once both listeners accept connections; exits when stdin closes.
'use strict';

const fs = require('fs');
const path = require('path');
const { SMTPServer } = require('smtp-server');

const [starttlsPort, tlsPort, certFile, keyFile, user, pass, dir] = process.argv.slice(2);
const cert = fs.readFileSync(certFile);
const key = fs.readFileSync(keyFile);
let stored = 0;

function policyFor(address) {
    let text = '';
    try {
        text = fs.readFileSync(path.join(dir, 'policy'), 'utf8');
    } catch (_) {
        return null;
    }
    for (const line of text.split('\n')) {
        const [addr, code] = line.trim().split(/\s+/);
        if (addr && addr.toLowerCase() === address.toLowerCase()) return parseInt(code, 10);
    }
    return null;
}

function options(secure) {
    return {
        secure,
        key,
        cert,
        name: 'smtp-server.test',
        authMethods: ['PLAIN', 'LOGIN'],
        allowInsecureAuth: false,
        size: 50 * 1024 * 1024,
        logger: false,
        onAuth(auth, _session, callback) {
            if (auth.username === user && auth.password === pass) {
                return callback(null, { user: auth.username });
            }
            return callback(new Error('Invalid username or password'));
        },
        onRcptTo(address, _session, callback) {
            const code = policyFor(address.address);
            if (code) {
                const err = new Error(code >= 500 ? 'No such user here' : 'Try again later');
                err.responseCode = code;
                return callback(err);
            }
            return callback();
        },
        onData(stream, session, callback) {
            const chunks = [];
            stream.on('data', (c) => chunks.push(c));
            stream.on('end', () => {
                const head = `X-Auth-User: ${session.user || ''}\r\nX-Session: ${session.id}\r\n`;
                const body = Buffer.concat([Buffer.from(head), ...chunks]);
                for (const rcpt of session.envelope.rcptTo) {
                    const box = path.join(dir, 'mail', rcpt.address.toLowerCase());
                    fs.mkdirSync(box, { recursive: true });
                    stored += 1;
                    const tmp = path.join(box, `.${stored}.tmp`);
                    fs.writeFileSync(tmp, body);
                    fs.renameSync(tmp, path.join(box, `${stored}.eml`));
                }
                callback(null, 'Message stored');
            });
        },
    };
}

const plain = new SMTPServer(options(false));
const secure = new SMTPServer(options(true));
for (const s of [plain, secure]) s.on('error', (e) => process.stderr.write(`smtp-server: ${e}\n`));
plain.listen(Number(starttlsPort), '127.0.0.1', () => {
    secure.listen(Number(tlsPort), '127.0.0.1', () => {
        process.stdout.write('READY\n');
    });
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
