/** Password policy (NIST 800-63B / ASVS 5) and the bcrypt hashing around it. */
import bcrypt from "bcryptjs";
import {
	BCRYPT_CONCURRENCY, BCRYPT_COST, bcryptMaxWaitMs, MAX_PASSWORD_LENGTH, MIN_BCRYPT_COST, bcryptCost, bcryptWorkersRunning, commonPasswordList, hashPassword, holdBcryptWorkers, isCommonPassword,
	needsRehash, passwordLength, passwordProblem, prehashPassword, randomPassword, unmatchableHash, verifyPassword,
} from "../../lib/password-policy";

describe("passwordProblem", () => {
	test.each([
		["7 characters", "abcdefg", /at least 8/],
		["8 characters", "kq7#vLpz", null],
		["64 characters", "x9!".repeat(21) + "y", null],
		["128 characters", "Zq4$".repeat(32), null],
		["129 characters", "Zq4$".repeat(32) + "z", /at most 128/],
		["no composition rules: lower-case letters only", "correcthorsebatterystaple", null],
		["common: password", "password", /too common/],
		["common, whatever the case", "PassWord1", /too common/],
		["common: 12345678", "12345678", /too common/],
		["common with spaces around", "  iloveyou  ", /too common/],
		["8 code points of 2 UTF-16 units each", "😀".repeat(8), null],
		["7 code points of 2 UTF-16 units each", "😀".repeat(7), /at least 8/],
		["the email address", "Jane@Example.com", /email/],
		["the email's local part", "jane.doe.shop", /email/],
		["empty", "", /at least 8/],
		["only spaces", " ".repeat(8), /only spaces/],
		["only blanks of other kinds (ideographic, no-break spaces)", "\u3000\u00a0".repeat(4), /only spaces/],
		["zero-width spaces", "\u200b".repeat(8), /invisible/],
		["zero-width joiners and a right-to-left override", "\u200d\u202e".repeat(4), /invisible/],
		["soft hyphens", "\u00ad".repeat(8), /invisible/],
		["Hangul fillers and braille blanks", "\u3164\u2800".repeat(4), /invisible/],
		["combining accents alone", "\u0301".repeat(8), /invisible/],
		["letters with accents (visible)", "e\u0301".repeat(8), null],
		["NUL characters", "\u0000".repeat(8), /control characters/],
		["a line break inside", "velvet\notter-42", /control characters/],
		["a tab inside", "velvet\totter-42", /control characters/],
		["DEL inside", "velvet\u007fotter-42", /control characters/],
		["spaces between words", "  velvet otter 42  ", null],
	])("%s", (_label, password, expected) => {
		const problem = passwordProblem(password, { email: password === "jane.doe.shop" ? "jane.doe.shop@example.com" : "jane@example.com" });
		if (expected === null) expect(problem).toBeNull();
		else expect(problem).toMatch(expected as RegExp);
	});

	test("ships at least the 1,000 most common passwords, lower-cased", () => {
		const list = commonPasswordList();
		expect(list.size).toBeGreaterThanOrEqual(1000);
		expect(list.has("qwerty123")).toBe(true);
		expect(isCommonPassword("QWERTY123")).toBe(true);
		expect(isCommonPassword("not-in-any-list-7f3a")).toBe(false);
	});

	test("length counts characters, after NFKC normalisation", () => {
		expect(passwordLength("é")).toBe(1);
		expect(passwordLength("e\u0301")).toBe(1);
		expect(MAX_PASSWORD_LENGTH).toBeGreaterThanOrEqual(64);
	});
});

describe("password hashing", () => {
	test("bcrypt cost is 12 in production, never below 10", async () => {
		expect(bcryptCost(false)).toBe(BCRYPT_COST);
		expect(BCRYPT_COST).toBe(12);
		expect(bcryptCost(true)).toBe(MIN_BCRYPT_COST);
		expect(MIN_BCRYPT_COST).toBeGreaterThanOrEqual(10);
		expect(bcrypt.getRounds(await hashPassword("kq7#vLpz", 4))).toBe(MIN_BCRYPT_COST);
	});

	test("verifies the right password and refuses another", async () => {
		const hash = await hashPassword("kq7#vLpz", MIN_BCRYPT_COST);
		expect(hash).toMatch(/^\$2[aby]\$10\$/);
		await expect(verifyPassword("kq7#vLpz", hash)).resolves.toBe(true);
		await expect(verifyPassword("kq7#vLpZ", hash)).resolves.toBe(false);
	});

	test("two passwords equal in their first 72 bytes are different passwords", async () => {
		const prefix = "é".repeat(40); // 80 UTF-8 bytes
		const a = prefix + "-first";
		const b = prefix + "-second";
		expect(prehashPassword(a)).not.toBe(prehashPassword(b));
		expect(Buffer.byteLength(prehashPassword(a))).toBeLessThanOrEqual(72);
		const hash = await hashPassword(a, MIN_BCRYPT_COST);
		await expect(verifyPassword(a, hash)).resolves.toBe(true);
		await expect(verifyPassword(b, hash)).resolves.toBe(false);
	});

	test("the same password in another Unicode form verifies", async () => {
		const hash = await hashPassword("caf\u00e9-au-lait", MIN_BCRYPT_COST);
		await expect(verifyPassword("cafe\u0301-au-lait", hash)).resolves.toBe(true);
	});

	test("hashes below today's cost are marked for upgrade", async () => {
		const weak = bcrypt.hashSync(prehashPassword("kq7#vLpz"), 4);
		expect(needsRehash(weak, 10)).toBe(true);
		expect(needsRehash(await hashPassword("kq7#vLpz", 10), 10)).toBe(false);
		expect(needsRehash("not a bcrypt hash", 10)).toBe(true);
	});

	test("random passwords pass the policy", () => {
		const p = randomPassword();
		expect(p).toHaveLength(24);
		expect(passwordProblem(p)).toBeNull();
		expect(randomPassword()).not.toBe(p);
	});
});

describe("unmatchableHash", () => {
	test("is a bcrypt hash of the cost asked that no password matches, and checking it costs the full rounds", async () => {
		const hash = unmatchableHash(MIN_BCRYPT_COST);
		expect(hash).toMatch(/^\$2b\$10\$[./A-Za-z0-9]{53}$/);
		expect(bcrypt.getRounds(hash)).toBe(MIN_BCRYPT_COST);
		expect(unmatchableHash(MIN_BCRYPT_COST)).not.toBe(hash);
		await expect(verifyPassword("", hash)).resolves.toBe(false);
		await expect(verifyPassword("correct horse battery staple", hash)).resolves.toBe(false);
		// As slow as a real check: a malformed hash would fail at once instead.
		const real = await hashPassword("some password", MIN_BCRYPT_COST);
		const time = async (h: string) => {
			const t0 = process.hrtime.bigint();
			await verifyPassword("x", h);
			return Number(process.hrtime.bigint() - t0);
		};
		expect(await time(hash)).toBeGreaterThan((await time(real)) / 3);
	});
});

test("hashes and compares run off the main thread: the event loop keeps turning while bcrypt works", async () => {
	let turns = 0;
	let turning = true;
	const turn = () => {
		turns++;
		if (turning) setImmediate(turn);
	};
	setImmediate(turn);
	const hash = await hashPassword("kq7#vLpz", MIN_BCRYPT_COST);
	const ok = await verifyPassword("kq7#vLpz", hash);
	turning = false;
	expect(ok).toBe(true);
	// bcryptjs on this thread works in chunks of up to 100 ms: a cost-10 hash and compare gave the
	// loop a handful of turns. On a worker it turns freely meanwhile.
	expect(turns).toBeGreaterThan(50);
	expect(bcrypt.compareSync(prehashPassword("kq7#vLpz"), hash)).toBe(true);
	expect(BCRYPT_CONCURRENCY).toBe(2);
});

test("the workers stop when the last service holding them lets go, and start again for the next hash", async () => {
	const first = holdBcryptWorkers();
	const second = holdBcryptWorkers();
	await hashPassword("kq7#vLpz", MIN_BCRYPT_COST);
	expect(bcryptWorkersRunning()).toBe(1);
	await first();
	// Letting go twice counts once.
	await first();
	expect(bcryptWorkersRunning()).toBe(1);
	await second();
	expect(bcryptWorkersRunning()).toBe(0);
	await expect(verifyPassword("kq7#vLpz", await hashPassword("kq7#vLpz", MIN_BCRYPT_COST))).resolves.toBe(true);
	expect(bcryptWorkersRunning()).toBe(1);
});

describe("bcryptMaxWaitMs: a password change's two waits fit in the request timeout", () => {
	test.each([
		[10_000, 4000],
		[30_000, 4000],
		[5000, 1500],
		[2000, 0],
		[1000, 0],
	])("REQUEST_TIMEOUT %p → at most %p ms waiting for a worker", (timeout, wait) => {
		expect(bcryptMaxWaitMs(timeout)).toBe(wait);
	});
});
