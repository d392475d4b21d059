/** Builds the name lists off Node-RED's event loop (see loadGazetteer) and hands them back. */
import { parentPort } from 'node:worker_threads';
import { nameLists } from './gazetteer';

parentPort?.postMessage(nameLists());
