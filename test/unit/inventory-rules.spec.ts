import { mergeLines, sameLines, checkLines, RELEASE_TRANSITIONS, RELEASED_STATES } from "../../lib/inventory-rules";

describe("mergeLines", () => {
	test.each([
		[[], []],
		[[{ variantId: "a", quantity: 1 }], [{ variantId: "a", quantity: 1 }]],
		[[{ variantId: "a", quantity: 2 }, { variantId: "b", quantity: 1 }, { variantId: "a", quantity: 3 }], [{ variantId: "a", quantity: 5 }, { variantId: "b", quantity: 1 }]],
	])("%j → %j", (lines, merged) => expect(mergeLines(lines)).toEqual(merged));
});

describe("sameLines", () => {
	const a = (q: number) => ({ variantId: "a", quantity: q });
	const b = (q: number) => ({ variantId: "b", quantity: q });
	test.each([
		[[a(1), b(2)], [b(2), a(1)], true],
		[[a(3)], [a(1), a(2)], true],
		[[a(1)], [a(2)], false],
		[[a(1)], [a(1), b(1)], false],
		[[], [], true],
	])("%j vs %j → %s", (x, y, same) => expect(sameLines(x, y)).toBe(same));
});

describe("checkLines", () => {
	const stock: Record<string, number> = { a: 3, b: 0 };
	test.each([
		[[{ variantId: "a", quantity: 3 }], true, [{ variantId: "a", requested: 3, available: 3, ok: true }]],
		[[{ variantId: "a", quantity: 2 }, { variantId: "a", quantity: 2 }], false, [{ variantId: "a", requested: 4, available: 3, ok: false }]],
		[[{ variantId: "b", quantity: 1 }], false, [{ variantId: "b", requested: 1, available: 0, ok: false }]],
		[[{ variantId: "zz", quantity: 1 }], false, [{ variantId: "zz", requested: 1, available: 0, ok: false }]],
	])("%j → ok %s", (items, ok, result) => {
		expect(checkLines(items, (id) => stock[id])).toEqual({ ok, items: result });
	});

	test("a negative stock (never stored, but be safe) counts as nothing available", () => {
		expect(checkLines([{ variantId: "x", quantity: 1 }], () => -2).items[0].available).toBe(0);
	});
});

describe("reservation transitions", () => {
	test("release goes reserved → released and committed → returned, as release and return", () => {
		expect(RELEASE_TRANSITIONS.map((t) => [t.from, t.to, t.movement])).toEqual([
			["reserved", "released", "release"],
			["committed", "returned", "return"],
		]);
	});

	test("every target of a release counts as released", () => {
		for (const t of RELEASE_TRANSITIONS) expect(RELEASED_STATES.has(t.to)).toBe(true);
		expect(RELEASED_STATES.has("reserved")).toBe(false);
		expect(RELEASED_STATES.has("committed")).toBe(false);
	});
});
