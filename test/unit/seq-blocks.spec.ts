import { SeqBlocks } from "../../lib/seq-blocks";

/** A persisted counter as the outbox keeps it: an atomic increment returning the new value. */
function counter(start = 0) {
	const c = { value: start, writes: 0, reserve: async (n: number) => ((c.writes++, (c.value += n))) };
	return c;
}

describe("SeqBlocks", () => {
	test("numbers run on within a block: one counter write per block", async () => {
		const c = counter();
		const seqs = new SeqBlocks(c.reserve, 3);
		expect([await seqs.take(1), await seqs.take(1), await seqs.take(1)]).toEqual([1, 2, 3]);
		expect(c.writes).toBe(1);
		expect(await seqs.take(1)).toBe(4);
		expect(c.writes).toBe(2);
	});

	test("several at once stay consecutive; more than a block reserves exactly what is asked", async () => {
		const c = counter();
		const seqs = new SeqBlocks(c.reserve, 4);
		expect(await seqs.take(3)).toBe(1);
		// 2 more do not fit in 1..4: a new block, numbers 5 and 6.
		expect(await seqs.take(2)).toBe(5);
		expect(await seqs.take(10)).toBe(9);
		expect(c.value).toBe(18);
		expect(await seqs.take(1)).toBe(19);
	});

	test("after a restart numbers continue above everything reserved before: gaps, never repeats", async () => {
		const c = counter();
		const before = new SeqBlocks(c.reserve, 100);
		const handed = [await before.take(1), await before.take(2)];
		const after = new SeqBlocks(c.reserve, 100);
		const next = await after.take(1);
		expect(next).toBe(101);
		expect(next).toBeGreaterThan(Math.max(...handed) + 1);
	});

	test("a block of one is a counter write per call, as without blocks", async () => {
		const c = counter(41);
		const seqs = new SeqBlocks(c.reserve, 1);
		expect([await seqs.take(1), await seqs.take(2), await seqs.take(1)]).toEqual([42, 43, 45]);
		expect(c.writes).toBe(3);
	});

	test("a failed reservation hands out nothing and the next call tries again", async () => {
		const c = counter();
		let fail = true;
		const seqs = new SeqBlocks(async (n) => {
			if (fail) throw new Error("store down");
			return c.reserve(n);
		}, 10);
		await expect(seqs.take(1)).rejects.toThrow("store down");
		fail = false;
		expect(await seqs.take(1)).toBe(1);
	});

	test("the block size must be a positive integer", () => {
		expect(() => new SeqBlocks(async () => 0, 0)).toThrow(RangeError);
	});
});
