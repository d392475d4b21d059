import { randomBytes } from 'node:crypto';
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow } from 'node-red';
import {
  auditRecordAsync,
  BlockedError,
  isPseudonymMap,
  JsonLinesAuditWriter,
  OPERATORS,
  PrivacyGuard,
  Pseudonymizer,
  SessionMaps,
  DEFAULT_SESSION_LIMITS,
  type AuditRecord,
  type CustomPattern,
  type Operator,
  type PersonDetector,
  type PseudonymMap,
} from '../lib/privacy';
import { formNumber } from './form';
import { statusText } from './status';

const NS = 'node-red-contrib-edge-llm/privacy-guard:privacy-guard';
/** Where the pseudonym map travels with the message. Underscore: not for display or logs. */
const MAP_PROPERTY = '_privacy';
const SESSION_PREFIX = 'privacy-guard:session:';

interface PrivacyGuardNodeDef extends NodeDef {
  mode: 'protect' | 'restore';
  /** Comma-separated message properties, each scanned deep. */
  fields: string;
  operators: Record<string, Operator>;
  customPatterns: string;
  customOperator: Operator;
  defaultCountry: string;
  /** Comma-separated ISO 3166 regions for national phone numbers; empty: the gateway's and a broad set. */
  regions: string;
  person: PersonDetector;
  store: 'msg' | 'flow';
  sessionProperty: string;
  audit: 'off' | 'log' | 'file';
  auditLevel: 'info' | 'debug' | 'trace';
  auditFile: string;
  maxChars: string;
  /** store "flow": sessions kept, and seconds a session lives unused. */
  maxSessions: string;
  sessionTtl: string;
}

interface PrivacyGuardCredentials {
  key?: string;
}

type Send = (msg: NodeMessage | (NodeMessage | null)[]) => void;
type Done = (err?: Error) => void;

export = function (RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string => RED._(`${NS}.${key}`, params);

  function parseFields(spec: string | undefined): string[] {
    const fields = (spec ?? '')
      .split(',')
      .map((f) => f.trim().replace(/^msg\./, ''))
      .filter((f) => f !== '');
    if (fields.length === 0) return ['payload'];
    for (const f of fields) {
      if (f === MAP_PROPERTY || f.startsWith(MAP_PROPERTY + '.'))
        throw new Error(t('errors.bad-field', { field: f }));
      try {
        RED.util.normalisePropertyExpression(f);
      } catch {
        throw new Error(t('errors.bad-field', { field: f }));
      }
    }
    return fields;
  }

  function parsePatterns(text: string | undefined): CustomPattern[] {
    if (!text || text.trim() === '') return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new Error(t('errors.bad-patterns', { reason: (err as Error).message }), { cause: err });
    }
    if (!Array.isArray(parsed)) throw new Error(t('errors.bad-patterns', { reason: 'not a JSON array' }));
    return parsed as CustomPattern[];
  }

  function PrivacyGuardNode(this: Node<PrivacyGuardCredentials>, def: PrivacyGuardNodeDef): void {
    RED.nodes.createNode(this, def);
    const mode = def.mode === 'restore' ? 'restore' : 'protect';
    let guard: PrivacyGuard | undefined;
    let fields: string[] = ['payload'];
    let configError: string | undefined;
    let sessions: SessionMaps | undefined;
    let writer: JsonLinesAuditWriter | undefined;
    const key = this.credentials?.key ? Buffer.from(this.credentials.key, 'utf8') : undefined;
    // Without a configured key the audit hashes still hide the input, but only for this run.
    const auditKey = key ?? randomBytes(32);

    try {
      const operators: Record<string, Operator> = {};
      for (const [type, op] of Object.entries(def.operators ?? {})) {
        if (OPERATORS.includes(op)) operators[type] = op;
        else throw new Error(t('errors.bad-operator', { type, operator: String(op) }));
      }
      fields = parseFields(def.fields);
      const maxChars = formNumber(def.maxChars, undefined, { min: 1, whole: true }, (value) =>
        t('errors.bad-number', { name: 'maxChars', value }),
      );
      const positive = (name: string, value: string | undefined, fallback: number): number =>
        formNumber(value, fallback, { above: 0 }, (raw) => t('errors.bad-number', { name, value: raw }));
      const regions = (def.regions ?? '')
        .split(/[\s,;]+/)
        .map((r) => r.trim().toUpperCase())
        .filter((r) => r !== '');
      guard = new PrivacyGuard({
        operators,
        customPatterns: parsePatterns(def.customPatterns),
        customOperator: OPERATORS.includes(def.customOperator) ? def.customOperator : 'redact',
        defaultCountry: def.defaultCountry?.trim().toUpperCase() || undefined,
        regions,
        // 'compromise' is what older flows saved for the default detector.
        person: def.person === 'rules' || def.person === 'off' ? def.person : 'names',
        key,
        limits: maxChars ? { maxChars } : undefined,
      });
      const flow = () => this.context().flow;
      sessions = new SessionMaps(
        { get: (k) => flow().get(k), set: (k, v) => flow().set(k, v) },
        {
          ...DEFAULT_SESSION_LIMITS,
          maxSessions: Math.floor(
            positive('maxSessions', def.maxSessions, DEFAULT_SESSION_LIMITS.maxSessions),
          ),
          ttlMs: positive('sessionTtl', def.sessionTtl, DEFAULT_SESSION_LIMITS.ttlMs / 1000) * 1000,
        },
      );
      if (def.audit === 'file') {
        if (!def.auditFile?.trim()) throw new Error(t('errors.no-audit-file'));
        writer = new JsonLinesAuditWriter(def.auditFile.trim(), (err) =>
          this.warn(t('errors.audit-write', { reason: err.message })),
        );
      }
    } catch (err) {
      configError = (err as Error).message;
      this.error(t('errors.config', { reason: configError }));
      this.status({ fill: 'red', shape: 'ring', text: t('status.config-error') });
    }
    if (!configError) this.status({});
    // The name lists load once per process, at deploy and off the event loop; messages that
    // arrive meanwhile wait for them in the queue below.
    const prepared: Promise<void> =
      guard && mode === 'protect'
        ? guard.prepare().catch((err: Error) => this.warn(t('errors.prepare', { reason: err.message })))
        : Promise.resolve();

    const audit = async (input: unknown, counts: Record<string, number>, blocked?: string): Promise<void> => {
      if (def.audit !== 'log' && def.audit !== 'file') return;
      // Hashed in pieces: a message of megabytes must not hold the event loop for the hash either.
      const record: AuditRecord = await auditRecordAsync({
        key: auditKey,
        node: this.id,
        mode,
        input,
        counts,
        blocked,
      });
      if (writer) writer.write(record);
      else if (def.auditLevel === 'trace') this.trace(JSON.stringify(record));
      else if (def.auditLevel === 'debug') this.debug(JSON.stringify(record));
      else this.log(JSON.stringify(record));
    };

    const sessionKey = (msg: NodeMessageInFlow): string | undefined => {
      if (def.store !== 'flow') return undefined;
      const id = RED.util.getMessageProperty(msg, def.sessionProperty?.trim() || 'sessionId');
      return typeof id === 'string' || typeof id === 'number' ? SESSION_PREFIX + String(id) : undefined;
    };

    const summary = (counts: Record<string, number>): string =>
      Object.entries(counts)
        .map(([type, n]) => `${type} ${n}`)
        .join(', ');

    const protect = async (msg: NodeMessageInFlow, send: Send, done: Done): Promise<void> => {
      const g = guard as PrivacyGuard;
      const session = sessionKey(msg);
      const pseudonyms = new Pseudonymizer(
        session ? (sessions as SessionMaps).load(session) : (msg as Record<string, unknown>)[MAP_PROPERTY],
      );
      const originals = fields.map((f) => RED.util.getMessageProperty(msg, f) as unknown);
      const counts: Record<string, number> = {};
      const results: unknown[] = [];
      try {
        for (const value of originals) {
          if (value === undefined) {
            results.push(undefined);
            continue;
          }
          const r = await g.protectAsync(value, pseudonyms);
          for (const [type, n] of Object.entries(r.counts)) counts[type] = (counts[type] ?? 0) + n;
          results.push(r.value);
        }
      } catch (err) {
        const reason =
          err instanceof BlockedError ? err.reason : t('errors.internal', { reason: String(err) });
        await audit(originals, counts, reason);
        this.status({ fill: 'red', shape: 'ring', text: statusText(t('status.blocked', { reason })) });
        (msg as Record<string, unknown>).privacy = { blocked: reason };
        send([null, msg]);
        done();
        return;
      }
      fields.forEach((f, i) => {
        if (originals[i] !== undefined) RED.util.setMessageProperty(msg, f, results[i], true);
      });
      // With a session store only the binding travels: which request of which session this is.
      if (session)
        (msg as Record<string, unknown>)[MAP_PROPERTY] = (sessions as SessionMaps).save(
          session,
          pseudonyms.map,
          pseudonyms.used,
        );
      else if (pseudonyms.size > 0) (msg as Record<string, unknown>)[MAP_PROPERTY] = pseudonyms.map;
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      (msg as Record<string, unknown>).privacy = { counts, total };
      await audit(originals, counts);
      this.status(
        total > 0
          ? { fill: 'green', shape: 'dot', text: summary(counts) }
          : { fill: 'green', shape: 'ring', text: t('status.clean') },
      );
      send([msg, null]);
      done();
    };

    const restore = async (msg: NodeMessageInFlow, send: Send, done: Done): Promise<void> => {
      const g = guard as PrivacyGuard;
      const session = sessionKey(msg);
      const bound = session
        ? (sessions as SessionMaps).forRequest(session, (msg as Record<string, unknown>)[MAP_PROPERTY])
        : undefined;
      const map = session ? bound?.map : (msg as Record<string, unknown>)[MAP_PROPERTY];
      if (!isPseudonymMap(map)) {
        this.status({ fill: 'yellow', shape: 'ring', text: t('status.no-map') });
        send([msg, null]);
        done();
        return;
      }
      let restored = 0;
      const originals = fields.map((f) => RED.util.getMessageProperty(msg, f) as unknown);
      try {
        const results: unknown[] = [];
        for (const value of originals) {
          if (value === undefined) {
            results.push(undefined);
            continue;
          }
          // Only what this request gave the model comes back, never a placeholder someone typed.
          const r = await g.restoreAsync(value, map as PseudonymMap, bound?.only);
          restored += r.restored;
          results.push(r.value);
        }
        fields.forEach((f, i) => {
          if (originals[i] !== undefined) RED.util.setMessageProperty(msg, f, results[i], true);
        });
      } catch (err) {
        const reason =
          err instanceof BlockedError ? err.reason : t('errors.internal', { reason: String(err) });
        await audit(originals, {}, reason);
        this.status({ fill: 'red', shape: 'ring', text: statusText(t('status.blocked', { reason })) });
        (msg as Record<string, unknown>).privacy = { blocked: reason };
        send([null, msg]);
        done();
        return;
      }
      // The originals are back where they belong; the map need not travel further.
      delete (msg as Record<string, unknown>)[MAP_PROPERTY];
      await audit(originals, { RESTORED: restored });
      this.status({ fill: 'green', shape: 'dot', text: t('status.restored', { count: restored }) });
      send([msg, null]);
      done();
    };

    // Large messages are scanned in slices that give the event loop back; messages still leave in
    // the order they came, and a session's pseudonyms are read and written by one message at a time.
    let queue: Promise<void> = prepared;
    this.on('input', (msg: NodeMessageInFlow, send: Send, done: Done) => {
      if (configError || !guard) {
        done(new Error(t('errors.config', { reason: configError ?? 'not configured' })));
        return;
      }
      queue = queue.then(async () => {
        try {
          if (mode === 'protect') await protect(msg, send, done);
          else await restore(msg, send, done);
        } catch (err) {
          // Only a fault outside the guard (a context store, a setter) gets here: nothing was sent.
          this.status({ fill: 'red', shape: 'ring', text: t('status.error') });
          done(err as Error);
        }
      });
    });

    this.on('close', (_removed: boolean, done: () => void) => {
      const finished = writer ? writer.close() : Promise.resolve();
      finished.then(
        () => done(),
        () => done(),
      );
    });
  }

  RED.nodes.registerType('privacy-guard', PrivacyGuardNode as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { key: { type: 'password' } },
  });
};
