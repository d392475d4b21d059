import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import { SessionError } from './state';

export { TEMP_MARK, syncFile, writeAtomic, writeAtomicSync } from '../util/files';

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
