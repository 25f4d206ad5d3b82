/**
 * How our NeDB datafiles are written and kept in shape.
 * - NeDB appends every write with fs.appendFile: open, write, close, each a round trip through the
 *   thread pool while the datastore's queue waits. Here the datafile stays open and each write is
 *   one synchronous write(2) of a few hundred bytes. Durability is unchanged: NeDB never fsyncs
 *   appends, and a write that returned is in the kernel's page cache, which outlives the process.
 * - A write that fails (a full disk) leaves the file and the memory as they were before it: the
 *   bytes it wrote are cut off, its change is undone in memory, and writes answer 503 for a second.
 *   Otherwise the next append would continue the torn line, and both would be lost.
 * - Reads never write: expired documents (TTL indexes) are left out of results and removed after
 *   the read, best-effort, where NeDB removed them within the read (which then failed on a full disk).
 * - NeDB removes an expired document only when a read meets it, and most reads go by another index
 *   (an outbox by sequence, a cart by id): outboxes, claim rows and guest carts stayed in memory and
 *   in the file for good. Each minute, a sweep finds them through their TTL index and removes them.
 * - Lines are serialised without NeDB's per-key replacer (same bytes, see serializeDocument), in
 *   appends and in rewrites (where NeDB also awaited a hook once per document).
 * - NeDB rewrites the whole file after loading it, and its auto-compaction rewrites it on a timer
 *   whether it grew or not: ~2 s and ~60 MB of garbage each time for a 10,000-product catalog. Here
 *   a file is rewritten only once its superseded lines outnumber the live documents (counted
 *   across restarts), or at load when it lost unreadable lines (after a copy is kept).
 * - One process at a time owns a data directory (see lockDataDir).
 */
import fs from "node:fs";
import { Errors } from "moleculer";
import type Datastore from "@seald-io/nedb";
import { EXPIRED_PER_SWEEP, MIN_LINES_BEFORE_COMPACTION, errorCode, errorMessage, internalsOf, isExpired, serializeDocument, type DatastoreInternals, type Doc, type Modification } from "./nedb-internals";
import { parseDatafile } from "./nedb-load";
import { markWriteFailed, markWritten, WRITE_PAUSE_AFTER_FAILURE_MS } from "./store-outages";
import { opsLog } from "../lib/ops-log";

export { serializeDocument } from "./nedb-internals";
export { lockDataDir, lockTiming } from "./nedb-dir-lock";
export { checkDatafile, loadDatafile, namingFile, parseDatafile, type ParsedDatafile } from "./nedb-load";

const storage: { crashSafeWriteFileLinesAsync(file: string, lines: string[], modes: unknown): Promise<void> } = require("@seald-io/nedb/lib/storage");

/**
 * 503 from the store: a write the disk refused (nothing was changed), or a collection that could
 * not be loaded. Not retryable by the broker: the action may have done other things before its
 * write (a charge), which a blind retry would do again.
 */
export class StoreUnavailableError extends Errors.MoleculerError {
	constructor(message: string, data?: unknown) {
		super(message, 503, "SERVICE_UNAVAILABLE", data);
		this.name = "StoreUnavailableError";
	}
}


/** Documents serialised between two turns of the event loop while a file is rewritten. */
const REWRITE_SLICE = 2000;

/**
 * The whole datafile as NeDB's rewrite writes it: every live document, then the index definitions.
 * Serialised in slices, giving the event loop a turn between them: a 120,000-message collection took
 * 1.5 s in one go, during which no request of any service was answered. The datastore's queue holds its
 * own operations meanwhile, so the documents do not change under it.
 */
export async function rewrittenLines(db: Datastore): Promise<string[]> {
	const docs = db.getAllData();
	const lines: string[] = [];
	for (let i = 0; i < docs.length; i++) {
		if (i > 0 && i % REWRITE_SLICE === 0) await new Promise<void>((resolve) => setImmediate(resolve));
		lines.push(serializeDocument(docs[i]));
	}
	const indexes = (db as unknown as { indexes: Record<string, { fieldName: unknown; unique: boolean; sparse: boolean }> }).indexes;
	for (const [name, { fieldName, unique, sparse }] of Object.entries(indexes)) {
		// NeDB keeps the _id index itself.
		if (name !== "_id") lines.push(serializeDocument({ $$indexCreated: { fieldName, unique, sparse } }));
	}
	return lines;
}

export interface NedbFile {
	/** Rewrites the file if it has grown past its live size (see above). */
	compactIfGrown(): Promise<boolean>;
	/** Removes up to EXPIRED_PER_SWEEP expired documents, found through the TTL indexes; how many. */
	removeExpired(): Promise<number>;
	/** Throws the 503 while writes are paused after a failed one. */
	checkWritable(): void;
	close(): void;
}

/**
 * Makes `db` append through one open descriptor and count what it appends. `supersededLines`: the
 * lines already in the file beyond its documents, so compaction counts across restarts.
 */
export function openDatafile(db: Datastore, collection: string, supersededLines = 0): NedbFile {
	const internals = internalsOf(db);
	const nedb = Object.getPrototypeOf(db) as DatastoreInternals;
	const p = internals.persistence;
	if (p.inMemoryOnly) return { compactIfGrown: async () => false, removeExpired: async () => 0, checkWritable: () => undefined, close: () => undefined };
	let fd: number | null = null;
	let appended = supersededLines;
	/** A failed write's bytes could not be cut off: the next append starts a new line. */
	let lineOpen = false;
	let pausedUntil = 0;
	const paused = () => pausedUntil !== 0 && Date.now() < pausedUntil;
	/** The collection was closed: a removal of expired documents still queued must not open the file again. */
	let closed = false;
	const closeFile = () => {
		if (fd !== null) fs.closeSync(fd);
		fd = null;
	};

	/** Cuts off what a failed append wrote; false if that failed too. */
	const cutBack = (written: number) => {
		if (written === 0) return true;
		try {
			fs.ftruncateSync(fd!, fs.fstatSync(fd!).size - written);
			return true;
		} catch {
			return false;
		}
	};
	/** Appends one line per document; a failure leaves none of its bytes, pauses writes and is returned. */
	const append = (docs: unknown[]): Error | undefined => {
		let lines = lineOpen ? "\n" : "";
		for (const doc of docs) lines += serializeDocument(doc) + "\n";
		const buf = Buffer.from(lines, "utf8");
		let written = 0;
		try {
			fd ??= fs.openSync(p.filename, "a", 0o644);
			while (written < buf.length) written += fs.writeSync(fd, buf, written);
		} catch (err) {
			lineOpen = !cutBack(written);
			pausedUntil = Date.now() + WRITE_PAUSE_AFTER_FAILURE_MS;
			markWriteFailed(p.filename, collection, errorCode(err) ?? errorMessage(err));
			return err as Error;
		}
		lineOpen = false;
		appended += docs.length;
		markWritten(p.filename);
		return undefined;
	};

	// NeDB changes its memory, then asks for the append. What the operation changed is recorded
	// here (references only), so a failed append is undone by the opposite change.
	let inserted: Doc[] | undefined;
	let updated: Modification[] | undefined;
	let removed: Doc[] | undefined;
	internals._insertInCache = (docs) => {
		nedb._insertInCache.call(db, docs);
		inserted = Array.isArray(docs) ? docs : [docs];
	};
	internals._updateIndexes = (modifications, newDoc) => {
		nedb._updateIndexes.call(db, modifications, newDoc);
		if (Array.isArray(modifications)) updated = modifications;
	};
	internals._removeAsync = async (...args) => {
		removed = [];
		try {
			return await nedb._removeAsync.apply(db, args);
		} finally {
			removed = undefined;
		}
	};
	internals._removeFromIndexes = (doc) => {
		removed?.push(doc);
		nedb._removeFromIndexes.call(db, doc);
	};
	/** Undoes the failed write in memory: the opposite of its recorded change, or else the file read back (it holds every write before). */
	const undoInMemory = (docs: Doc[]) => {
		try {
			if (updated?.length === docs.length && updated.every((m, i) => m.newDoc === docs[i])) {
				nedb._updateIndexes.call(db, updated.map(({ oldDoc, newDoc }) => ({ oldDoc: newDoc, newDoc: oldDoc })));
				return;
			}
			if (inserted?.length === docs.length && inserted.every((doc, i) => doc === docs[i])) {
				for (const doc of inserted) nedb._removeFromIndexes.call(db, doc);
				return;
			}
			if (removed?.length === docs.length && removed.every((doc, i) => docs[i].$$deleted === true && docs[i]._id === doc._id)) {
				for (const doc of removed) nedb._addToIndexes.call(db, doc);
				return;
			}
		} catch {
			// Half undone: the file read back below sets all of it right.
		}
		try {
			internals._resetIndexes(parseDatafile(fs.readFileSync(p.filename, "utf8"), 1, p.filename).data);
		} catch (err) {
			opsLog.error(`${collection}: reading ${p.filename} back after a failed write failed; memory may hold the failed write until a restart:`, err);
		}
	};

	p.persistNewStateAsync = async (docs) => {
		try {
			if (docs.length === 0) return;
			const err = append(docs);
			if (err === undefined) return;
			undoInMemory(docs as Doc[]);
			opsLog.error(`${collection}: writing to ${p.filename} failed (${errorMessage(err)}); the change was not made.`);
			throw new StoreUnavailableError(`The ${collection} store cannot take writes right now: nothing was changed`, { collection, reason: errorCode(err) ?? errorMessage(err) });
		} finally {
			inserted = updated = undefined;
		}
	};

	// Expiry. NeDB removes the expired documents a read meets within the read, which then failed
	// when that removal could not be stored (a full disk). Here a read only leaves them out, and
	// their removal is queued behind it, best-effort (sweepExpired). Updates keep NeDB's way: an
	// upsert needs the expired document gone before it inserts, and a write fails on a full disk anyway.
	let writing = false;
	internals._updateAsync = async (...args) => {
		writing = true;
		try {
			return await nedb._updateAsync.apply(db, args);
		} finally {
			writing = false;
		}
	};
	const expiredIds = new Set<string>();
	let sweepQueued = false;
	/** Stores the removal of the expired documents reads met, then removes them from memory; on failure they stay, hidden. How many went. */
	const sweepExpired = (): number => {
		sweepQueued = false;
		// Reads (or the next sweep) meet them again later.
		if (closed || paused()) {
			expiredIds.clear();
			return 0;
		}
		const ttl = internals.ttlIndexes;
		const fields = Object.keys(ttl);
		const now = Date.now();
		const expired: Doc[] = [];
		for (const id of expiredIds) {
			const [doc] = internals.indexes._id.getMatching(id);
			if (doc && isExpired(doc, ttl, fields, now)) expired.push(doc);
		}
		expiredIds.clear();
		if (expired.length === 0) return 0;
		const err = append(expired.map((doc) => ({ $$deleted: true, _id: doc._id })));
		if (err) {
			opsLog.error(`${collection}: storing the expiry of ${expired.length} document(s) in ${p.filename} failed (${errorMessage(err)}); they stay hidden and are removed once the file can be written.`);
			return 0;
		}
		for (const doc of expired) nedb._removeFromIndexes.call(db, doc);
		return expired.length;
	};
	internals._getCandidatesAsync = async (query, dontExpireStaleDocs = false) => {
		if (writing) return nedb._getCandidatesAsync.call(db, query, dontExpireStaleDocs);
		const docs = internals._getRawCandidates(query);
		const ttl = internals.ttlIndexes;
		const fields = dontExpireStaleDocs ? [] : Object.keys(ttl);
		// A copy, as NeDB's: the candidates may be an index's own list.
		if (fields.length === 0) return docs.slice();
		const now = Date.now();
		const live: Doc[] = [];
		for (const doc of docs) {
			if (!isExpired(doc, ttl, fields, now)) live.push(doc);
			else if (!paused()) expiredIds.add(doc._id);
		}
		if (expiredIds.size > 0 && !sweepQueued) {
			sweepQueued = true;
			// Queued behind this read: it runs before the caller's next operation (an insert of the same key).
			internals.executor.pushAsync(async () => void sweepExpired()).catch((err) => opsLog.error(`${collection}: removing expired documents failed:`, err));
		}
		return live;
	};

	// A rewrite writes a new file and renames it over the old one: the next append opens the new one.
	p.persistCachedDatabaseAsync = async () => {
		closeFile();
		await storage.crashSafeWriteFileLinesAsync(p.filename, await rewrittenLines(db), p.modes);
		db.emit("compaction.done");
		appended = 0;
		lineOpen = false;
	};
	return {
		async compactIfGrown() {
			// Counted without getAllData(), which copies every document into an array each minute.
			if (appended < MIN_LINES_BEFORE_COMPACTION || appended < internals.indexes._id.tree.getNumberOfKeys()) return false;
			await db.compactDatafileAsync();
			return true;
		},
		async removeExpired() {
			if (closed || paused()) return 0;
			const ttl = internals.ttlIndexes;
			const now = Date.now();
			const found: Doc[] = [];
			for (const [field, seconds] of Object.entries(ttl)) {
				const index = internals.indexes[field];
				if (!index) continue;
				// Documents without the field sort first in the index; isExpired leaves them out.
				for (const doc of index.getBetweenBounds({ $lt: new Date(now - seconds * 1000) })) {
					if (found.length >= EXPIRED_PER_SWEEP) break;
					if (isExpired(doc, ttl, [field], now)) found.push(doc);
				}
			}
			if (found.length === 0) return 0;
			// Through the queue, as a read's sweep: after the operations before it, before those after it.
			return internals.executor.pushAsync(async () => {
				for (const doc of found) expiredIds.add(doc._id);
				return sweepExpired();
			});
		},
		checkWritable() {
			if (paused()) {
				throw new StoreUnavailableError(`The ${collection} store cannot take writes right now: nothing was changed`, { collection });
			}
		},
		close() {
			closed = true;
			closeFile();
			// A closed store is not this process's to report any more.
			markWritten(p.filename);
		},
	};
}
