import jwt from "jsonwebtoken";
import { readConfig } from "../../lib/config";
import { signAccessToken, verifyAccessToken, TOKEN_AUDIENCE, TOKEN_ISSUER } from "../../lib/jwt";
import { withEnv } from "../helpers/env";

describe("access tokens", () => {
	const secret = "unit-test-secret-of-enough-length-0123456789";
	const claims = { sub: "u1", role: "customer" as const, sid: "s1" };
	const forge = (payload: Record<string, unknown>, opts: jwt.SignOptions = {}) =>
		jwt.sign(payload, secret, { algorithm: "HS256", issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, ...opts });

	test("a token we sign verifies, with its claims and expiry", () => {
		const token = signAccessToken(claims, 60, secret);
		expect(verifyAccessToken(token, secret)).toEqual({ ...claims, exp: expect.any(Number) });
	});

	test.each([
		["no expiry", forge({ role: "customer", sid: "s1", sub: "u1" })],
		["expired", forge({ role: "customer", sid: "s1", sub: "u1" }, { expiresIn: -10 })],
		["an unknown role", forge({ role: "root", sid: "s1", sub: "u1" }, { expiresIn: 60 })],
		["no session", forge({ role: "customer", sub: "u1" }, { expiresIn: 60 })],
		["another audience", forge({ role: "customer", sid: "s1", sub: "u1" }, { expiresIn: 60, audience: "elsewhere" })],
		["another algorithm", forge({ role: "customer", sid: "s1", sub: "u1" }, { expiresIn: 60, algorithm: "HS512" })],
	])("refused: %s", (_what, token) => {
		expect(() => verifyAccessToken(token, secret)).toThrow();
	});
});

describe("JWT_SECRET in production", () => {
	const strong = "9f3c1e0b7a5d4c2e8f6a1b3d5c7e9f0a";
	const production = (JWT_SECRET: string | undefined) => readConfig({ NODE_ENV: "production", JWT_SECRET });

	test.each([
		["shorter than 32 characters", strong.slice(1)],
		["the k8s template's", "REPLACE_ME"],
		["docker-compose's default", "local-only-jwt-secret-change-me"],
		["a tutorial's", "changeme"],
		["a tutorial's, in capitals", "Change-Me"],
		["the word", "SECRET"],
		["padded to length with spaces", `change-me${" ".repeat(32)}`],
	])("refuses to start with a secret %s, naming JWT_SECRET", (_what, secret) => {
		expect(() => production(secret)).toThrow(/JWT_SECRET/);
	});

	test("a random secret of 32 characters or more is taken; unset leaves the generated one (lib/jwt.ts)", () => {
		expect(production(strong).jwtSecret).toBe(strong);
		expect(production(undefined).jwtSecret).toBeUndefined();
		expect(production("").jwtSecret).toBeUndefined();
	});

	test.each(["development", "test", undefined])("NODE_ENV=%s keeps a short local secret", (NODE_ENV) => {
		expect(readConfig({ NODE_ENV, JWT_SECRET: "change-me" }).jwtSecret).toBe("change-me");
	});
});

describe("the embedded default's generated secret (DATA_DIR/jwt-secret)", () => {
	const fs = jest.requireActual<typeof import("node:fs")>("node:fs");
	const path = jest.requireActual<typeof import("node:path")>("node:path");
	const os = jest.requireActual<typeof import("node:os")>("node:os");

	/** jwtSecret() of a fresh module (it keeps the secret once read) outside tests, on this data dir. */
	function secretIn(dataDir: string): string {
		let secret = "";
		withEnv({ NODE_ENV: "development", JWT_SECRET: undefined, DATA_DIR: dataDir }, () => {
			jest.isolateModules(() => {
				const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
				try {
					secret = (require("../../lib/jwt") as typeof import("../../lib/jwt")).jwtSecret();
				} finally {
					warn.mockRestore();
				}
			});
		});
		return secret;
	}

	test("is kept across starts, and an empty file (a write cut short) gets a new one instead of signing with nothing", () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "jwt-secret-"));
		const first = secretIn(dir);
		expect(first).toMatch(/^[0-9a-f]{64}$/);
		expect(secretIn(dir)).toBe(first);
		fs.writeFileSync(path.join(dir, "jwt-secret"), "  \n");
		const renewed = secretIn(dir);
		expect(renewed).toMatch(/^[0-9a-f]{64}$/);
		expect(fs.readFileSync(path.join(dir, "jwt-secret"), "utf8")).toBe(renewed);
	});
});
