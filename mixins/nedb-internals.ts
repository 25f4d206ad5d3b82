/**
 * The parts of NeDB's datastore that the datafile modules (nedb-datafile, nedb-load, nedb-dir-lock)
 * reach into, and the small helpers they share.
 */
import type Datastore from "@seald-io/nedb";
import type { ParsedDatafile } from "./nedb-load";



/** A Date as NeDB stores it; an invalid one as null, as NeDB's serialise leaves it. */
export function nedbDate(this: Date): { $$date: number } | null {
	const time = this.getTime();
	return Number.isNaN(time) ? null : { $$date: time };
}

/**
 * One document as a datafile line, exactly as NeDB's `model.serialize` writes it, ~3x faster. NeDB
 * passes a replacer that runs for every key to check its name (already checked when the document
 * was inserted or modified) and to write Dates as `{"$$date": ms}`. Here Dates do that through
 * `toJSON` for the length of one synchronous stringify, and no other code runs meanwhile.
 */
export function serializeDocument(doc: unknown): string {
	const toJSON = Date.prototype.toJSON;
	Date.prototype.toJSON = nedbDate as unknown as typeof toJSON;
	try {
		return JSON.stringify(doc);
	} finally {
		Date.prototype.toJSON = toJSON;
	}
}

export interface Persistence {
	filename: string;
	inMemoryOnly: boolean;
	corruptAlertThreshold: number;
	treatRawStreamAsync(stream: AsyncIterable<string | Buffer>): Promise<ParsedDatafile>;
	persistNewStateAsync(docs: unknown[]): Promise<void>;
	persistCachedDatabaseAsync(): Promise<void>;
	modes: unknown;
}

export type Doc = Record<string, any>;
export interface Modification {
	oldDoc: Doc;
	newDoc: Doc;
}

export interface DatastoreInternals {
	persistence: Persistence;
	executor: { pushAsync<T>(task: () => Promise<T>): Promise<T> };
	indexes: Record<string, { getMatching(value: unknown): Doc[]; getBetweenBounds(query: Record<string, unknown>): Doc[]; tree: { getNumberOfKeys(): number } }>;
	ttlIndexes: Record<string, number>;
	_resetIndexes(docs?: unknown[]): void;
	_getRawCandidates(query: unknown): Doc[];
	_getCandidatesAsync(query: unknown, dontExpireStaleDocs?: boolean): Promise<Doc[]>;
	_insertInCache(docs: Doc | Doc[]): void;
	_updateIndexes(modifications: Modification[] | Doc, newDoc?: Doc): void;
	_addToIndexes(doc: Doc): void;
	_removeFromIndexes(doc: Doc): void;
	_updateAsync(...args: unknown[]): Promise<unknown>;
	_removeAsync(...args: unknown[]): Promise<number>;
}

export const { isDate }: { isDate(value: unknown): value is Date } = require("@seald-io/nedb/lib/utils");

/** NeDB's test: a TTL field holding a Date older than the index's time to live. */
export function isExpired(doc: Doc, ttl: Record<string, number>, fields: string[], now: number): boolean {
	for (const field of fields) {
		const value = doc[field];
		if (isDate(value) && now > value.getTime() + ttl[field] * 1000) return true;
	}
	return false;
}



export const internalsOf = (db: Datastore) => db as unknown as DatastoreInternals;
// Not `instanceof Error`: errors from another realm (node's own, under jest) are not.
export const errorMessage = (err: unknown) => (typeof (err as Error | null)?.message === "string" ? (err as Error).message : String(err));
export const errorCode = (err: unknown) => (err as NodeJS.ErrnoException | null)?.code;

/** Superseded lines that always justify a rewrite's cost, whatever the live size. */
export const MIN_LINES_BEFORE_COMPACTION = 1000;
/** Expired documents removed per collection per sweep (each minute): a backlog goes in steps, never one long pause. */
export const EXPIRED_PER_SWEEP = 5000;
