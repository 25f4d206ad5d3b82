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
 * - Lines are serialised without NeDB's per-key replacer (same bytes, see serializeDocument), in
 *   appends and in rewrites (where NeDB also awaited a hook once per document).
 * - NeDB rewrites the whole file after loading it, and its auto-compaction rewrites it on a timer
 *   whether it grew or not: ~2 s and ~60 MB of garbage each time for a 10,000-product catalog. Here
 *   a file is rewritten only once its superseded lines outnumber the live documents (counted
 *   across restarts), or at load when it lost unreadable lines (after a copy is kept).
 * - One process at a time owns a data directory (see lockDataDir).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { StringDecoder } from "node:string_decoder";
import { Errors } from "moleculer";
import type Datastore from "@seald-io/nedb";

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

/** A Date as NeDB stores it; an invalid one as null, as NeDB's serialise leaves it. */
function nedbDate(this: Date): { $$date: number } | null {
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

interface Persistence {
	filename: string;
	inMemoryOnly: boolean;
	corruptAlertThreshold: number;
	treatRawStreamAsync(stream: AsyncIterable<string | Buffer>): Promise<ParsedDatafile>;
	persistNewStateAsync(docs: unknown[]): Promise<void>;
	persistCachedDatabaseAsync(): Promise<void>;
	modes: unknown;
}

type Doc = Record<string, any>;
interface Modification {
	oldDoc: Doc;
	newDoc: Doc;
}

interface DatastoreInternals {
	persistence: Persistence;
	executor: { pushAsync<T>(task: () => Promise<T>): Promise<T> };
	indexes: Record<string, { getMatching(value: unknown): Doc[] }>;
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

const { isDate }: { isDate(value: unknown): value is Date } = require("@seald-io/nedb/lib/utils");

/** NeDB's test: a TTL field holding a Date older than the index's time to live. */
function isExpired(doc: Doc, ttl: Record<string, number>, fields: string[], now: number): boolean {
	for (const field of fields) {
		const value = doc[field];
		if (isDate(value) && now > value.getTime() + ttl[field] * 1000) return true;
	}
	return false;
}

/** Superseded lines that always justify a rewrite's cost, whatever the live size. */
const MIN_LINES_BEFORE_COMPACTION = 1000;
/** How long writes answer 503 after one failed, instead of each failing and reloading the file. */
const WRITE_PAUSE_AFTER_FAILURE_MS = 1000;

const internalsOf = (db: Datastore) => db as unknown as DatastoreInternals;
// Not `instanceof Error`: errors from another realm (node's own, under jest) are not.
const errorMessage = (err: unknown) => (typeof (err as Error | null)?.message === "string" ? (err as Error).message : String(err));
const errorCode = (err: unknown) => (err as NodeJS.ErrnoException | null)?.code;

// ---------------------------------------------------------------------------------------------
// The data directory's owner

const LOCK_FILE = "shop.lock";

/**
 * A lock written on another host (a container, a pod, a machine sharing the volume) names a pid
 * this host cannot check: there the lock's age tells whether its owner lives. Owners refresh the
 * lock's mtime every `refreshMs`; one not refreshed for `abandonedAfterMs` (6 refreshes missed: a
 * long stall or clock skew between hosts does not get there) is taken over. A pod rescheduled
 * after its node died finds a lock minutes old (Kubernetes evicts after 5 min) and starts at once;
 * a container replaced right after a kill -9 is refused for up to a minute, and its restart takes
 * over. Tests shorten both.
 */
export const lockTiming = { refreshMs: 10_000, abandonedAfterMs: 60_000 };

interface OwnedDir {
	/** Open collections using it. */
	users: number;
	/** The lock file's content as this process wrote it. */
	lock: string;
	refresh: NodeJS.Timeout;
	/** The lock was found changed or gone: said once. */
	lost: boolean;
}
/** Data directories this process owns. */
const ownedDirs = new Map<string, OwnedDir>();

interface LockOwner {
	pid?: number;
	host?: string;
	since?: string;
}

function isRunning(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch (err) {
		// EPERM: it runs, as another user.
		return errorCode(err) === "EPERM";
	}
}

function notWritable(dir: string, err: unknown): Error {
	return new Error(`The data directory ${dir} is not writable (${errorMessage(err)}): refusing to start, as no write could be stored. Fix its permissions or mount, or set DATA_DIR to a writable directory.`, { cause: err });
}

/** The lock file's content and when its owner last refreshed it, or undefined when there is none (any more). */
function readLock(file: string): { raw: string; owner: LockOwner; refreshedMs: number } | undefined {
	let raw: string;
	let refreshedMs: number;
	try {
		const fd = fs.openSync(file, "r");
		try {
			refreshedMs = fs.fstatSync(fd).mtimeMs;
			raw = fs.readFileSync(fd, "utf8");
		} finally {
			fs.closeSync(fd);
		}
	} catch (err) {
		if (errorCode(err) === "ENOENT") return undefined;
		throw new Error(`Cannot read the data directory's lock file ${file}: ${errorMessage(err)}`, { cause: err });
	}
	try {
		return { raw, owner: JSON.parse(raw) as LockOwner, refreshedMs };
	} catch {
		return { raw, owner: {}, refreshedMs };
	}
}

const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

/**
 * Writes the lock file for `dir` and returns its content, or refuses: the lock is created complete
 * in one step (a link to a file already written), so another process never reads a half-written
 * one. A lock whose process is gone (a crash, a kill -9) is taken over: on this host when its pid
 * no longer runs, from another host once it has not been refreshed for a while (see lockTiming).
 */
function claimDir(dir: string): string {
	const file = path.join(dir, LOCK_FILE);
	const here = os.hostname();
	const mine = `${JSON.stringify({ pid: process.pid, host: here, since: new Date().toISOString() })}\n`;
	const draft = `${file}.${process.pid}`;
	try {
		fs.writeFileSync(draft, mine, { mode: 0o644 });
	} catch (err) {
		throw notWritable(dir, err);
	}
	try {
		for (let attempt = 0; attempt < 5; attempt++) {
			try {
				fs.linkSync(draft, file);
				return mine;
			} catch (err) {
				if (errorCode(err) !== "EEXIST") throw notWritable(dir, err);
			}
			const held = readLock(file);
			if (!held) continue;
			const { pid, host, since } = held.owner;
			const owner = `pid ${pid ?? "?"}${host ? ` on ${host}` : ""}${since ? `, since ${since}` : ""}`;
			let gone: string;
			if (host && host !== here) {
				// Another host's pid says nothing here (every container's process may be pid 1): its refreshes do.
				const age = Date.now() - held.refreshedMs;
				if (age < lockTiming.abandonedAfterMs) {
					throw new Error(
						`The data directory ${dir} is in use by a shop process on another host (${owner}; this host is ${here}), which refreshed its lock ${seconds(Math.max(0, age))} ago: refusing to start, as two processes writing the same files corrupt them. Never share one DATA_DIR between hosts. If that process is gone, the lock is taken over once it is ${seconds(lockTiming.abandonedAfterMs)} old (start again then), or delete ${file}.`,
					);
				}
				gone = `${owner} (this host is ${here}), whose lock was last refreshed ${seconds(age)} ago, so that process is taken to be gone. If it still runs, stop one of the two now: two processes writing the same files corrupt them`;
			} else {
				// Our own pid here is a previous run's (a container's process is often pid 1 each time): this process holds no lock.
				if (typeof pid === "number" && pid !== process.pid && isRunning(pid)) {
					throw new Error(
						`The data directory ${dir} is in use by another shop process (${owner}): refusing to start, as two processes writing the same files corrupt them. Stop that process or give this one its own DATA_DIR; if pid ${pid} is not a shop, delete ${file}.`,
					);
				}
				gone = `pid ${pid ?? "?"}, which no longer runs`;
			}
			// Moved aside under our own name, then checked: when two processes take over the same
			// stale lock, the slower one must not remove the faster one's fresh lock.
			const aside = `${file}.stale-${process.pid}`;
			try {
				fs.renameSync(file, aside);
			} catch (err) {
				if (errorCode(err) === "ENOENT") continue;
				throw notWritable(dir, err);
			}
			if (fs.readFileSync(aside, "utf8") !== held.raw) {
				fs.renameSync(aside, file);
				continue;
			}
			fs.unlinkSync(aside);
			console.warn(`Took over ${file} from ${gone}.`);
		}
		throw new Error(`Could not lock the data directory ${dir}: its lock file ${file} kept changing.`);
	} finally {
		fs.rmSync(draft, { force: true });
	}
}

/** Tells other hosts this process still owns `dir`; says so once if the lock was removed or taken. */
function refreshLock(dir: string, owned: OwnedDir): void {
	const file = path.join(dir, LOCK_FILE);
	try {
		const held = readLock(file);
		if (held?.raw === owned.lock) {
			const now = new Date();
			fs.utimesSync(file, now, now);
			return;
		}
		if (owned.lost) return;
		owned.lost = true;
		const by = held ? `it now names pid ${held.owner.pid ?? "?"} on ${held.owner.host ?? "?"}` : "it was deleted";
		console.error(`The lock ${file} of this process's data directory is no longer its own (${by}): if another shop process writes to ${dir} as well, the files get corrupted. Stop one of them.`);
	} catch (err) {
		console.error(`Refreshing the lock ${file} failed: ${errorMessage(err)}`);
	}
}

function releaseDir(dir: string, owned: OwnedDir): void {
	clearInterval(owned.refresh);
	const file = path.join(dir, LOCK_FILE);
	try {
		// Only our own: another host's process may share our pid.
		if (readLock(file)?.raw === owned.lock) fs.unlinkSync(file);
	} catch {
		// Gone already, or the directory with it: nothing to release.
	}
}

let releasesOnExit = false;

/**
 * Claims a data directory for this process until every collection using it has closed (returns
 * the release): two processes appending to and compacting the same files corrupt them. The
 * collections of one process share the claim, so a test may start and stop brokers on one
 * directory, or run several shops on different ones. Writing the lock file also proves the
 * directory writable. A process that exits without closing its collections releases it too.
 */
export function lockDataDir(dir: string): () => void {
	const key = path.resolve(dir);
	let owned = ownedDirs.get(key);
	if (owned) owned.users++;
	else {
		const claimed: OwnedDir = { users: 1, lock: claimDir(key), refresh: undefined as unknown as NodeJS.Timeout, lost: false };
		claimed.refresh = setInterval(() => refreshLock(key, claimed), lockTiming.refreshMs).unref();
		ownedDirs.set(key, (owned = claimed));
	}
	if (!releasesOnExit) {
		releasesOnExit = true;
		process.on("exit", () => ownedDirs.forEach((o, d) => releaseDir(d, o)));
	}
	const mine = owned;
	let released = false;
	return () => {
		if (released) return;
		released = true;
		if (--mine.users > 0) return;
		if (ownedDirs.get(key) === mine) ownedDirs.delete(key);
		releaseDir(key, mine);
	};
}

/**
 * Before a load: the datafile can be appended to (its path is not a directory, the file not
 * read-only). Also finishes a rewrite a crash interrupted after the old file was replaced, as
 * NeDB's own load would (this check would otherwise create an empty file in its place).
 */
export function checkDatafile(file: string): void {
	try {
		if (!fs.existsSync(file) && fs.existsSync(`${file}~`)) fs.renameSync(`${file}~`, file);
		fs.closeSync(fs.openSync(file, "a", 0o644));
	} catch (err) {
		throw new Error(`Cannot open ${file} for writing (${errorMessage(err)}): refusing to start, as no write to it could be stored.`, { cause: err });
	}
}

// ---------------------------------------------------------------------------------------------
// Reading a datafile

export interface ParsedDatafile {
	data: Record<string, unknown>[];
	indexes: Record<string, { fieldName: unknown }>;
	/** Lines read, the dropped torn last one aside. */
	lines: number;
	/** Numbers (from 1) of the unreadable lines, which were dropped. */
	corruptLines: number[];
	/** Numbers of the lines where a failed write's bytes were followed by a complete line: that one was kept. */
	repairedLines: number[];
	/** The last line was cut off by a crash or a full disk, so never acknowledged: dropped. */
	tornTail: boolean;
}

/** `{"$$date": n}` back to a Date, in place: what NeDB's JSON reviver does, without a call per key. */
function reviveDates(v: any): any {
	if (v === null || typeof v !== "object") return v;
	if (Array.isArray(v)) {
		for (let i = 0; i < v.length; i++) v[i] = reviveDates(v[i]);
		return v;
	}
	if (v.$$date !== undefined) return new Date(v.$$date);
	for (const k in v) v[k] = reviveDates(v[k]);
	return v;
}

function readLine(line: string): Record<string, any> | undefined {
	try {
		const doc = JSON.parse(line);
		return doc !== null && typeof doc === "object" && !Array.isArray(doc) ? doc : undefined;
	} catch {
		return undefined;
	}
}

/**
 * A line that is a failed append's bytes followed by a complete line (appends did not restore the
 * line break after a failure before): the complete line. Tried from each `{"` (where an object may
 * start); taken only when the text from there to the line's end is one whole datafile line.
 */
function readAfterTornWrite(line: string): Record<string, any> | undefined {
	for (let at = line.indexOf('{"', 1); at > 0; at = line.indexOf('{"', at + 1)) {
		const doc = readLine(line.slice(at));
		if (doc && (doc._id !== undefined || doc.$$indexCreated !== undefined || doc.$$indexRemoved !== undefined)) return doc;
	}
	return undefined;
}

function listLines(numbers: number[]): string {
	const shown = numbers.slice(0, 20).join(", ");
	return numbers.length > 20 ? `${shown} and ${numbers.length - 20} more` : shown;
}

/**
 * NeDB's own reading of a datafile, line by line as NeDB does (last version of a document wins,
 * `$$deleted` removes it, index definitions collected, too many corrupt lines refused) but without
 * two promises and a JSON reviver per line, which made it the slowest part of a start. A torn last
 * line is not corruption: it is the write a crash or a full disk interrupted, never acknowledged.
 */
export function parseDatafile(raw: string, corruptAlertThreshold: number, file = "the data file"): ParsedDatafile {
	const byId = new Map<string, Record<string, unknown>>();
	const indexes: ParsedDatafile["indexes"] = {};
	const parsed: ParsedDatafile = { data: [], indexes, lines: 0, corruptLines: [], repairedLines: [], tornTail: false };
	const segments = raw.split("\n");
	// The text after the last line break: "" when the file ends cleanly.
	const last = segments.length - 1;
	for (let i = 0; i < segments.length; i++) {
		const line = segments[i];
		if (line === "") continue;
		let doc = readLine(line);
		if (doc === undefined) {
			doc = readAfterTornWrite(line);
			if (doc !== undefined) parsed.repairedLines.push(i + 1);
			else if (i === last) {
				parsed.tornTail = true;
				continue;
			} else {
				parsed.lines++;
				parsed.corruptLines.push(i + 1);
				continue;
			}
		}
		parsed.lines++;
		const read: Record<string, any> = reviveDates(doc);
		if (read._id) {
			if (read.$$deleted === true) byId.delete(read._id);
			else byId.set(read._id, read);
		} else if (read.$$indexCreated?.fieldName != null) indexes[read.$$indexCreated.fieldName] = read.$$indexCreated;
		else if (typeof read.$$indexRemoved === "string") delete indexes[read.$$indexRemoved];
	}
	const corrupt = parsed.corruptLines.length;
	if (parsed.lines > 0 && corrupt / parsed.lines > corruptAlertThreshold) {
		throw new Error(
			`${Math.floor((100 * corrupt) / parsed.lines)}% of the lines of ${file} are corrupt (lines ${listLines(parsed.corruptLines)}), more than the ${Math.floor(100 * corruptAlertThreshold)}% tolerated: refusing to start to prevent data loss.`,
		);
	}
	parsed.data = [...byId.values()];
	return parsed;
}

/** Cuts the file after its last line break: drops a torn last line. */
function cutTornTail(file: string): number {
	const fd = fs.openSync(file, "r+");
	try {
		const size = fs.fstatSync(fd).size;
		const chunk = Buffer.alloc(64 * 1024);
		for (let end = size; end > 0; ) {
			const start = Math.max(0, end - chunk.length);
			fs.readSync(fd, chunk, 0, end - start, start);
			const at = chunk.subarray(0, end - start).lastIndexOf(0x0a);
			if (at >= 0) {
				fs.ftruncateSync(fd, start + at + 1);
				return size - (start + at + 1);
			}
			end = start;
		}
		fs.ftruncateSync(fd, 0);
		return size;
	} finally {
		fs.closeSync(fd);
	}
}

/**
 * What a load found wrong, dealt with before anything appends to or rewrites the file: unreadable
 * lines are reported with their numbers and the file is copied as it was (the compaction that
 * follows the load removes them for good); a torn last line is cut off.
 */
function repairDamage(file: string, raw: string, parsed: ParsedDatafile): void {
	const { corruptLines, repairedLines } = parsed;
	if (corruptLines.length || repairedLines.length) {
		const copy = `${file}.corrupt-${new Date().toISOString().replace(/:/g, "-")}`;
		try {
			fs.copyFileSync(file, copy);
		} catch (err) {
			throw new Error(`${file} has unreadable lines, and keeping a copy of it before dropping them failed (${errorMessage(err)}): refusing to start to prevent data loss.`, { cause: err });
		}
		const what = [
			corruptLines.length ? `line(s) ${listLines(corruptLines)} could not be read and were dropped` : "",
			repairedLines.length ? `line(s) ${listLines(repairedLines)} held the bytes of a failed write before a complete line, which was kept` : "",
		];
		console.error(`${file}: ${what.filter(Boolean).join("; ")}. The file as it was is kept in ${copy}.`);
	}
	if (raw === "" || raw.endsWith("\n")) return;
	if (parsed.tornTail) {
		const bytes = cutTornTail(file);
		console.warn(`${file}: dropped its last line (${bytes} bytes), cut off by a crash or a full disk before it was complete, so never acknowledged.`);
	} else {
		// A complete last line without its line break: the next append must start a new line.
		fs.appendFileSync(file, "\n");
	}
}

export interface DatafileReport {
	/** Lines in the file (documents and their superseded versions, deletions, index definitions). */
	lines: number;
	/** Documents loaded. */
	live: number;
	/** The file must be rewritten now: it lost unreadable lines, or holds far more old lines than documents. */
	compact: boolean;
}

/**
 * Loads the datafile without NeDB's rewrite after loading; a damaged file is repaired first (see
 * repairDamage). Errors name the file.
 */
export async function loadDatafile(db: Datastore): Promise<DatafileReport> {
	const p = internalsOf(db).persistence;
	if (p.inMemoryOnly) {
		await db.loadDatabaseAsync();
		return { lines: 0, live: 0, compact: false };
	}
	let parsed: ParsedDatafile | undefined;
	p.treatRawStreamAsync = async (stream) => {
		const decoder = new StringDecoder("utf8");
		let raw = "";
		for await (const chunk of stream) raw += typeof chunk === "string" ? chunk : decoder.write(chunk);
		parsed = parseDatafile(raw, p.corruptAlertThreshold, p.filename);
		repairDamage(p.filename, raw, parsed);
		return parsed;
	};
	const rewrite = p.persistCachedDatabaseAsync;
	p.persistCachedDatabaseAsync = async () => undefined;
	try {
		await db.loadDatabaseAsync();
	} catch (err) {
		throw namingFile(p.filename, err);
	} finally {
		p.persistCachedDatabaseAsync = rewrite;
	}
	const { lines, data, corruptLines, repairedLines } = parsed!;
	const damaged = corruptLines.length + repairedLines.length > 0;
	return { lines, live: data.length, compact: damaged || lines > 2 * data.length + MIN_LINES_BEFORE_COMPACTION };
}

/** `err`, with the file's path in its message if it is not there yet. */
export function namingFile(file: string, err: unknown): Error {
	if (errorMessage(err).includes(file)) return err as Error;
	return new Error(`Loading ${file} failed: ${errorMessage(err)}`, { cause: err });
}

// ---------------------------------------------------------------------------------------------
// Writing a datafile

/** The whole datafile as NeDB's rewrite writes it: every live document, then the index definitions. */
export function rewrittenLines(db: Datastore): string[] {
	const lines = db.getAllData().map(serializeDocument);
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
	if (p.inMemoryOnly) return { compactIfGrown: async () => false, checkWritable: () => undefined, close: () => undefined };
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
			return err as Error;
		}
		lineOpen = false;
		appended += docs.length;
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
			console.error(`${collection}: reading ${p.filename} back after a failed write failed; memory may hold the failed write until a restart:`, err);
		}
	};

	p.persistNewStateAsync = async (docs) => {
		try {
			if (docs.length === 0) return;
			const err = append(docs);
			if (err === undefined) return;
			undoInMemory(docs as Doc[]);
			console.error(`${collection}: writing to ${p.filename} failed (${errorMessage(err)}); the change was not made.`);
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
	/** Stores the removal of the expired documents reads met, then removes them from memory; on failure they stay, hidden. */
	const sweepExpired = () => {
		sweepQueued = false;
		// Reads meet them again later (or after the next start).
		if (closed || paused()) return expiredIds.clear();
		const ttl = internals.ttlIndexes;
		const fields = Object.keys(ttl);
		const now = Date.now();
		const expired: Doc[] = [];
		for (const id of expiredIds) {
			const [doc] = internals.indexes._id.getMatching(id);
			if (doc && isExpired(doc, ttl, fields, now)) expired.push(doc);
		}
		expiredIds.clear();
		if (expired.length === 0) return;
		const err = append(expired.map((doc) => ({ $$deleted: true, _id: doc._id })));
		if (err) {
			console.error(`${collection}: storing the expiry of ${expired.length} document(s) in ${p.filename} failed (${errorMessage(err)}); they stay hidden and are removed once the file can be written.`);
			return;
		}
		for (const doc of expired) nedb._removeFromIndexes.call(db, doc);
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
			internals.executor.pushAsync(async () => sweepExpired()).catch((err) => console.error(`${collection}: removing expired documents failed:`, err));
		}
		return live;
	};

	// A rewrite writes a new file and renames it over the old one: the next append opens the new one.
	p.persistCachedDatabaseAsync = async () => {
		closeFile();
		await storage.crashSafeWriteFileLinesAsync(p.filename, rewrittenLines(db), p.modes);
		db.emit("compaction.done");
		appended = 0;
		lineOpen = false;
	};
	return {
		async compactIfGrown() {
			if (appended < Math.max(MIN_LINES_BEFORE_COMPACTION, db.getAllData().length)) return false;
			await db.compactDatafileAsync();
			return true;
		},
		checkWritable() {
			if (paused()) {
				throw new StoreUnavailableError(`The ${collection} store cannot take writes right now: nothing was changed`, { collection });
			}
		},
		close() {
			closed = true;
			closeFile();
		},
	};
}
