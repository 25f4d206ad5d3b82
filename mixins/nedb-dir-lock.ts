/**
 * One process at a time owns a data directory: two writing the same NeDB files corrupt them (see
 * lockDataDir). The lock file also proves at start that the directory is writable.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { errorCode, errorMessage } from "./nedb-internals";
import { opsLog } from "../lib/ops-log";

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
	/** The locked directory's device and inode: a copy of the directory (a backup) carries the lock of another. */
	dir?: string;
}

/** The directory's identity on this host, which a copy of it does not share. */
function dirIdentity(dir: string): string {
	const st = fs.statSync(dir);
	return `${st.dev}:${st.ino}`;
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
	const mine = `${JSON.stringify({ pid: process.pid, host: here, since: new Date().toISOString(), dir: dirIdentity(dir) })}\n`;
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
			} else if (held.owner.dir && held.owner.dir !== dirIdentity(dir)) {
				// Copied with the directory (a backup of a running shop, restored or started beside it): that
				// process locks another directory, whatever it is doing.
				gone = `${owner}, which locked the directory this one was copied from`;
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
			opsLog.warn(`Took over ${file} from ${gone}.`);
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
		opsLog.error(`The lock ${file} of this process's data directory is no longer its own (${by}): if another shop process writes to ${dir} as well, the files get corrupted. Stop one of them.`);
	} catch (err) {
		opsLog.error(`Refreshing the lock ${file} failed: ${errorMessage(err)}`);
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
