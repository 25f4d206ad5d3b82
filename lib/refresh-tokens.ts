/**
 * Opaque secrets handed to clients (refresh, email-verification and password-reset tokens): 256
 * random bits, stored only as a SHA-256 hash, so a copy of the database logs nobody in.
 * A fast hash is enough here (unlike passwords): the input is random, there is nothing to guess.
 */
import crypto from "node:crypto";

/** Refresh tokens (and so sessions) live 30 days from login at most, rotated or not. */
export const SESSION_LIFETIME_SECONDS = 30 * 24 * 3600;
/** Spent refresh hashes kept per session for reuse detection (older ones just stop matching). */
export const SPENT_HASHES_KEPT = 100;

export const VERIFY_EMAIL_TTL_SECONDS = 24 * 3600;
export const PASSWORD_RESET_TTL_SECONDS = 3600;

export function newOpaqueToken(): string {
	return crypto.randomBytes(32).toString("base64url");
}

export function hashOpaqueToken(token: string): string {
	return crypto.createHash("sha256").update(token, "utf8").digest("base64url");
}

/** A token whose shape cannot be ours is refused before any lookup. */
export function looksLikeOpaqueToken(token: unknown): token is string {
	return typeof token === "string" && /^[A-Za-z0-9_-]{43}$/.test(token);
}

/** A session (any stored shape with `revokedAt` and `expiresAt`) that may still be used. */
export function sessionIsActive(session: { revokedAt?: Date | string | null; expiresAt?: Date | string; [field: string]: unknown } | null | undefined, now = new Date()): boolean {
	return !!session && !session.revokedAt && !!session.expiresAt && new Date(session.expiresAt).getTime() > now.getTime();
}

/**
 * Whether a session still stands for its user's password. A session carries the user's password
 * version as its login read it (the session that changes the password is moved to the new one): a
 * login whose bcrypt check ran while the password changed opens its session after the change ended
 * the others, with the old version, and that session is dead from the start. A newer version than
 * the user's is the changer's own session, moved just before the user's version is raised. Sessions
 * stored before versions were kept have none: they stand unless the password changed after them.
 */
export function sessionHasCurrentPassword(
	session: { passwordVersion?: number | null; createdAt?: Date | string; [field: string]: unknown },
	user: { passwordVersion?: number | null; passwordChangedAt?: Date | string | null; [field: string]: unknown },
): boolean {
	if (typeof session.passwordVersion === "number") return session.passwordVersion >= (user.passwordVersion ?? 0);
	if (!user.passwordChangedAt) return true;
	return !!session.createdAt && new Date(session.createdAt).getTime() >= new Date(user.passwordChangedAt).getTime();
}

export function expiresIn(seconds: number, from = new Date()): Date {
	return new Date(from.getTime() + seconds * 1000);
}
