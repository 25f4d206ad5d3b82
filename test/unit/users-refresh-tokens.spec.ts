/** Opaque tokens (refresh, verification, reset) and session liveness. */
import { expiresIn, hashOpaqueToken, looksLikeOpaqueToken, newOpaqueToken, sessionIsActive } from "../../lib/refresh-tokens";

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
