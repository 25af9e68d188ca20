/**
 * Questions on the terminal: a yes/no confirmation and a password that is
 * not echoed. Both write to stderr so that stdout carries only results.
 */
import { createInterface } from 'node:readline';
import { CliError, EXIT_FAILURE } from '../output.js';
import type { Io } from './context.js';

export async function confirm(io: Io, question: string): Promise<boolean> {
  const rl = createInterface({ input: io.stdin, output: io.stderr as NodeJS.WritableStream, terminal: true });
  try {
    const answer = await new Promise<string>((resolve, reject) => {
      rl.once('SIGINT', () => reject(new CliError('cancelled', EXIT_FAILURE)));
      rl.once('close', () => resolve(''));
      rl.question(`${question} [y/N] `, resolve);
    });
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const BACKSPACES = new Set(['\u0008', '\u007f']);

/** Reads a line in raw mode so nothing typed reaches the screen. */
export async function askHidden(io: Io, question: string): Promise<string> {
  const stdin = io.stdin;
  if (!stdin.setRawMode) throw new CliError('cannot read a password without a terminal; use --password-stdin', 2);
  io.stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (chunk: string | Buffer): void => {
        for (const ch of String(chunk)) {
          if (ch === '\r' || ch === '\n' || ch === CTRL_D) {
            stdin.off('data', onData);
            resolve(typed);
            return;
          }
          if (ch === CTRL_C) {
            stdin.off('data', onData);
            reject(new CliError('cancelled', EXIT_FAILURE));
            return;
          }
          if (BACKSPACES.has(ch)) typed = typed.slice(0, -1);
          else typed += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    io.stderr.write('\n');
  }
}

/** All of stdin, for `--password-stdin` and `--file -`. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
