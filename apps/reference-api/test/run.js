'use strict';
// `npm test`: every *.test.js here, one file at a time (some stop Redis or lock a table, which
// files running side by side would feel), TAP on stdout, exit 1 on any failure. Node 18's
// `node --test` has no flag for that, its run() has.
const fs = require('node:fs');
const path = require('node:path');
const { run } = require('node:test');
const { tap } = require('node:test/reporters');

const files = fs.readdirSync(__dirname).filter((name) => name.endsWith('.test.js')).sort()
  .map((name) => path.join(__dirname, name));
const stream = run({ files, concurrency: 1, timeout: 120000 });
stream.on('test:fail', () => { process.exitCode = 1; });
stream.compose(tap).pipe(process.stdout);
