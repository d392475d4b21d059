import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SessionError } from './state';

/** Marks a temporary file: never read as a record, removed when a store opens. */
export const TEMP_MARK = '.tmp-';

let tempCounter = 0;

/**
 * Writes a file so that a crash at any moment leaves either the old content or the new one: the
 * data goes to a temporary file in the same folder, is fsync'd, renamed over the target, and the
 * folder is fsync'd so that the rename itself survives a power cut.
 */
export async function writeAtomic(file: string, data: Buffer | string): Promise<void> {
  const temp = `${file}${TEMP_MARK}${process.pid}-${++tempCounter}`;
  const handle = await fs.promises.open(temp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.promises.rename(temp, file);
  } catch (err) {
    await fs.promises.rm(temp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(file));
}

export function writeAtomicSync(file: string, data: Buffer | string): void {
  const temp = `${file}${TEMP_MARK}${process.pid}-${++tempCounter}`;
  const fd = fs.openSync(temp, 'w', 0o600);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  syncDirSync(path.dirname(file));
}

async function syncDir(dir: string): Promise<void> {
  // Windows cannot open a folder for fsync; there a rename is as durable as the OS makes it.
  if (process.platform === 'win32') return;
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function syncDirSync(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsyncs a file written by someone else (the runtime's KV snapshot) before a record points at it. */
export async function syncFile(file: string): Promise<void> {
  const handle = await fs.promises.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

interface Sealed {
  v: 1;
  iv: string;
  tag: string;
  data: string;
}

/**
 * AES-256-GCM with a key derived by scrypt from the passphrase in the node's credentials and the
 * store's own salt. Each file is sealed with a fresh IV and its name as associated data, so a file
 * copied over another record's name does not open either.
 */
export class Sealer {
  private readonly key: Buffer;

  constructor(passphrase: string, salt: Buffer) {
    this.key = scryptSync(passphrase, salt, 32, { N: 1 << 14, r: 8, p: 1 });
  }

  seal(plain: string, name: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(name));
    const data = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    const sealed: Sealed = {
      v: 1,
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      data: data.toString('base64'),
    };
    return JSON.stringify(sealed);
  }

  /** Throws `wrong_key` when the key (or the name) does not match what sealed the text. */
  open(text: string, name: string): string {
    let sealed: Sealed;
    try {
      sealed = JSON.parse(text) as Sealed;
    } catch (err) {
      throw new SessionError('corrupt', `${name} is not a sealed session file.`, { cause: err });
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(sealed.iv, 'base64'));
      decipher.setAAD(Buffer.from(name));
      decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
      return Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]).toString(
        'utf8',
      );
    } catch (err) {
      throw new SessionError('wrong_key', `${name} cannot be decrypted with this key.`, { cause: err });
    }
  }
}
