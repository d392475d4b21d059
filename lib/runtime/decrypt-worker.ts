import { parentPort, workerData } from 'node:worker_threads';
import { decryptChunks, type DecryptJob } from './encrypted';

/**
 * The worker thread behind decryptModelToRam: AES-GCM and sha256 over every chunk of an encrypted
 * model run here, never on Node-RED's event loop (nor the runtime child's, which serves requests
 * of the other models meanwhile). Progress is sent at most every 1 %.
 */
let last = -1;
decryptChunks(workerData as DecryptJob, (fraction) => {
  const percent = Math.floor(fraction * 100);
  if (percent === last) return;
  last = percent;
  parentPort?.postMessage({ progress: fraction });
}).then(
  (sha256) => parentPort?.postMessage({ sha256 }),
  (err: Error) => parentPort?.postMessage({ error: { message: err.message } }),
);
