import { mergeLines, sameLines, checkLines, holdField, movementKey, rollbackSteps, RELEASE_TRANSITIONS, RELEASED_STATES, SWEEP_TRANSITIONS, SWEPT_STATUSES, type RollbackStep } from "../../lib/inventory-rules";

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

describe("rollbackSteps: what is left of one line after a crash", () => {
	test.each<[boolean, boolean, boolean, RollbackStep[], string]>([
		// held, take row, put-back row → steps
		[false, false, false, [], "never taken (or fenced): nothing to do"],
		[true, false, false, ["recordTake", "putBack", "recordPutBack"], "died right after the decrement"],
		[true, true, false, ["putBack", "recordPutBack"], "taken and recorded, not given back"],
		[false, true, false, ["recordPutBack"], "given back, died before the release row"],
		[false, true, true, [], "rolled back completely"],
		// Not reachable through the service (a release row follows a put-back, which follows the take row); still made whole.
		[false, false, true, ["recordTake"], "release row without its take row"],
		[true, true, true, ["putBack"], "a hold next to both rows"],
	])("held %s, take row %s, put-back row %s → %j (%s)", (held, takeRow, putBackRow, steps) => {
		expect(rollbackSteps({ held, takeRow, putBackRow })).toEqual(steps);
	});

	test("after the steps, the line's rows net to zero: both or neither", () => {
		for (const held of [false, true])
			for (const takeRow of [false, true])
				for (const putBackRow of [false, true]) {
					const steps = rollbackSteps({ held, takeRow, putBackRow });
					const take = takeRow || steps.includes("recordTake");
					const back = putBackRow || steps.includes("recordPutBack") || steps.includes("putBack");
					expect(take).toBe(back);
				}
	});
});

describe("sweeping stale reservations", () => {
	test.each([
		["pending", "released", "rollback"],
		["cancelling", "released", "rollback"],
		["released", "released", "rollback"],
		["committed", "committed", "settle"],
		["returned", "returned", "settle"],
	] as const)("%s → %s (%s)", (from, to, work) => {
		expect(SWEEP_TRANSITIONS[from]).toMatchObject({ to, work });
	});

	test("an order waiting for its payment is never swept; a sold one never gives its stock back", () => {
		expect(SWEPT_STATUSES).not.toContain("reserved");
		expect(SWEEP_TRANSITIONS.reserved).toBeUndefined();
		expect(SWEEP_TRANSITIONS.committed!.work).toBe("settle");
	});

	test("a reservation the sweeper rolls back ends released", () => {
		for (const t of Object.values(SWEEP_TRANSITIONS)) if (t!.work === "rollback") expect(RELEASED_STATES.has(t!.to)).toBe(true);
		expect(SWEEP_TRANSITIONS.pending!.reason).toBe("expired");
	});
});

describe("hold fields and movement keys", () => {
	test("one hold per reservation on a variant; one key per reservation, variant and movement", () => {
		expect(holdField("r1")).toBe("holds.r1");
		expect(movementKey("r1", "v1", "reservation")).toBe("r1:v1:reservation");
		expect(movementKey("r1", "v1", "release")).not.toBe(movementKey("r1", "v1", "reservation"));
	});
});
