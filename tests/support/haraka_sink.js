// A recording sink plugin for the private Haraka of `haraka.rs`.
//
// RCPT: the instance's `policy` file (lines `ADDRESS CODE`, read for every
// RCPT so a test can lift a refusal between runs) refuses an address with
// that code; every other recipient is accepted. QUEUE (both the inbound and
// the relaying/authenticated path): each message is stored once per envelope
// recipient as mail/<recipient>/<n>.eml, with X-Auth-User and X-Session
// headers prepended.
'use strict';

const fs = require('fs');
const path = require('path');
const { Writable } = require('stream');

let stored = 0;

// `address` is a getter in Haraka 3.3 and a method before it.
function addressOf(a) {
    const v = typeof a.address === 'function' ? a.address() : a.address;
    return String(v).toLowerCase();
}

exports.register = function () {
    this.root = process.env.MAILSHOT_SINK_DIR;
    this.register_hook('rcpt', 'policy');
    this.register_hook('queue', 'store');
    this.register_hook('queue_outbound', 'store');
};

exports.policy = function (next, connection, params) {
    const address = addressOf(params[0]);
    let text = '';
    try {
        text = fs.readFileSync(path.join(this.root, 'policy'), 'utf8');
    } catch (_) {
        text = '';
    }
    for (const line of text.split('\n')) {
        const [addr, code] = line.trim().split(/\s+/);
        if (addr && addr.toLowerCase() === address) {
            const n = parseInt(code, 10);
            if (n >= 500) return next(DENY, 'No such user here');
            return next(DENYSOFT, 'Try again later');
        }
    }
    return next(OK);
};

exports.store = function (next, connection) {
    const txn = connection.transaction;
    const root = this.root;
    const chunks = [];
    const sink = new Writable({
        write(chunk, _enc, done) {
            chunks.push(Buffer.from(chunk));
            done();
        },
    });
    sink.on('finish', () => {
        const head =
            `X-Auth-User: ${connection.notes.auth_user || ''}\r\n` +
            `X-Session: ${connection.uuid}\r\n`;
        const body = Buffer.concat([Buffer.from(head), ...chunks]);
        for (const rcpt of txn.rcpt_to) {
            const box = path.join(root, 'mail', addressOf(rcpt));
            fs.mkdirSync(box, { recursive: true });
            stored += 1;
            const name = `${process.pid}-${stored}`;
            fs.writeFileSync(path.join(box, `.${name}.tmp`), body);
            fs.renameSync(path.join(box, `.${name}.tmp`), path.join(box, `${name}.eml`));
        }
        next(OK, 'Message stored');
    });
    txn.message_stream.pipe(sink, { dot_stuffed: false });
};
