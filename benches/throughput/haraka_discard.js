// The benchmark's Haraka plugin: every recipient is accepted, and every
// queued message is counted (one line appended to $BENCH_COUNT_FILE before
// the reply) and then discarded.
'use strict';

const fs = require('fs');

exports.register = function () {
    this.count_file = process.env.BENCH_COUNT_FILE;
    this.register_hook('rcpt', 'accept');
    this.register_hook('queue', 'discard');
    this.register_hook('queue_outbound', 'discard');
};

exports.accept = function (next) {
    return next(OK);
};

exports.discard = function (next) {
    fs.appendFileSync(this.count_file, 'queued\n');
    return next(OK);
};
