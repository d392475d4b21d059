/** Builds the name lists off Node-RED's event loop (see loadGazetteer) and hands them back. */
import { parentPort } from 'node:worker_threads';
import { nameLists } from './gazetteer';

const lists = nameLists();
// Joined: one string crosses threads as one copy (see loadGazetteer).
parentPort?.postMessage({
  given: lists.given.join('\n'),
  family: lists.family.join('\n'),
  places: lists.places.join('\n'),
});
