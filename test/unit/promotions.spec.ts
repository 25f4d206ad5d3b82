import { checkPromotion, lowestFreeSlot, normalizeCode, probeSlot, promotionDiscount, promotionInputProblems, type Promotion } from "../../lib/promotions";

const now = new Date("2030-06-01T12:00:00Z");
const promo = (over: Partial<Promotion> = {}): Promotion => ({
	code: "SAVE10",
	type: "percent",
	value: 10,
	minSubtotal: 0,
	maxUses: null,
	usedCount: 0,
	expiresAt: null,
	active: true,
	currency: "USD",
	...over,
});

describe("checkPromotion", () => {
	test.each([
		["no such code", null, {}, "unknown"],
		["inactive", promo({ active: false }), {}, "inactive"],
		["expired a second ago", promo({ expiresAt: new Date(now.getTime() - 1000) }), {}, "expired"],
		["expiring exactly now", promo({ expiresAt: now.toISOString() }), {}, "expired"],
		["all uses taken", promo({ maxUses: 5, usedCount: 5 }), {}, "exhausted"],
		["subtotal below the minimum", promo({ minSubtotal: 5000 }), { subtotal: 4999 }, "below_minimum"],
		["fixed amount in another currency", promo({ type: "fixed", value: 500, currency: "EUR" }), { subtotal: 10_000, currency: "USD" }, "currency_mismatch"],
		// Inactive beats expired: the customer learns the most permanent reason.
		["inactive and expired", promo({ active: false, expiresAt: new Date(0) }), {}, "inactive"],
	] as const)("%s → %s", (_name, p, ctx, reason) => {
		const verdict = checkPromotion(p, { now, ...ctx });
		expect(verdict).toMatchObject({ ok: false, reason });
		expect(verdict.ok === false && verdict.message.length).toBeGreaterThan(0);
	});

	test.each([
		["plain percent", promo(), {}],
		["expires later", promo({ expiresAt: new Date(now.getTime() + 1000) }), {}],
		["one use left", promo({ maxUses: 5, usedCount: 4 }), {}],
		["all uses taken, the limit left to the caller (consuming)", promo({ maxUses: 5, usedCount: 5 }), { ignoreUseLimit: true }],
		["subtotal exactly the minimum", promo({ minSubtotal: 5000 }), { subtotal: 5000 }],
		["minimum not checked without a subtotal (consumption)", promo({ minSubtotal: 5000 }), {}],
		["percent without minimum works in any currency", promo({ currency: "EUR" }), { subtotal: 100, currency: "USD" }],
	] as const)("%s → applies", (_name, p, ctx) => {
		expect(checkPromotion(p, { now, ...ctx })).toEqual({ ok: true });
	});

	test("the minimum message names the amount", () => {
		const v = checkPromotion(promo({ minSubtotal: 5000 }), { subtotal: 100, now });
		expect(v.ok === false && v.message).toContain("$50.00");
	});
});

describe("promotionDiscount", () => {
	test.each([
		["10% of $100", { type: "percent", value: 10 }, 10_000, 1000],
		["10% rounds half up: 10% of 1005 = 100.5 → 101", { type: "percent", value: 10 }, 1005, 101],
		["10% of 1004 = 100.4 → 100", { type: "percent", value: 10 }, 1004, 100],
		["15% of 999 = 149.85 → 150", { type: "percent", value: 15 }, 999, 150],
		["100% is the whole subtotal", { type: "percent", value: 100 }, 1234, 1234],
		["fixed $5 off $20", { type: "fixed", value: 500 }, 2000, 500],
		["fixed never exceeds the subtotal", { type: "fixed", value: 5000 }, 1999, 1999],
		["nothing off an empty cart", { type: "fixed", value: 500 }, 0, 0],
		["nothing off an empty cart (percent)", { type: "percent", value: 50 }, 0, 0],
	] as const)("%s", (_name, p, subtotal, expected) => {
		const d = promotionDiscount(p, subtotal);
		expect(d).toBe(expected);
		expect(Number.isInteger(d)).toBe(true);
		expect(d).toBeLessThanOrEqual(subtotal);
	});
});

describe("promotion input and codes", () => {
	test.each([
		[{ type: "percent", value: 101 }, ["value"]],
		[{ type: "percent", value: 0 }, ["value"]],
		[{ type: "percent", value: 100 }, []],
		[{ type: "percent", value: 1 }, []],
		[{ type: "fixed", value: 50_000 }, []],
		[{ type: "fixed", value: 500, expiresAt: new Date("2030-01-01T00:00:01Z") }, []],
		[{ type: "fixed", value: 500, expiresAt: new Date("2030-01-01T00:00:00Z") }, ["expiresAt"]],
		[{ type: "percent", value: 500, expiresAt: new Date(12345) }, ["value", "expiresAt"]],
		[{ type: "fixed", value: 500, expiresAt: null }, []],
		[{ type: "fixed", value: 500, currency: "EUR" }, []],
		// Three capitals are not a currency: a code for "XYZ" carts would never apply.
		[{ type: "fixed", value: 500, currency: "XYZ" }, ["currency"]],
	] as const)("%j → problems on %j", (input, fields) => {
		expect(promotionInputProblems(input, new Date("2030-01-01T00:00:00Z")).map((p) => p.field)).toEqual(fields);
	});

	test("codes are matched case-insensitively, stored upper-cased", () => {
		expect(normalizeCode("  summer-24 ")).toBe("SUMMER-24");
	});
});

describe("use slots", () => {
	test.each([
		["none taken", [], 3, 0],
		["the lowest gap", [0, 2, 1, 4], 5, 3],
		["a gap left by a release", [1, 2], 3, 0],
		["all taken", [2, 0, 1], 3, null],
		["slots at or past a lowered limit do not count", [0, 5, 7], 2, 1],
		["unlimited uses and markers are not numbered slots", ["order:o1", "released:o2", 0], 2, 1],
	] as const)("lowestFreeSlot: %s", (_name, taken, maxUses, expected) => {
		expect(lowestFreeSlot(taken, maxUses)).toBe(expected);
	});

	test.each([
		[0, 0, 5, 0],
		[3, 0, 5, 3],
		[3, 1, 5, 4],
		[4, 1, 5, null],
		[7, 0, 5, null],
		[-1, 0, 5, 0],
	])("probeSlot(usedCount %i, attempt %i, maxUses %i) → %p", (usedCount, attempt, maxUses, expected) => {
		expect(probeSlot(usedCount, attempt, maxUses)).toBe(expected);
	});
});
