import * as fs from 'node:fs';
import * as path from 'node:path';

/** Marks a temporary file: never read as a record, removed by whoever owns the folder. */
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

/** Makes a rename in `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
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

/** Removes what writeAtomic left of `file` when a crash came between the write and the rename. */
export async function removeTemps(file: string): Promise<void> {
  const prefix = path.basename(file) + TEMP_MARK;
  const dir = path.dirname(file);
  for (const name of await fs.promises.readdir(dir)) {
    if (name.startsWith(prefix)) await fs.promises.rm(path.join(dir, name), { force: true });
  }
}
