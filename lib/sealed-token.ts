/**
 * One-time tokens (email verification, password reset) travel to notifications in durable events,
 * which are kept in the users outbox for days and cross the transporter. They go sealed
 * (AES-256-GCM under a key derived from the JWT secret, which every node shares), so the outbox
 * and the wire hold nothing that verifies an email or resets a password; notifications opens them
 * to build the link. Only users keeps a trace of the raw token: its hash.
 */
import crypto from "node:crypto";
import { jwtSecret } from "./jwt";

const PREFIX = "sealed.v1.";
const IV_BYTES = 12;
const TAG_BYTES = 16;
const keys = new Map<string, Buffer>();

function keyFor(secret: string): Buffer {
	let key = keys.get(secret);
	if (!key) keys.set(secret, (key = Buffer.from(crypto.hkdfSync("sha256", secret, "", "shop one-time token seal v1", 32))));
	return key;
}

export function sealToken(token: string, secret = jwtSecret()): string {
	const iv = crypto.randomBytes(IV_BYTES);
	const cipher = crypto.createCipheriv("aes-256-gcm", keyFor(secret), iv);
	const body = Buffer.concat([cipher.update(token, "utf8"), cipher.final()]);
	return PREFIX + Buffer.concat([iv, body, cipher.getAuthTag()]).toString("base64url");
}

/**
 * The raw token; a value that is not sealed as it was before tokens were sealed; null when it was
 * sealed under another secret or altered.
 */
export function openToken(value: unknown, secret = jwtSecret()): string | null {
	if (typeof value !== "string") return null;
	if (!value.startsWith(PREFIX)) return value;
	const raw = Buffer.from(value.slice(PREFIX.length), "base64url");
	if (raw.length <= IV_BYTES + TAG_BYTES) return null;
	try {
		const decipher = crypto.createDecipheriv("aes-256-gcm", keyFor(secret), raw.subarray(0, IV_BYTES));
		decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
		return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString("utf8");
	} catch {
		return null;
	}
}
