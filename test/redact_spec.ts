import * as assert from 'node:assert/strict';
import { redactUrl } from '../lib/util/redact';

describe('redactUrl', () => {
  it('hides the user and password of a broker URL and the values of a query', () => {
    assert.equal(redactUrl('mqtt://plant:s3cret@10.0.0.5:1883'), 'mqtt://***@10.0.0.5:1883');
    assert.equal(
      redactUrl('https://example.com/m.gguf?token=abc&x=1'),
      'https://example.com/m.gguf?token=***&x=***',
    );
    assert.equal(redactUrl('hf:user/repo/file.gguf'), 'hf:user/repo/file.gguf');
    assert.equal(redactUrl('mqtt://broker.local'), 'mqtt://broker.local');
    assert.equal(redactUrl('not a url user:pw@host?key=1'), 'not a url user:pw@host?key=***');
  });
});
