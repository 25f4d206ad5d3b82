/**
 * Reading a NeDB datafile at start: parsing it without NeDB's per-key reviver, dropping a torn last
 * line, keeping a copy of a file with unreadable lines before it is rewritten, and naming the file
 * in every error.
 */
import fs from "node:fs";
import { StringDecoder } from "node:string_decoder";
import type Datastore from "@seald-io/nedb";
import { MIN_LINES_BEFORE_COMPACTION, errorMessage, internalsOf } from "./nedb-internals";
import { opsLog } from "../lib/ops-log";

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
		opsLog.error(`${file}: ${what.filter(Boolean).join("; ")}. The file as it was is kept in ${copy}.`);
	}
	if (raw === "" || raw.endsWith("\n")) return;
	if (parsed.tornTail) {
		const bytes = cutTornTail(file);
		opsLog.warn(`${file}: dropped its last line (${bytes} bytes), cut off by a crash or a full disk before it was complete, so never acknowledged.`);
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

