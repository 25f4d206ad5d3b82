/** Access tokens: HS256 only (pinned on verify), with iss/aud/exp always checked. */
import jwt from "jsonwebtoken";
import crypto, { type KeyObject } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { MIN_SECRET_LENGTH, readConfig } from "./config";
import { opsLog } from "./ops-log";

export const TOKEN_ISSUER = "moleculer-shop";
export const TOKEN_AUDIENCE = "moleculer-shop-api";

export interface AccessClaims {
	sub: string;
	role: "customer" | "admin";
	sid: string;
}

let cachedSecret: string | undefined;

/**
 * Writes the secret so that the file holds either all of it or nothing new: a temp file, synced,
 * renamed over. Written in place, a full disk or a crash could leave a few characters: a weak key.
 */
function storeSecret(file: string, secret: string): void {
	const draft = `${file}.${process.pid}.tmp`;
	try {
		const fd = fs.openSync(draft, "w", 0o600);
		try {
			const buf = Buffer.from(secret, "utf8");
			for (let at = 0; at < buf.length; ) at += fs.writeSync(fd, buf, at);
			fs.fsyncSync(fd);
		} finally {
			fs.closeSync(fd);
		}
		fs.renameSync(draft, file);
	} catch (err) {
		fs.rmSync(draft, { force: true });
		throw new Error(`Cannot store the generated JWT signing secret in ${file} (${(err as Error).message}): set JWT_SECRET, or make DATA_DIR writable.`, { cause: err });
	}
	// Makes the rename itself durable; some systems cannot sync a directory, and the file is whole either way.
	try {
		const dir = fs.openSync(path.dirname(file), "r");
		try {
			fs.fsyncSync(dir);
		} finally {
			fs.closeSync(dir);
		}
	} catch {
		/* best-effort */
	}
}

/**
 * JWT_SECRET when set. Otherwise, in the embedded default, a random secret kept in DATA_DIR so
 * restarts keep sessions valid (random per process under tests). Printed once as a warning.
 */
export function jwtSecret(): string {
	if (cachedSecret) return cachedSecret;
	const cfg = readConfig();
	if (cfg.jwtSecret) return (cachedSecret = cfg.jwtSecret);
	if (cfg.isTest) return (cachedSecret = crypto.randomBytes(32).toString("hex"));
	const file = path.join(cfg.dataDir, "jwt-secret");
	let stored: string | undefined;
	try {
		stored = fs.readFileSync(file, "utf8").trim();
	} catch {
		/* not written yet */
	}
	if (stored !== undefined && stored.length >= MIN_SECRET_LENGTH) return (cachedSecret = stored);
	// Missing, or cut short (a write an older version did in place, on a full disk): a new one. A
	// short secret is a weak key, and an empty one would let anyone sign.
	const secret = crypto.randomBytes(32).toString("hex");
	fs.mkdirSync(cfg.dataDir, { recursive: true });
	storeSecret(file, secret);
	if (stored === undefined) {
		opsLog.warn(`JWT_SECRET is not set: generated a random signing secret in ${file}. Set JWT_SECRET in production and on every node of a cluster.`);
	} else {
		opsLog.warn(
			`JWT_SECRET is not set, and ${file} held ${stored.length} characters, too few for a signing secret (at least ${MIN_SECRET_LENGTH}): generated a new one there. Sessions and tokens signed before are no longer valid: users sign in again. Set JWT_SECRET in production and on every node of a cluster.`,
		);
	}
	return (cachedSecret = secret);
}

// jsonwebtoken first tries to parse a string secret as a public key (building an exception each
// time); a ready secret KeyObject skips that: ~0.4 ms → ~10 µs on every authenticated request.
const keyObjects = new Map<string, KeyObject>();
function secretKey(secret: string): KeyObject {
	let key = keyObjects.get(secret);
	if (!key) keyObjects.set(secret, (key = crypto.createSecretKey(Buffer.from(secret, "utf8"))));
	return key;
}

/**
 * A token lasting at least `ttlSeconds` from now, as the `expiresIn` answered with it says. JWT times
 * are whole seconds: jsonwebtoken's own `expiresIn` counts from `iat`, the second rounded down, so a
 * token lasted up to a second less (a client refreshing on `expiresIn` met 401s; with JWT_TTL=1 a token
 * could expire on arrival). Here `exp` is counted from the second rounded up.
 */
export function signAccessToken(claims: AccessClaims, ttlSeconds = readConfig().jwtTtlSeconds, secret = jwtSecret()): string {
	return jwt.sign({ role: claims.role, sid: claims.sid, exp: Math.ceil(Date.now() / 1000) + ttlSeconds }, secret, {
		algorithm: "HS256",
		subject: claims.sub,
		issuer: TOKEN_ISSUER,
		audience: TOKEN_AUDIENCE,
	});
}

/**
 * Tokens already verified, with their claims: every signed-in request presents its token again, and
 * its HMAC and claim checks cost ~3% of a checkout. Only tokens that passed are kept (a made-up one
 * costs its full check every time, and fills nothing), under the secret that passed them; each hit's
 * expiry is checked again. The oldest go first past the bound.
 */
const verified = new Map<string, { secret: string; claims: AccessClaims & { exp: number } }>();
export const MAX_VERIFIED_TOKENS = 10_000;

/** Throws on anything but a valid, unexpired HS256 token of ours. */
export function verifyAccessToken(token: string, secret = jwtSecret()): AccessClaims & { exp: number } {
	const hit = verified.get(token);
	if (hit && hit.secret === secret) {
		// jsonwebtoken's rule: expired from the second of `exp` on.
		if (Math.floor(Date.now() / 1000) < hit.claims.exp) return { ...hit.claims };
		verified.delete(token);
		throw new jwt.TokenExpiredError("jwt expired", new Date(hit.claims.exp * 1000));
	}
	const claims = verifyUncached(token, secret);
	if (verified.size >= MAX_VERIFIED_TOKENS) verified.delete(verified.keys().next().value!);
	verified.set(token, { secret, claims });
	return { ...claims };
}

/**
 * A token of ours that may have expired: signature, issuer, audience and claims checked, `exp` not.
 * Only for ending the token's own session (signing out): an expired token still proves it was given
 * for that session, and its refresh token should not outlive the sign-out.
 */
export function verifyExpiredAccessToken(token: string, secret = jwtSecret()): AccessClaims & { exp: number } {
	return verifyUncached(token, secret, true);
}

function verifyUncached(token: string, secret: string, ignoreExpiration = false): AccessClaims & { exp: number } {
	const payload = jwt.verify(token, secretKey(secret), {
		algorithms: ["HS256"],
		issuer: TOKEN_ISSUER,
		audience: TOKEN_AUDIENCE,
		ignoreExpiration,
	}) as jwt.JwtPayload;
	// Every token we sign expires; one without `exp` was not signed by this code, whoever holds the key.
	if (typeof payload.exp !== "number" || typeof payload.sub !== "string" || typeof payload.sid !== "string" || (payload.role !== "customer" && payload.role !== "admin")) {
		throw new Error("Malformed token claims");
	}
	return { sub: payload.sub, sid: payload.sid, role: payload.role, exp: payload.exp as number };
}
