'use strict';
// One JSON object per line on stdout (journald keeps it as the message). Callers pass fields, never
// a whole request, URL or configuration, so credentials have no way into a log line.

function write(level, msg, fields) {
  const line = { time: new Date().toISOString(), level, msg, ...fields };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

module.exports = {
  info: (msg, fields = {}) => write('info', msg, fields),
  warn: (msg, fields = {}) => write('warn', msg, fields),
  error: (msg, fields = {}) => write('error', msg, fields),
};
