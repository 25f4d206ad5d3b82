/**
 * NeDB appends every write with fs.appendFile: open, write, close, each a round trip through the
 * thread pool while the datastore's queue waits. Here the datafile stays open and each write is one
 * synchronous write(2) of a few hundred bytes. Durability is unchanged: NeDB never fsyncs appends,
 * and a write that returned is in the kernel's page cache, which outlives the process.
 */
import fs from "node:fs";
import type Datastore from "@seald-io/nedb";
const model: { serialize(doc: unknown): string } = require("@seald-io/nedb/lib/model");

interface Persistence {
	filename: string;
	inMemoryOnly: boolean;
	persistNewStateAsync(docs: unknown[]): Promise<void>;
	persistCachedDatabaseAsync(): Promise<void>;
}

/** Makes `db` append through one open descriptor; returns the function that closes it. */
export function appendThroughOpenFile(db: Datastore): () => void {
	const p = (db as unknown as { persistence: Persistence }).persistence;
	if (p.inMemoryOnly) return () => undefined;
	let fd: number | null = null;
	const close = () => {
		if (fd !== null) fs.closeSync(fd);
		fd = null;
	};
	p.persistNewStateAsync = async (docs) => {
		let lines = "";
		for (const doc of docs) lines += model.serialize(doc) + "\n";
		if (!lines) return;
		fd ??= fs.openSync(p.filename, "a", 0o644);
		const buf = Buffer.from(lines, "utf8");
		for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off);
	};
	// Compaction writes a new file and renames it over the old one: the next append opens the new one.
	const compact = p.persistCachedDatabaseAsync.bind(p);
	p.persistCachedDatabaseAsync = async () => {
		close();
		await compact();
	};
	return close;
}
