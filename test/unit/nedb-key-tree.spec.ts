/** The sorted-leaf key tree answers every index operation exactly as NeDB's AVL tree does. */
import { KeyTree, LEAF_SIZE } from "../../mixins/nedb-key-tree";
import { compareIndexKeys } from "../../mixins/nedb-index-compare";
import { Collection } from "../../mixins/collection";
import { seededRandom } from "../../lib/demo-catalog";

const { AVLTree } = require("@seald-io/binary-search-tree");

const equal = (a: unknown, b: unknown) => a === b;
const options = (unique: boolean) => ({ unique, compareKeys: compareIndexKeys, checkValueEquality: equal });

const day = (d: number) => new Date(Date.UTC(2026, 10, 1) + d * 86_400_000);
/** Keys of every kind an index meets, drawn from a small space so that keys repeat. */
const keyMakers: Array<(n: number) => unknown> = [
	(n) => `k${n}`,
	(n) => n,
	(n) => day(n),
	(n) => ({ orderId: `o${n % 7}`, seq: n }),
	(n) => (n % 3 === 0 ? null : n % 3 === 1),
	() => undefined,
];

function contents(tree: { executeOnEveryNode(fn: (n: { key: unknown; data: unknown[] }) => void): void }) {
	const out: Array<[unknown, unknown[]]> = [];
	// NeDB's empty tree is a root node without a key (its getAll adds nothing for it).
	tree.executeOnEveryNode((n) => Object.hasOwn(n, "key") && out.push([n.key, [...n.data]]));
	return out;
}

/** Runs the same random operations on both trees; every `orderEvery` operations their whole contents (which put waiting string keys in order) are compared. */
function compareRuns(seed: number, unique: boolean, ops: number, keySpace: number, orderEvery = 50) {
	const next = seededRandom(seed);
	const avl = new AVLTree(options(unique));
	const ours = new KeyTree(options(unique));
	const values = Array.from({ length: 40 }, (_, i) => ({ v: i }));
	const pickKey = () => keyMakers[Math.floor(next() * keyMakers.length)](Math.floor(next() * keySpace));
	const attempt = (f: () => unknown) => {
		try {
			return { value: f() };
		} catch (e) {
			return { error: (e as Error).message, errorType: (e as { errorType?: string }).errorType, key: (e as { key?: unknown }).key };
		}
	};
	for (let i = 0; i < ops; i++) {
		const key = pickKey();
		const value = values[Math.floor(next() * values.length)];
		const r = next();
		if (r < 0.45) expect(attempt(() => ours.insert(key, value))).toEqual(attempt(() => avl.insert(key, value)));
		else if (r < 0.6) {
			ours.delete(key, value);
			avl.delete(key, value);
		} else if (r < 0.65) {
			ours.delete(key);
			avl.delete(key);
		} else if (r < 0.85) expect(ours.search(key)).toEqual(avl.search(key));
		else {
			const other = pickKey();
			if (orderEvery > 50) continue;
			const ops2 = ["$gt", "$gte", "$lt", "$lte"].filter(() => next() < 0.5);
			const query: Record<string, unknown> = {};
			for (const op of ops2) query[op] = op.startsWith("$g") ? key : other;
			expect(ours.betweenBounds(query)).toEqual(avl.betweenBounds(query));
		}
		if (i % orderEvery === 0) {
			expect(ours.getNumberOfKeys()).toBe(avl.getNumberOfKeys());
			expect(contents(ours)).toEqual(contents(avl.tree));
		}
	}
	expect(contents(ours)).toEqual(contents(avl.tree));
	expect(ours.getNumberOfKeys()).toBe(avl.getNumberOfKeys());
}

describe("KeyTree against NeDB's AVL tree", () => {
	test.each([1, 2, 3, 4, 5])("random operations, non-unique, many keys per leaf (seed %i)", (seed) => compareRuns(seed, false, 3000, 400));
	test.each([6, 7, 8])("random operations, unique, many keys per leaf (seed %i)", (seed) => compareRuns(seed, true, 3000, 400));
	test.each([9, 10])("random operations over few keys (seed %i)", (seed) => compareRuns(seed, false, 2000, 4));
	// Ranges and full scans rarely: hundreds of string keys wait, and are merged into the leaves at once.
	test.each([11, 12])("random operations, order read rarely, non-unique (seed %i)", (seed) => compareRuns(seed, false, 8000, 3000, 2000));
	test.each([13, 14])("random operations, order read rarely, unique (seed %i)", (seed) => compareRuns(seed, true, 8000, 3000, 2000));
});

describe("KeyTree", () => {
	test("keys in order fill each leaf, and lookups find every one after splits and removals", () => {
		const tree = new KeyTree(options(true));
		const n = LEAF_SIZE * 20 + 7;
		for (let i = 0; i < n; i++) tree.insert(day(i), { i });
		expect((tree as unknown as { leaves: unknown[] }).leaves).toHaveLength(Math.ceil(n / LEAF_SIZE));
		for (let i = 0; i < n; i += 2) tree.delete(day(i));
		expect(tree.getNumberOfKeys()).toBe(Math.floor(n / 2));
		for (let i = 0; i < n; i++) expect(tree.search(day(i))).toEqual(i % 2 ? [{ i }] : []);
		expect(tree.betweenBounds({ $gte: day(100), $lt: day(106) })).toEqual([{ i: 101 }, { i: 103 }, { i: 105 }]);
		// Emptied leaves go.
		for (let i = 1; i < n; i += 2) tree.delete(day(i));
		expect(tree.getNumberOfKeys()).toBe(0);
		expect((tree as unknown as { leaves: unknown[] }).leaves).toHaveLength(0);
		expect(tree.betweenBounds({})).toEqual([]);
	});

	test("search hands out the key's own list; removing a value makes a new one", () => {
		const tree = new KeyTree(options(false));
		const a = { id: "a" };
		const b = { id: "b" };
		tree.insert("pending", a);
		tree.insert("pending", b);
		const list = tree.search("pending");
		expect(tree.search("pending")).toBe(list);
		tree.delete("pending", a);
		expect(list).toEqual([a, b]);
		expect(tree.search("pending")).toEqual([b]);
	});

	test("a unique key taken throws NeDB's uniqueViolated error", () => {
		const tree = new KeyTree(options(true));
		tree.insert("SH-1", { n: 1 });
		expect(() => tree.insert("SH-1", { n: 2 })).toThrow(expect.objectContaining({ errorType: "uniqueViolated", key: "SH-1" }));
		expect(tree.search("SH-1")).toEqual([{ n: 1 }]);
	});
});

describe("collections use it", () => {
	test("a whole collection indexed at once is put in order then, not by the first full scan", () => {
		const Index = require("@seald-io/nedb/lib/indexes");
		const index = new Index({ fieldName: "_id", unique: true });
		const docs = Array.from({ length: 5000 }, (_, i) => ({ _id: `id${(i * 7919) % 5000}` }));
		index.reset(docs);
		const waiting = (t: unknown) => (t as { unplaced: Set<string> }).unplaced.size;
		expect(index.tree).toBeInstanceOf(KeyTree);
		expect(waiting(index.tree)).toBe(0);
		expect(index.getAll().map((d: { _id: string }) => d._id)).toEqual(docs.map((d) => d._id).sort());
		// Later inserts wait for the next operation that needs the order.
		index.insert({ _id: "zz" });
		expect(waiting(index.tree)).toBe(1);
		expect(index.getBetweenBounds({ $gt: "zy" })).toEqual([{ _id: "zz" }]);
		expect(waiting(index.tree)).toBe(0);
	});

	test("every index of a collection is a KeyTree, and queries, ranges and unique checks go through it", async () => {
		const orders = new Collection("orders_kt", { fields: {}, indexes: [{ fields: { number: 1 }, unique: true }, { fields: { createdAt: 1 } }, { fields: { userId: 1, createdAt: -1 } }] }, {});
		await orders.connect();
		const db = (orders.backend as any).db;
		expect(Object.keys(db.indexes)).toHaveLength(4);
		for (const index of Object.values(db.indexes)) expect((index as { tree: unknown }).tree).toBeInstanceOf(KeyTree);
		await orders.insertMany(Array.from({ length: 300 }, (_, i) => ({ number: `SH-${i}`, userId: `u${i % 3}`, createdAt: day(i) })));
		expect((await orders.find({ number: "SH-42" })).map((o) => o.userId)).toEqual(["u0"]);
		expect(await orders.count({ createdAt: { $gte: day(10), $lt: day(20) } })).toBe(10);
		expect((await orders.find({ userId: "u1", createdAt: { $gt: day(290) } })).map((o) => o.number).sort()).toEqual(["SH-292", "SH-295", "SH-298"]);
		await expect(orders.insert({ number: "SH-7", userId: "u9", createdAt: day(1) })).rejects.toMatchObject({ type: "DUPLICATE" });
		expect(await orders.count({})).toBe(300);
		await orders.disconnect();
	});
});
