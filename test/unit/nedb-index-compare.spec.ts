/** The faster index-key comparison orders every kind of key exactly as NeDB's compareThings does. */
import { compareIndexKeys } from "../../mixins/nedb-index-compare";
import { Collection } from "../../mixins/collection";

// The original, from a fresh copy of NeDB's module, so the installed replacement cannot stand in for it.
let original!: (a: unknown, b: unknown, s?: (a: string, b: string) => number) => number;
jest.isolateModules(() => {
	original = require("@seald-io/nedb/lib/model").compareThings;
});

const day = (d: number) => new Date(Date.UTC(2026, 10, d));
const keys: unknown[] = [
	undefined, null, 0, -1, 2.5, "", "a", "b", "ab", "B", true, false, day(1), day(2), new Date(NaN), NaN, Infinity,
	[], [1], [1, 2], ["a"], {},
	{ orderId: "o1", seq: 1 }, { orderId: "o1", seq: 2 }, { orderId: "o2", seq: 1 }, { seq: 1, orderId: "o1" },
	{ bucket: "2026-11-28T05", metric: "funnel", key: "paid" }, { bucket: "2026-11-28T05", metric: "orders", key: "paid" },
	{ status: "queued", nextAttemptAt: day(1) }, { status: "queued", nextAttemptAt: day(2) }, { status: "sent", nextAttemptAt: undefined },
	{ userId: "u1", createdAt: day(1), extra: 1 }, { userId: "u1", createdAt: day(1) }, { a: { b: 1 } }, { a: { b: 2 } }, { a: [1] },
];

const sign = (n: number) => Math.sign(n);

test("every pair of keys compares as NeDB compares it", () => {
	expect(original).not.toBe(compareIndexKeys);
	const differences: string[] = [];
	for (const a of keys) {
		for (const b of keys) {
			if (sign(compareIndexKeys(a, b)) !== sign(original(a, b))) differences.push(`${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
		}
	}
	expect(differences).toEqual([]);
});

test("a custom string comparison is still honoured", () => {
	const reversed = (a: string, b: string) => (a < b ? 1 : a > b ? -1 : 0);
	expect(compareIndexKeys("a", "b", reversed)).toBe(original("a", "b", reversed));
});

test("collections use it: a compound index still finds and orders its documents", async () => {
	const events = new Collection("events", { fields: {}, indexes: [{ fields: { orderId: 1, seq: 1 }, unique: true }] }, {});
	await events.connect();
	await events.insertMany(Array.from({ length: 50 }, (_, i) => ({ orderId: `o${i % 5}`, seq: Math.floor(i / 5) })));
	const index = (events.backend as any).db.indexes["orderId,seq"];
	expect(index.tree.compareKeys).toBe(compareIndexKeys);
	expect((await events.find({ orderId: "o3", seq: 7 })).map((e) => e.seq)).toEqual([7]);
	await expect(events.insert({ orderId: "o3", seq: 7 })).rejects.toMatchObject({ type: "DUPLICATE" });
	await events.disconnect();
});

test("the names kept on a key stay invisible: its JSON, keys and NeDB's copy are unchanged", () => {
	const model = require("@seald-io/nedb/lib/model");
	const a = { userId: "u1", createdAt: new Date(1), nested: { b: 1, a: 2 } };
	const b = { userId: "u1", createdAt: new Date(2), nested: { b: 1, a: 2 } };
	const json = JSON.stringify(a);
	expect(compareIndexKeys(a, b)).toBe(-1);
	expect(JSON.stringify(a)).toBe(json);
	expect(Object.keys(a)).toEqual(["userId", "createdAt", "nested"]);
	expect(Object.getOwnPropertySymbols(model.deepCopy(a))).toEqual([]);
	expect(JSON.stringify(model.deepCopy(a))).toBe(json);
});
