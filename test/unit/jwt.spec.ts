import jwt from "jsonwebtoken";
import { readConfig } from "../../lib/config";
import { MAX_VERIFIED_TOKENS, signAccessToken, verifyAccessToken, TOKEN_AUDIENCE, TOKEN_ISSUER } from "../../lib/jwt";
import { withEnv } from "../helpers/env";
import { publishedValues } from "../helpers/published-settings";

describe("access tokens", () => {
	const secret = "unit-test-secret-of-enough-length-0123456789";
	const claims = { sub: "u1", role: "customer" as const, sid: "s1" };
	const forge = (payload: Record<string, unknown>, opts: jwt.SignOptions = {}) =>
		jwt.sign(payload, secret, { algorithm: "HS256", issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, ...opts });

	test("a token we sign verifies, with its claims and expiry", () => {
		const token = signAccessToken(claims, 60, secret);
		expect(verifyAccessToken(token, secret)).toEqual({ ...claims, exp: expect.any(Number) });
	});

	test("a token lasts at least the ttl it is answered with, whatever the millisecond it is made at", () => {
		for (const ms of [0, 1, 999]) {
			const now = Date.UTC(2026, 11, 1, 2, 0, 0, ms);
			jest.spyOn(Date, "now").mockReturnValue(now);
			try {
				const { exp } = jwt.decode(signAccessToken(claims, 1, secret)) as { exp: number };
				expect(exp * 1000 - now).toBeGreaterThanOrEqual(1000);
				expect(exp * 1000 - now).toBeLessThan(2000);
			} finally {
				jest.restoreAllMocks();
			}
		}
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

	describe("a token verified once is not checked in full again, and holds no more than the first check", () => {
		afterEach(() => jest.useRealTimers());

		test("the next presentations answer the same claims without the HMAC, as copies", () => {
			const token = signAccessToken(claims, 60, secret);
			const first = verifyAccessToken(token, secret);
			const verify = jest.spyOn(jwt, "verify");
			try {
				const again = verifyAccessToken(token, secret);
				expect(again).toEqual(first);
				expect(verify).not.toHaveBeenCalled();
				again.role = "admin";
				expect(verifyAccessToken(token, secret).role).toBe("customer");
			} finally {
				verify.mockRestore();
			}
		});

		test("no more than MAX_VERIFIED_TOKENS are kept: the oldest is checked in full again", () => {
			const tokens = Array.from({ length: MAX_VERIFIED_TOKENS + 1 }, (_, i) => signAccessToken({ ...claims, sid: `bound-${i}` }, 60, secret));
			for (const t of tokens) verifyAccessToken(t, secret);
			const verify = jest.spyOn(jwt, "verify");
			try {
				verifyAccessToken(tokens[tokens.length - 1], secret);
				expect(verify).not.toHaveBeenCalled();
				expect(verifyAccessToken(tokens[0], secret).sid).toBe("bound-0");
				expect(verify).toHaveBeenCalledTimes(1);
			} finally {
				verify.mockRestore();
			}
		});

		test("it expires on time, with the error name an expired token has (the gateway answers TOKEN_EXPIRED)", () => {
			jest.useFakeTimers({ now: new Date("2026-11-29T12:00:00Z") });
			const token = signAccessToken(claims, 60, secret);
			expect(verifyAccessToken(token, secret).sub).toBe("u1");
			jest.setSystemTime(new Date("2026-11-29T12:00:59Z"));
			expect(verifyAccessToken(token, secret).sub).toBe("u1");
			jest.setSystemTime(new Date("2026-11-29T12:01:00Z"));
			for (let i = 0; i < 2; i++) expect(() => verifyAccessToken(token, secret)).toThrow(expect.objectContaining({ name: "TokenExpiredError" }));
		});

		test("under another secret (rotated) it is checked again, and refused", () => {
			const token = signAccessToken(claims, 60, secret);
			verifyAccessToken(token, secret);
			expect(() => verifyAccessToken(token, "another-secret-of-enough-length-0123456789")).toThrow();
		});

		test("a refused token is refused every time: a changed signature or payload is not the token that passed", () => {
			const token = signAccessToken(claims, 60, secret);
			verifyAccessToken(token, secret);
			const [head, body, sig] = token.split(".");
			const tampered = [
				[head, body, sig.slice(0, -2) + (sig.endsWith("AA") ? "BB" : "AA")].join("."),
				[head, Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, "base64url").toString()), role: "admin" })).toString("base64url"), sig].join("."),
			];
			for (const t of tampered) for (let i = 0; i < 2; i++) expect(() => verifyAccessToken(t, secret)).toThrow();
		});
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
		["of 32 identical characters", "a".repeat(32)],
		["of few different characters, however long", "abcabcabc1".repeat(8)],
		["of 9 different characters", "123456789".repeat(4)],
	])("refuses to start with a secret %s, naming JWT_SECRET", (_what, secret) => {
		expect(() => production(secret)).toThrow(/^JWT_SECRET is a placeholder, shorter than 32 characters or made of fewer than 10 different characters/);
	});

	// The dev overlay's passes length and variety: only the list of published values keeps it out of production.
	const published = publishedValues("JWT_SECRET", ["local-only-jwt-secret-change-me"]);

	test("the deployment files' values are found (the check below is not empty)", () => {
		expect(published).toEqual(expect.arrayContaining(["REPLACE_ME", "dev-only-jwt-secret-not-for-production", "change-me"]));
	});

	test.each(published.flatMap((s) => [s, s.toUpperCase(), ` ${s} `]))("%j, published in the shop's own files, stops a production start", (value) => {
		expect(() => production(value)).toThrow(/^JWT_SECRET is a placeholder/);
	});

	test("ten different characters are variety enough (openssl rand -hex 32 has up to 16)", () => {
		expect(production("0123456789".repeat(4)).jwtSecret).toBe("0123456789".repeat(4));
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

describe("JWT_SECRET in a cluster (TRANSPORTER set)", () => {
	// Unset, each node would generate its own secret (lib/jwt.ts): a token signed by one is 401 on the others.
	test.each(["production", "development", undefined])("NODE_ENV=%s refuses to start without JWT_SECRET, naming it", (NODE_ENV) => {
		for (const JWT_SECRET of [undefined, "", "   "]) {
			expect(() => readConfig({ NODE_ENV, TRANSPORTER: "nats://nats:4222", JWT_SECRET })).toThrow(/^JWT_SECRET must be set when TRANSPORTER is \(a cluster\), the same on every node/);
		}
	});

	test("with one it starts; under tests, and in one process without a transporter, the generated one is used", () => {
		expect(readConfig({ NODE_ENV: "production", TRANSPORTER: "TCP", JWT_SECRET: "9f3c1e0b7a5d4c2e8f6a1b3d5c7e9f0a" }).jwtSecret).toBe("9f3c1e0b7a5d4c2e8f6a1b3d5c7e9f0a");
		expect(readConfig({ NODE_ENV: "test", TRANSPORTER: "Fake" }).jwtSecret).toBeUndefined();
		expect(readConfig({ NODE_ENV: "production" }).jwtSecret).toBeUndefined();
	});
});

describe("the embedded default's generated secret (DATA_DIR/jwt-secret)", () => {
	const fs = jest.requireActual<typeof import("node:fs")>("node:fs");
	const path = jest.requireActual<typeof import("node:path")>("node:path");
	const os = jest.requireActual<typeof import("node:os")>("node:os");

	/** jwtSecret() of a fresh module (it keeps the secret once read) outside tests, on this data dir; `warned` gets its warnings. */
	function secretIn(dataDir: string, warned: string[] = []): string {
		let secret = "";
		withEnv({ NODE_ENV: "development", JWT_SECRET: undefined, DATA_DIR: dataDir }, () => {
			jest.isolateModules(() => {
				const ignore = () => undefined;
				(require("../../lib/ops-log") as typeof import("../../lib/ops-log")).setOpsLogger({ info: ignore, error: ignore, warn: (message: string) => void warned.push(message) });
				secret = (require("../../lib/jwt") as typeof import("../../lib/jwt")).jwtSecret();
			});
		});
		return secret;
	}
	let dir: string;
	beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "jwt-secret-"))));
	afterEach(() => {
		jest.restoreAllMocks();
		fs.rmSync(dir, { recursive: true, force: true });
	});
	const stored = () => fs.readFileSync(path.join(dir, "jwt-secret"), "utf8");

	test("is kept across starts, and an empty file (a write cut short) gets a new one instead of signing with nothing", () => {
		const first = secretIn(dir);
		expect(first).toMatch(/^[0-9a-f]{64}$/);
		expect(secretIn(dir)).toBe(first);
		fs.writeFileSync(path.join(dir, "jwt-secret"), "  \n");
		const renewed = secretIn(dir);
		expect(renewed).toMatch(/^[0-9a-f]{64}$/);
		expect(stored()).toBe(renewed);
	});

	test("one cut short (under 32 characters) is a weak key: replaced, with a warning that earlier sessions are no longer valid", () => {
		const file = path.join(dir, "jwt-secret");
		fs.writeFileSync(file, `${"a1".repeat(15)}7\n`);
		const warned: string[] = [];
		const renewed = secretIn(dir, warned);
		expect(renewed).toMatch(/^[0-9a-f]{64}$/);
		expect(stored()).toBe(renewed);
		expect(warned).toEqual([expect.stringContaining(`${file} held 31 characters, too few for a signing secret (at least 32): generated a new one there. Sessions and tokens signed before are no longer valid`)]);
		// 32 characters are kept.
		fs.writeFileSync(file, "b2".repeat(16));
		expect(secretIn(dir)).toBe("b2".repeat(16));
	});

	test("a write the disk refuses part-way leaves no file behind to be taken as a short secret, and the next start writes a whole one", () => {
		const realWriteSync = fs.writeSync;
		const realWriteFileSync = fs.writeFileSync;
		const enospc = () => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
		// 10 bytes get written, then the disk is full: through a descriptor or in one call.
		let room = 10;
		jest.spyOn(fs, "writeSync").mockImplementation(((fd: number, buf: Buffer, offset: number | null = 0) => {
			offset ??= 0;
			if (room <= 0) throw enospc();
			const n = realWriteSync(fd, buf, offset, Math.min(room, buf.length - offset));
			room -= n;
			return n;
		}) as typeof fs.writeSync);
		jest.spyOn(fs, "writeFileSync").mockImplementation(((file: number | string, data: string) => {
			realWriteFileSync(file, String(data).slice(0, 10));
			throw enospc();
		}) as typeof fs.writeFileSync);
		expect(() => secretIn(dir)).toThrow(`Cannot store the generated JWT signing secret in ${path.join(dir, "jwt-secret")} (ENOSPC`);
		expect(fs.readdirSync(dir)).toEqual([]);
		jest.restoreAllMocks();
		expect(secretIn(dir)).toMatch(/^[0-9a-f]{64}$/);
		expect(stored()).toMatch(/^[0-9a-f]{64}$/);
	});
});
