#!/usr/bin/env node
// The otlm executable. All logic is in lib/cli/main.js (runCli); this is the
// only place that touches the process's exit status.
// Exit codes: 0 ok, 1 usage, 2 bad input, 3 runtime.
import { runCli } from '../lib/cli/main.js';

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  isTTY: Boolean(process.stderr.isTTY),
});
