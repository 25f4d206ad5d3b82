/**
 * How our NeDB datafiles are written and kept in shape.
 * - NeDB appends every write with fs.appendFile: open, write, close, each a round trip through the
 *   thread pool while the datastore's queue waits. Here the datafile stays open and each write is
 *   one synchronous write(2) of a few hundred bytes. Durability is unchanged: NeDB never fsyncs
 *   appends, and a write that returned is in the kernel's page cache, which outlives the process.
 * - Lines are serialised without NeDB's per-key replacer (same bytes, see serializeDocument), in
 *   appends and in rewrites (where NeDB also awaited a hook once per document).
 * - NeDB rewrites the whole file after loading it, and its auto-compaction rewrites it on a timer
 *   whether it grew or not: ~2 s and ~60 MB of garbage each time for a 10,000-product catalog. Here
 *   a file is rewritten only once the lines appended since the last rewrite outnumber the live
 *   documents, or when the last line was torn by a crash (so the next append starts a clean line).
 */
import fs from "node:fs";
import { StringDecoder } from "node:string_decoder";
import type Datastore from "@seald-io/nedb";

const storage: { crashSafeWriteFileLinesAsync(file: string, lines: string[], modes: unknown): Promise<void> } = require("@seald-io/nedb/lib/storage");

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

/** Appended lines that always justify a rewrite's cost, whatever the live size. */
const MIN_LINES_BEFORE_COMPACTION = 1000;

export interface NedbFile {
	/** Rewrites the file if it has grown past its live size (see above). */
	compactIfGrown(): Promise<boolean>;
	close(): void;
}

const persistenceOf = (db: Datastore) => (db as unknown as { persistence: Persistence }).persistence;

/** True when the file is missing, empty, or ends with a complete line. */
function endsCleanly(file: string): boolean {
	let fd: number;
	try {
		fd = fs.openSync(file, "r");
	} catch {
		return true;
	}
	try {
		const size = fs.fstatSync(fd).size;
		if (size === 0) return true;
		const last = Buffer.alloc(1);
		fs.readSync(fd, last, 0, 1, size - 1);
		return last[0] === 0x0a;
	} finally {
		fs.closeSync(fd);
	}
}

interface ParsedDatafile {
	data: Record<string, unknown>[];
	indexes: Record<string, { fieldName: unknown }>;
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

/**
 * NeDB's own reading of a datafile, line by line as NeDB does (last version of a document wins,
 * `$$deleted` removes it, index definitions collected, too many corrupt lines refused) but without
 * two promises and a JSON reviver per line, which made it the slowest part of a start.
 */
export function parseDatafile(raw: string, corruptAlertThreshold: number): ParsedDatafile {
	const byId = new Map<string, Record<string, unknown>>();
	const indexes: ParsedDatafile["indexes"] = {};
	let lines = 0;
	let corrupt = 0;
	for (const line of raw.split("\n")) {
		if (line === "") continue;
		lines++;
		try {
			const doc = reviveDates(JSON.parse(line));
			if (doc._id) {
				if (doc.$$deleted === true) byId.delete(doc._id);
				else byId.set(doc._id, doc);
			} else if (doc.$$indexCreated?.fieldName != null) indexes[doc.$$indexCreated.fieldName] = doc.$$indexCreated;
			else if (typeof doc.$$indexRemoved === "string") delete indexes[doc.$$indexRemoved];
		} catch {
			corrupt++;
		}
	}
	if (lines > 0 && corrupt / lines > corruptAlertThreshold) {
		throw new Error(`${Math.floor((100 * corrupt) / lines)}% of the data file is corrupt, more than the ${Math.floor(100 * corruptAlertThreshold)}% tolerated: refusing to start to prevent data loss.`);
	}
	return { data: [...byId.values()], indexes };
}

/** Loads the datafile, skipping NeDB's rewrite after loading unless the last line was torn. */
export async function loadDatafile(db: Datastore): Promise<void> {
	const p = persistenceOf(db);
	if (p.inMemoryOnly) return db.loadDatabaseAsync();
	p.treatRawStreamAsync = async (stream) => {
		const decoder = new StringDecoder("utf8");
		let raw = "";
		for await (const chunk of stream) raw += typeof chunk === "string" ? chunk : decoder.write(chunk);
		return parseDatafile(raw, p.corruptAlertThreshold);
	};
	if (!endsCleanly(p.filename)) return db.loadDatabaseAsync();
	const rewrite = p.persistCachedDatabaseAsync;
	p.persistCachedDatabaseAsync = async () => undefined;
	try {
		await db.loadDatabaseAsync();
	} finally {
		p.persistCachedDatabaseAsync = rewrite;
	}
}

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

/** Makes `db` append through one open descriptor and count what it appends. */
export function openDatafile(db: Datastore): NedbFile {
	const p = persistenceOf(db);
	if (p.inMemoryOnly) return { compactIfGrown: async () => false, close: () => undefined };
	let fd: number | null = null;
	let appended = 0;
	const close = () => {
		if (fd !== null) fs.closeSync(fd);
		fd = null;
	};
	p.persistNewStateAsync = async (docs) => {
		let lines = "";
		for (const doc of docs) lines += serializeDocument(doc) + "\n";
		if (!lines) return;
		fd ??= fs.openSync(p.filename, "a", 0o644);
		const buf = Buffer.from(lines, "utf8");
		for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off);
		appended += docs.length;
	};
	// A rewrite writes a new file and renames it over the old one: the next append opens the new one.
	p.persistCachedDatabaseAsync = async () => {
		close();
		await storage.crashSafeWriteFileLinesAsync(p.filename, rewrittenLines(db), p.modes);
		db.emit("compaction.done");
		appended = 0;
	};
	return {
		async compactIfGrown() {
			if (appended < Math.max(MIN_LINES_BEFORE_COMPACTION, db.getAllData().length)) return false;
			await db.compactDatafileAsync();
			return true;
		},
		close,
	};
}
