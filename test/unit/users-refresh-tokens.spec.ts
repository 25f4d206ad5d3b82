/** Opaque tokens (refresh, verification, reset) and session liveness. */
import { expiresIn, hashOpaqueToken, looksLikeOpaqueToken, newOpaqueToken, sessionHasCurrentPassword, sessionIsActive } from "../../lib/refresh-tokens";

describe("opaque tokens", () => {
	test("256 random bits, base64url, never twice the same", () => {
		const tokens = new Set(Array.from({ length: 1000 }, newOpaqueToken));
		expect(tokens.size).toBe(1000);
		for (const t of tokens) expect(looksLikeOpaqueToken(t)).toBe(true);
		expect(Buffer.from([...tokens][0], "base64url")).toHaveLength(32);
	});

	test("stored as a SHA-256 hash that differs from the token", () => {
		const t = newOpaqueToken();
		expect(hashOpaqueToken(t)).toBe(hashOpaqueToken(t));
		expect(hashOpaqueToken(t)).not.toBe(t);
		expect(hashOpaqueToken(t)).not.toBe(hashOpaqueToken(newOpaqueToken()));
		expect(Buffer.from(hashOpaqueToken(t), "base64url")).toHaveLength(32);
	});

	test.each([
		["too short", "abc", false],
		["an object", { $gt: "" }, false],
		["a JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", false],
		["with padding", "A".repeat(42) + "=", false],
		["43 base64url characters", "A".repeat(42) + "_", true],
	])("shape check: %s", (_label, value, ok) => {
		expect(looksLikeOpaqueToken(value)).toBe(ok);
	});
});

describe("sessionIsActive", () => {
	const now = new Date("2030-01-01T00:00:00Z");
	test.each([
		["missing", null, false],
		["live", { revokedAt: null, expiresAt: new Date("2030-01-02T00:00:00Z") }, true],
		["live, dates as strings", { revokedAt: null, expiresAt: "2030-01-02T00:00:00.000Z" }, true],
		["revoked", { revokedAt: new Date("2029-12-31T00:00:00Z"), expiresAt: new Date("2030-01-02T00:00:00Z") }, false],
		["expired", { revokedAt: null, expiresAt: new Date("2029-12-31T23:59:59Z") }, false],
		["expiring right now", { revokedAt: null, expiresAt: now }, false],
		["no expiry recorded", { revokedAt: null }, false],
	])("%s", (_label, session, active) => {
		expect(sessionIsActive(session as any, now)).toBe(active);
	});

	test("expiresIn adds seconds", () => {
		expect(expiresIn(3600, now).toISOString()).toBe("2030-01-01T01:00:00.000Z");
	});
});

describe("sessionHasCurrentPassword", () => {
	const before = new Date("2030-01-01T00:00:00Z");
	const changed = new Date("2030-01-02T00:00:00Z");
	const after = new Date("2030-01-03T00:00:00Z");
	test.each([
		["opened under the current version", { passwordVersion: 3, createdAt: before }, { passwordVersion: 3, passwordChangedAt: changed }, true],
		["opened under an older version (its login checked the old password)", { passwordVersion: 2, createdAt: after }, { passwordVersion: 3, passwordChangedAt: changed }, false],
		["the changer's own session, moved to the new version just before the user", { passwordVersion: 4, createdAt: before }, { passwordVersion: 3, passwordChangedAt: changed }, true],
		["version 0, a user stored before versions were kept", { passwordVersion: 0, createdAt: before }, { passwordChangedAt: changed }, true],
		["version 0, the user's password changed since", { passwordVersion: 0, createdAt: after }, { passwordVersion: 1, passwordChangedAt: changed }, false],
		["stored before versions were kept, password unchanged since", { createdAt: after }, { passwordVersion: 0, passwordChangedAt: changed }, true],
		["stored before versions were kept, password changed after it was opened", { createdAt: before }, { passwordVersion: 1, passwordChangedAt: changed }, false],
		["stored before versions were kept, dates as strings", { createdAt: after.toISOString() }, { passwordChangedAt: changed.toISOString() }, true],
		["stored before versions were kept, no change recorded", { createdAt: before }, {}, true],
	])("%s", (_label, session, user, expected) => {
		expect(sessionHasCurrentPassword(session, user)).toBe(expected);
	});
});
