/**
 * How our NeDB datafiles are written and kept in shape.
 * - NeDB appends every write with fs.appendFile: open, write, close, each a round trip through the
 *   thread pool while the datastore's queue waits. Here the datafile stays open and each write is
 *   one synchronous write(2) of a few hundred bytes. Durability is unchanged: NeDB never fsyncs
 *   appends, and a write that returned is in the kernel's page cache, which outlives the process.
 * - A write that fails (a full disk) leaves the file and the memory as they were before it: the
 *   bytes it wrote are cut off, the collection is read back from the file, and writes answer 503
 *   for a second. Otherwise the next append would continue the torn line, and both would be lost.
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

interface DatastoreInternals {
	persistence: Persistence;
	_resetIndexes(docs?: unknown[]): void;
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
/** Data directories this process owns, with how many open collections use each. */
const ownedDirs = new Map<string, number>();

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

/** The lock file's content, or undefined when there is none (any more). */
function readLock(file: string): { raw: string; owner: LockOwner } | undefined {
	let raw: string;
	try {
		raw = fs.readFileSync(file, "utf8");
	} catch (err) {
		if (errorCode(err) === "ENOENT") return undefined;
		throw new Error(`Cannot read the data directory's lock file ${file}: ${errorMessage(err)}`, { cause: err });
	}
	try {
		return { raw, owner: JSON.parse(raw) as LockOwner };
	} catch {
		return { raw, owner: {} };
	}
}

/**
 * Writes the lock file for `dir`, or refuses: the lock is created complete in one step (a link
 * to a file already written), so another process never reads a half-written one. A lock whose
 * process is gone (a crash, a kill -9) is taken over; only processes on this machine can be seen.
 */
function claimDir(dir: string): void {
	const file = path.join(dir, LOCK_FILE);
	const mine = `${JSON.stringify({ pid: process.pid, host: os.hostname(), since: new Date().toISOString() })}\n`;
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
				return;
			} catch (err) {
				if (errorCode(err) !== "EEXIST") throw notWritable(dir, err);
			}
			const held = readLock(file);
			if (!held) continue;
			const { pid, host, since } = held.owner;
			// Our own pid here is a previous run's (a container's process is often pid 1 each time): this process holds no lock.
			if (typeof pid === "number" && pid !== process.pid && isRunning(pid)) {
				throw new Error(
					`The data directory ${dir} is in use by another shop process (pid ${pid}${host ? ` on ${host}` : ""}${since ? `, since ${since}` : ""}): refusing to start, as two processes writing the same files corrupt them. Stop that process or give this one its own DATA_DIR; if pid ${pid} is not a shop, delete ${file}.`,
				);
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
			console.warn(`Took over ${file} from pid ${pid ?? "?"}${host && host !== os.hostname() ? ` on ${host}` : ""}, which no longer runs.`);
		}
		throw new Error(`Could not lock the data directory ${dir}: its lock file ${file} kept changing.`);
	} finally {
		fs.rmSync(draft, { force: true });
	}
}

function releaseDir(dir: string): void {
	const file = path.join(dir, LOCK_FILE);
	try {
		if (readLock(file)?.owner.pid === process.pid) fs.unlinkSync(file);
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
	const users = ownedDirs.get(key) ?? 0;
	if (users === 0) claimDir(key);
	ownedDirs.set(key, users + 1);
	if (!releasesOnExit) {
		releasesOnExit = true;
		process.on("exit", () => ownedDirs.forEach((_, owned) => releaseDir(owned)));
	}
	let released = false;
	return () => {
		if (released) return;
		released = true;
		const left = (ownedDirs.get(key) ?? 1) - 1;
		if (left > 0) ownedDirs.set(key, left);
		else {
			ownedDirs.delete(key);
			releaseDir(key);
		}
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
	const p = internals.persistence;
	if (p.inMemoryOnly) return { compactIfGrown: async () => false, checkWritable: () => undefined, close: () => undefined };
	let fd: number | null = null;
	let appended = supersededLines;
	/** A failed write's bytes could not be cut off: the next append starts a new line. */
	let lineOpen = false;
	let pausedUntil = 0;
	const close = () => {
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
	/**
	 * NeDB changed its memory before asking for the append: read it back from the file, which
	 * holds every write up to the failed one, so the failed write is undone there too.
	 */
	const undoInMemory = () => {
		try {
			internals._resetIndexes(parseDatafile(fs.readFileSync(p.filename, "utf8"), 1, p.filename).data);
		} catch (err) {
			console.error(`${collection}: reading ${p.filename} back after a failed write failed; memory may hold the failed write until a restart:`, err);
		}
	};

	p.persistNewStateAsync = async (docs) => {
		if (docs.length === 0) return;
		let lines = lineOpen ? "\n" : "";
		for (const doc of docs) lines += serializeDocument(doc) + "\n";
		const buf = Buffer.from(lines, "utf8");
		let written = 0;
		try {
			fd ??= fs.openSync(p.filename, "a", 0o644);
			while (written < buf.length) written += fs.writeSync(fd, buf, written);
		} catch (err) {
			lineOpen = !cutBack(written);
			undoInMemory();
			pausedUntil = Date.now() + WRITE_PAUSE_AFTER_FAILURE_MS;
			console.error(`${collection}: writing to ${p.filename} failed (${errorMessage(err)}); the change was not made.`);
			throw new StoreUnavailableError(`The ${collection} store cannot take writes right now: nothing was changed`, { collection, reason: errorCode(err) ?? errorMessage(err) });
		}
		lineOpen = false;
		appended += docs.length;
	};
	// A rewrite writes a new file and renames it over the old one: the next append opens the new one.
	p.persistCachedDatabaseAsync = async () => {
		close();
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
			if (pausedUntil !== 0 && Date.now() < pausedUntil) {
				throw new StoreUnavailableError(`The ${collection} store cannot take writes right now: nothing was changed`, { collection });
			}
		},
		close,
	};
}
