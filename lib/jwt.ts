/** Access tokens: HS256 only (pinned on verify), with iss/aud/exp always checked. */
import jwt from "jsonwebtoken";
import crypto, { type KeyObject } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { readConfig } from "./config";

export const TOKEN_ISSUER = "moleculer-shop";
export const TOKEN_AUDIENCE = "moleculer-shop-api";

export interface AccessClaims {
	sub: string;
	role: "customer" | "admin";
	sid: string;
}

let cachedSecret: string | undefined;

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
	try {
		cachedSecret = fs.readFileSync(file, "utf8").trim() || undefined;
	} catch {
		/* not written yet */
	}
	// Missing, or empty (a write cut short by a full disk): a new one. No token can carry an empty secret's signature.
	if (!cachedSecret) {
		cachedSecret = crypto.randomBytes(32).toString("hex");
		fs.mkdirSync(cfg.dataDir, { recursive: true });
		fs.writeFileSync(file, cachedSecret, { mode: 0o600 });
		console.warn(`JWT_SECRET is not set: generated a random signing secret in ${file}. Set JWT_SECRET in production and on every node of a cluster.`);
	}
	return cachedSecret;
}

// jsonwebtoken first tries to parse a string secret as a public key (building an exception each
// time); a ready secret KeyObject skips that: ~0.4 ms → ~10 µs on every authenticated request.
const keyObjects = new Map<string, KeyObject>();
function secretKey(secret: string): KeyObject {
	let key = keyObjects.get(secret);
	if (!key) keyObjects.set(secret, (key = crypto.createSecretKey(Buffer.from(secret, "utf8"))));
	return key;
}

export function signAccessToken(claims: AccessClaims, ttlSeconds = readConfig().jwtTtlSeconds, secret = jwtSecret()): string {
	return jwt.sign({ role: claims.role, sid: claims.sid }, secret, {
		algorithm: "HS256",
		subject: claims.sub,
		issuer: TOKEN_ISSUER,
		audience: TOKEN_AUDIENCE,
		expiresIn: ttlSeconds,
	});
}

/** Throws on anything but a valid, unexpired HS256 token of ours. */
export function verifyAccessToken(token: string, secret = jwtSecret()): AccessClaims & { exp: number } {
	const payload = jwt.verify(token, secretKey(secret), {
		algorithms: ["HS256"],
		issuer: TOKEN_ISSUER,
		audience: TOKEN_AUDIENCE,
	}) as jwt.JwtPayload;
	// Every token we sign expires; one without `exp` was not signed by this code, whoever holds the key.
	if (typeof payload.exp !== "number" || typeof payload.sub !== "string" || typeof payload.sid !== "string" || (payload.role !== "customer" && payload.role !== "admin")) {
		throw new Error("Malformed token claims");
	}
	return { sub: payload.sub, sid: payload.sid, role: payload.role, exp: payload.exp as number };
}
