/**
 * Passwords as NIST SP 800-63B and OWASP ASVS 5 ask: a length range, no composition rules, and a
 * refusal of the most common ones. Hashing is bcrypt over an HMAC pre-hash, so every character
 * counts (bcrypt alone silently ignores everything after 72 bytes).
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BcryptBusyError, bcryptPool, type BcryptPool } from "./bcrypt-pool";
import { BusyError } from "./errors";

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 128;

/** Production cost; tests may go down to MIN_BCRYPT_COST to stay fast, never below. */
export const BCRYPT_COST = 12;
export const MIN_BCRYPT_COST = 10;

/** Domain separation for the pre-hash; a key of our own also defeats "shucking" with leaked plain SHA-256 lists. */
const PREHASH_KEY = "moleculer-shop/password/v1";

let commonPasswords: Set<string> | undefined;

/** The 10,000 most common passwords (SecLists, MIT), read once, compared case-insensitively. */
export function commonPasswordList(): Set<string> {
	if (!commonPasswords) {
		const text = fs.readFileSync(path.join(__dirname, "data", "common-passwords.txt"), "utf8");
		commonPasswords = new Set(text.split(/\r?\n/).map((l) => l.trim().toLowerCase()).filter(Boolean));
	}
	return commonPasswords;
}

/** NFKC, as 800-63B recommends, so the same password typed on two keyboards is the same password. */
export function normalizePassword(password: string): string {
	return password.normalize("NFKC");
}

/** Length in characters (code points), not UTF-16 units or bytes. */
export function passwordLength(password: string): number {
	return [...normalizePassword(password)].length;
}

export function isCommonPassword(password: string): boolean {
	return commonPasswordList().has(normalizePassword(password).trim().toLowerCase());
}

/**
 * What shows nothing when typed: white space, format characters (zero-width space and joiner,
 * direction marks), combining marks alone, and the blank letters (Hangul fillers, braille blank).
 */
const INVISIBLE = /[\p{Z}\s\p{Cf}\p{M}\u115F\u1160\u3164\uFFA0\u2800]/gu;

/** Why a new password is refused, or null when it is acceptable. */
export function passwordProblem(password: string, context: { email?: string } = {}): string | null {
	const length = passwordLength(password);
	if (length < MIN_PASSWORD_LENGTH) return `Password must be at least ${MIN_PASSWORD_LENGTH} characters`;
	if (length > MAX_PASSWORD_LENGTH) return `Password must be at most ${MAX_PASSWORD_LENGTH} characters`;
	// Eight spaces pass the length check; control characters (NUL, tabs, line breaks) cannot be typed
	// reliably into a login form, so a password holding them would lock its owner out.
	if (!normalizePassword(password).replace(INVISIBLE, "")) return "Password must not be only spaces or invisible characters";
	if (/\p{Cc}/u.test(password)) return "Password must not contain control characters";
	if (isCommonPassword(password)) return "This password is too common; choose another";
	const lowered = normalizePassword(password).trim().toLowerCase();
	const email = context.email?.trim().toLowerCase();
	if (email && (lowered === email || lowered === email.split("@")[0])) return "Password must not be your email address";
	return null;
}

/**
 * What bcrypt actually hashes: base64 of HMAC-SHA256 of the password (44 ASCII bytes, no NUL),
 * so two passwords that differ only after byte 72 never share a hash.
 */
export function prehashPassword(password: string): string {
	return crypto.createHmac("sha256", PREHASH_KEY).update(normalizePassword(password), "utf8").digest("base64");
}

export function bcryptCost(isTest: boolean): number {
	return isTest ? MIN_BCRYPT_COST : BCRYPT_COST;
}

/**
 * bcrypt runs on worker threads (lib/bcrypt-pool.ts), never on the main thread: there, each login
 * held up every other request for ~0.25 s. At most two at once, and one fewer than the machine's
 * cores so the main thread keeps one: a burst of logins queues (slower sign-ins) rather than
 * taking the CPU from checkouts.
 */
export const BCRYPT_CONCURRENCY = 2;
const BCRYPT_WORKERS = Math.max(1, Math.min(BCRYPT_CONCURRENCY, os.availableParallelism() - 1));
/**
 * The longest a hash or a compare waits for a worker before it is refused (503 BUSY, nothing done). A
 * password change does two, each waiting at most this and running 0.3-0.7 s on a busy 2-core machine:
 * inside the request timeout (REQUEST_TIMEOUT, 10 s: 4 s each), so its caller learns what happened
 * instead of timing out on a change that then went through. On such a machine about a dozen sign-ins
 * arriving at once are served.
 */
export function bcryptMaxWaitMs(requestTimeoutMs: number): number {
	return Math.max(0, Math.min(4000, Math.floor((requestTimeoutMs - 2000) / 2)));
}
let pool: BcryptPool | null = null;
/** Set by the service holding the workers, from its broker's request timeout (holdBcryptWorkers). */
let maxWaitMs = bcryptMaxWaitMs(10_000);
const bcryptWorkers = () => (pool ??= bcryptPool({ size: BCRYPT_WORKERS, idleMs: 30_000, maxWaitMs }));

/** A refusal for a full queue, as the client sees it: 503 BUSY, try again shortly. */
function busyAsBusyError(err: unknown): never {
	if (err instanceof BcryptBusyError) throw new BusyError("Too many sign-ins and password changes at once: try again in a few seconds");
	throw err;
}
let holders = 0;

/**
 * A service that checks passwords holds the workers from its start to its stop; when the last one
 * lets go they are stopped, so none outlive the services (a stopping node, a test's broker). A
 * later hash starts them again. The stop does not wait for the threads to end: nothing of a node's
 * shutdown should hang on them. `requestTimeoutMs`: the broker's, which a hash's wait stays inside.
 */
export function holdBcryptWorkers(requestTimeoutMs?: number): () => void {
	// 0: no request timeout, nothing to stay inside.
	if (requestTimeoutMs) maxWaitMs = bcryptMaxWaitMs(requestTimeoutMs);
	holders++;
	let released = false;
	return () => {
		if (released) return;
		released = true;
		if (--holders > 0 || !pool) return;
		const closing = pool;
		pool = null;
		closing.close().catch(() => undefined);
	};
}

/** Worker threads running bcrypt now. */
export const bcryptWorkersRunning = (): number => pool?.workers ?? 0;

export function hashPassword(password: string, cost: number): Promise<string> {
	return bcryptWorkers().hash(prehashPassword(password), Math.max(cost, MIN_BCRYPT_COST)).catch(busyAsBusyError);
}

export function verifyPassword(password: string, hash: string): Promise<boolean> {
	return bcryptWorkers().compare(prehashPassword(password), hash).catch(busyAsBusyError);
}

/**
 * A well-formed bcrypt hash of the given cost that no password matches (random salt and digest):
 * checking a password against it costs as much as against a real one, without hashing anything to
 * make it (a real hash at cost 12 is ~0.25 s of start-up).
 */
export function unmatchableHash(cost: number): string {
	const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	const chars = [...crypto.randomBytes(53)].map((b) => alphabet[b & 63]).join("");
	return `$2b$${String(Math.max(cost, MIN_BCRYPT_COST)).padStart(2, "0")}$${chars}`;
}

/** A stored hash made with a lower cost than today's is upgraded at the next successful login. */
export function needsRehash(hash: string, cost: number): boolean {
	const rounds = /^\$2[aby]\$(\d{2})\$/.exec(hash);
	return !rounds || Number(rounds[1]) < cost;
}

/** A readable random password (for a bootstrapped admin): 24 base64url characters, 144 bits. */
export function randomPassword(): string {
	return crypto.randomBytes(18).toString("base64url");
}
