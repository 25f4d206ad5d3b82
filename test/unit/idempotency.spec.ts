import {
	adminRefundKey,
	awaitIdempotentOutcome,
	canonicalJson,
	claimIdempotencyKey,
	isValidIdempotencyKey,
	replayError,
	requestFingerprint,
	serializeError,
	type IdempotencyRecord,
	type IdempotencyStore,
	orphanedKeyAction,
} from "../../lib/idempotency";
import { PaymentDeclinedError } from "../../lib/errors";

/** An in-memory store with the unique {userId, key} index of the real collection. */
function memoryStore() {
	const rows = new Map<string, IdempotencyRecord>();
	let seq = 0;
	const store: IdempotencyStore & { rows: typeof rows } = {
		rows,
		async insert(doc) {
			await Promise.resolve();
			if ([...rows.values()].some((r) => r.userId === doc.userId && r.key === doc.key)) throw Object.assign(new Error("dup"), { type: "DUPLICATE" });
			const record = { ...doc, id: `r${++seq}` };
			rows.set(record.id, record);
			return record;
		},
		async findOne(q) {
			return [...rows.values()].find((r) => r.userId === q.userId && r.key === q.key) ?? null;
		},
		async findById(id) {
			return rows.get(id) ?? null;
		},
	};
	return store;
}

describe("canonicalJson", () => {
	test.each([
		[{ b: 1, a: 2 }, '{"a":2,"b":1}'],
		[{ a: { d: [3, { z: 1, y: 2 }], c: null } }, '{"a":{"c":null,"d":[3,{"y":2,"z":1}]}}'],
		[{ a: undefined, b: "x" }, '{"b":"x"}'],
		[[1, "two", true], '[1,"two",true]'],
		["plain", '"plain"'],
		[null, "null"],
	])("%j → %s", (value, expected) => expect(canonicalJson(value)).toBe(expected));
});

describe("requestFingerprint", () => {
	const body = { shippingAddressId: "a1", paymentMethod: { type: "card", token: "pm_card_visa" } };

	test("key order does not matter", () => {
		expect(requestFingerprint(body)).toBe(requestFingerprint({ paymentMethod: { token: "pm_card_visa", type: "card" }, shippingAddressId: "a1" }));
	});

	test("any change of a value does", () => {
		expect(requestFingerprint(body)).not.toBe(requestFingerprint({ ...body, shippingAddressId: "a2" }));
		expect(requestFingerprint(body)).not.toBe(requestFingerprint({ ...body, paymentMethod: { type: "card", token: "pm_card_mastercard" } }));
	});

	test("is a SHA-256 hex digest", () => expect(requestFingerprint(body)).toMatch(/^[0-9a-f]{64}$/));
});

describe("isValidIdempotencyKey", () => {
	test.each([
		["3f1c2a9e-6d0b-4b8e-9a51-0c5f4e7d2b11", true],
		["k", true],
		["x".repeat(255), true],
		["", false],
		["x".repeat(256), false],
		["has space", false],
		["tab\there", false],
		[42, false],
	])("%p → %s", (key, ok) => expect(isValidIdempotencyKey(key)).toBe(ok));
});

describe("adminRefundKey", () => {
	test("a key that fits is kept as it is (refunds made before still match their retries)", () => {
		expect(adminRefundKey("order1", "abc")).toBe("order1-admin-abc");
	});
	test("a long key is hashed: within the refund key limit, the same for the same key, different for another", () => {
		const long = adminRefundKey("order1", "k".repeat(255));
		expect(long.length).toBeLessThanOrEqual(200);
		expect(long).toMatch(/^order1-admin-sha256-/);
		expect(adminRefundKey("order1", "k".repeat(255))).toBe(long);
		expect(adminRefundKey("order1", `${"k".repeat(254)}j`)).not.toBe(long);
	});
});

describe("claimIdempotencyKey", () => {
	test("of concurrent requests with one key exactly one claims it; the others get its record", async () => {
		const store = memoryStore();
		let n = 0;
		const claims = await Promise.all(Array.from({ length: 10 }, () => claimIdempotencyKey(store, { userId: "u1", key: "k", fingerprint: "f", orderId: () => `o${++n}` })));
		expect(claims.filter((c) => c!.claimed)).toHaveLength(1);
		const winner = claims.find((c) => c!.claimed)!.record;
		for (const c of claims) expect(c!.record.id).toBe(winner.id);
		expect(winner).toMatchObject({ status: "running", orderId: "o1", fingerprint: "f" });
	});

	test("keys are per user", async () => {
		const store = memoryStore();
		const a = await claimIdempotencyKey(store, { userId: "u1", key: "k", fingerprint: "f", orderId: () => "o1" });
		const b = await claimIdempotencyKey(store, { userId: "u2", key: "k", fingerprint: "f", orderId: () => "o2" });
		expect([a!.claimed, b!.claimed]).toEqual([true, true]);
	});

	test("other storage errors are not swallowed", async () => {
		const store = memoryStore();
		store.insert = async () => {
			throw new Error("disk full");
		};
		await expect(claimIdempotencyKey(store, { userId: "u", key: "k", fingerprint: "f", orderId: () => "o" })).rejects.toThrow("disk full");
	});
});

describe("awaitIdempotentOutcome", () => {
	test("waits for the running request to finish", async () => {
		const store = memoryStore();
		const { record } = (await claimIdempotencyKey(store, { userId: "u", key: "k", fingerprint: "f", orderId: () => "o" }))!;
		setTimeout(() => store.rows.set(record.id, { ...record, status: "completed", response: { id: "o" } }), 30);
		expect(await awaitIdempotentOutcome(store, record, 2000, 5)).toMatchObject({ status: "completed", response: { id: "o" } });
	});

	test("gives up after waitMs with the record still running, and reports a freed key as null", async () => {
		const store = memoryStore();
		const { record } = (await claimIdempotencyKey(store, { userId: "u", key: "k", fingerprint: "f", orderId: () => "o" }))!;
		expect((await awaitIdempotentOutcome(store, record, 20, 5))!.status).toBe("running");
		store.rows.delete(record.id);
		expect(await awaitIdempotentOutcome(store, record, 20, 5)).toBeNull();
	});
});

describe("stored errors", () => {
	test("a replayed error has the same name, code, type, message and data", () => {
		const original = new PaymentDeclinedError("Your card was declined.", { reason: "card_declined" });
		const replayed = replayError(serializeError(original)) as any;
		expect(serializeError(replayed)).toEqual(serializeError(original));
		expect(replayed).toMatchObject({ name: "PaymentDeclinedError", code: 402, type: "PAYMENT_DECLINED", data: { reason: "card_declined" } });
	});
});

describe("a key left running by a request that may have died", () => {
	const now = new Date("2026-01-01T12:00:00Z");
	const claimed = (secondsAgo: number) => ({ createdAt: new Date(now.getTime() - secondsAgo * 1000) });
	test.each([
		["a finished checkout answers at once, however young", claimed(1), "completed", "complete"],
		["a checkout still running is waited for", claimed(3600), "running", "wait"],
		["one owing compensation is left to recovery", claimed(3600), "compensation_failed", "wait"],
		["no order yet, young: the request may still be on its way", claimed(30), null, "wait"],
		["no order, past the limit: freed for a retry", claimed(120), null, "release"],
		["an undone checkout, young: its refusal may still be on its way to the key", claimed(30), "compensated", "wait"],
		["an undone checkout, past the limit: freed", claimed(121), "compensated", "release"],
	] as const)("%s", (_what, record, saga, expected) => {
		expect(orphanedKeyAction(record, saga, now, 120_000)).toBe(expected);
	});

	test.each([
		["no order, young: freed at once", null, "release"],
		["an undone checkout, young: freed at once", "compensated", "release"],
		["a finished checkout still answers with its order", "completed", "complete"],
		["a checkout still running is still left to recovery", "running", "wait"],
		["one owing compensation too", "compensation_failed", "wait"],
	] as const)("its holder's run is over (its node restarted): %s", (_what, saga, expected) => {
		expect(orphanedKeyAction(claimed(2), saga, now, 120_000, true)).toBe(expected);
	});
});
