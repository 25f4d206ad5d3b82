/** NeDB index upkeep when an update keeps a document's keys: every index still finds its new version. */
import { Collection, type CollectionSpec } from "../../mixins/collection";
import { indexKeyOf } from "../../mixins/nedb-index-update";

const spec: CollectionSpec = {
	fields: {},
	indexes: [
		{ fields: { number: 1 }, unique: true },
		{ fields: { userId: 1, createdAt: -1 } },
		{ fields: { status: 1 } },
		{ fields: { coupon: 1 }, sparse: true },
		{ fields: { tags: 1 } },
	],
};

describe("NeDB index updates that keep keys", () => {
	let orders: Collection;
	const at = new Date("2026-11-28T00:00:00Z");
	beforeEach(async () => {
		orders = new Collection("orders", spec, {});
		await orders.connect();
		await orders.insertMany(
			Array.from({ length: 30 }, (_, i) => ({ id: `o${i}`, number: `N${i}`, userId: `u${i % 3}`, createdAt: at, status: i % 2 ? "paid" : "pending", tags: ["a", `t${i}`], seq: 0 })),
		);
	});

	/** The order as each index finds it. */
	const viaEveryIndex = async (id: string, o: { number: string; userId: string; status: string; tags: string[] }) =>
		[
			await orders.findOne({ number: o.number }),
			(await orders.find({ userId: o.userId, createdAt: at })).find((d) => d.id === id),
			(await orders.find({ status: o.status })).find((d) => d.id === id),
			(await orders.find({ tags: o.tags[1] })).find((d) => d.id === id),
			await orders.findById(id),
		].map((d) => d?.seq);

	test("an update of unindexed fields shows through every index", async () => {
		await orders.updateOne({ id: "o4" }, { $inc: { seq: 1 } });
		await orders.updateMany({ status: "paid" }, { $inc: { seq: 5 } });
		expect(await viaEveryIndex("o4", { number: "N4", userId: "u1", status: "pending", tags: ["a", "t4"] })).toEqual([1, 1, 1, 1, 1]);
		expect(await viaEveryIndex("o5", { number: "N5", userId: "u2", status: "paid", tags: ["a", "t5"] })).toEqual([5, 5, 5, 5, 5]);
		expect(await orders.count({ status: "paid", seq: 5 })).toBe(15);
	});

	test("a changed key moves the document; a unique clash is refused and changes nothing", async () => {
		await orders.updateOne({ id: "o4" }, { $set: { status: "paid", seq: 2 } });
		expect((await orders.find({ status: "pending" })).map((d) => d.id)).not.toContain("o4");
		expect(await viaEveryIndex("o4", { number: "N4", userId: "u1", status: "paid", tags: ["a", "t4"] })).toEqual([2, 2, 2, 2, 2]);

		await expect(orders.updateOne({ id: "o4" }, { $set: { number: "N5", seq: 3 } })).rejects.toMatchObject({ code: 409 });
		expect(await viaEveryIndex("o4", { number: "N4", userId: "u1", status: "paid", tags: ["a", "t4"] })).toEqual([2, 2, 2, 2, 2]);
		expect((await orders.findOne({ number: "N5" }))!.id).toBe("o5");
	});

	test("sparse and array-valued keys: absent stays absent, added is found, changed arrays move", async () => {
		await orders.updateOne({ id: "o1" }, { $inc: { seq: 1 } });
		expect(await orders.find({ coupon: { $exists: true } })).toEqual([]);
		await orders.updateOne({ id: "o1" }, { $set: { coupon: "SPRING" } });
		await orders.updateOne({ id: "o1" }, { $inc: { seq: 1 } });
		expect((await orders.find({ coupon: "SPRING" })).map((d) => [d.id, d.seq])).toEqual([["o1", 2]]);

		await orders.updateOne({ id: "o2" }, { $set: { tags: ["b", "t2"] } });
		expect((await orders.find({ tags: "a" })).map((d) => d.id)).not.toContain("o2");
		expect((await orders.find({ tags: "b" })).map((d) => d.id)).toEqual(["o2"]);
	});
});

describe("a sparse index on a Date field", () => {
	const ttl: CollectionSpec = { fields: {}, indexes: [{ fields: { purgeAt: 1 }, expireAfterSeconds: 0, sparse: true }] };
	const later = new Date(Date.now() + 86_400_000);

	test("holds the documents that have a Date there, and only those: a range query through it finds them", async () => {
		const c = new Collection("messages", ttl, {});
		await c.connect();
		await c.insertMany([{ id: "kept" }, { id: "dated", purgeAt: later }]);
		// Before: NeDB took a Date (no own values) for a missing key and indexed nothing.
		expect((await c.find({ purgeAt: { $gt: new Date(0) } })).map((d) => d.id)).toEqual(["dated"]);
		expect((await c.find({ purgeAt: later })).map((d) => d.id)).toEqual(["dated"]);
		// Dated by an update, undated by another: the index follows.
		await c.updateOne({ id: "kept" }, { $set: { purgeAt: later } });
		await c.updateOne({ id: "dated" }, { $unset: { purgeAt: true } });
		expect((await c.find({ purgeAt: { $gt: new Date(0) } })).map((d) => d.id)).toEqual(["kept"]);
		// Its time comes: left out of every read.
		await c.updateOne({ id: "kept" }, { $set: { purgeAt: new Date(Date.now() - 1000) } });
		expect(await c.count({})).toBe(1);
		expect(await c.findById("kept")).toBeNull();
	});
});

describe("index keys read from documents", () => {
	const nedbModel = jest.requireActual("@seald-io/nedb/lib/model");
	// The function NeDB had before the collection module replaced it: the same reads, through dots.
	const theirs = (doc: unknown, fields: string[]) => (fields.length > 1 ? Object.fromEntries(fields.map((f) => [f, nedbModel.getDotValue(doc, f)])) : nedbModel.getDotValue(doc, fields[0]));
	const docs: unknown[] = [
		{ status: "paid", at: new Date(5), n: 0, a: { b: [1, 2], c: null }, list: [{ x: 1 }, { x: 2 }], "": "empty" },
		{ status: null, n: -1 },
		{},
		null,
		undefined,
		0,
		"text",
	];
	const fieldLists = [["status"], ["n"], ["missing"], ["a.b"], ["a.c"], ["list.x"], ["list.1.x"], [""], ["status", "at"], ["status", "a.b", "n"]];
	test.each(fieldLists)("%s: the same key as NeDB's getDotValues", (...fields) => {
		for (const doc of docs) expect(indexKeyOf(doc, fields)).toEqual(theirs(doc, fields));
	});
	test("a field list that is not an array is refused as NeDB's is", () => {
		expect(() => indexKeyOf({}, "status" as unknown as string[])).toThrow("fields must be an Array");
	});
});
