/**
 * Which stores of this process cannot take writes now, for the readiness probe (see
 * mixins/health-probe.middleware.ts): an embedded datafile whose last write the disk refused (full,
 * read-only, failing), or a MongoDB connection that is down. Kept apart from the stores themselves
 * so that a gateway-only node's probe loads neither NeDB nor mongoose.
 */
import fs from "node:fs";

interface FailingFile {
	collection: string;
	reason: string;
	since: number;
}

/** Datafiles whose last append failed, by path. */
const failing = new Map<string, FailingFile>();
/**
 * How long writes answer 503 after one failed, instead of each failing and reloading the file
 * (nedb-datafile.ts); the probe tries the disk again after as long.
 */
export const WRITE_PAUSE_AFTER_FAILURE_MS = 1000;
/** The probe's size: a few blocks, as a real append would need. */
const PROBE = Buffer.alloc(4096, 0x20);

/** The append to `file` failed: the collection is reported until a write there succeeds. */
export function markWriteFailed(file: string, collection: string, reason: string, now = Date.now()): void {
	if (!failing.has(file)) failing.set(file, { collection, reason, since: now });
}

/** An append to `file` succeeded. */
export function markWritten(file: string): void {
	if (failing.size > 0) failing.delete(file);
}

/** Whether the disk under `file` takes a write now: a probe file next to it, written and removed. */
function diskTakesWrites(file: string): boolean {
	const probe = `${file}.write-check`;
	try {
		fs.writeFileSync(probe, PROBE);
		return true;
	} catch {
		return false;
	} finally {
		fs.rmSync(probe, { force: true });
	}
}

/** The process's MongoDB connection, when a collection uses one: whether it is up. */
let mongoConnected: (() => boolean) | undefined;
export function watchMongoConnection(connected: () => boolean): void {
	mongoConnected = connected;
}

/**
 * What cannot be written now, e.g. ["store: orders (ENOSPC)"]. A datafile that failed is tried
 * again here (a probe write next to it), since a node taken out of service may get no write that
 * would show the disk is back.
 */
export function storeOutages(now = Date.now()): string[] {
	for (const [file, f] of failing) if (now - f.since >= WRITE_PAUSE_AFTER_FAILURE_MS && diskTakesWrites(file)) failing.delete(file);
	const reasons = [...failing.values()].map((f) => `store: ${f.collection} (${f.reason})`);
	if (mongoConnected && !mongoConnected()) reasons.push("store: mongodb");
	return reasons;
}
