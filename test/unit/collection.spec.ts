/** The collection wrapper on NeDB (in memory): ids, unique indexes, atomic conditional updates. */
import { Collection, buildMongooseSchema, newId, sharedMongoConnection } from "../../mixins/collection";

describe("Collection (NeDB)", () => {
	let items: Collection;
	beforeEach(async () => {
		items = new Collection("items", { fields: { sku: { type: String, required: true }, stock: Number }, indexes: [{ fields: { sku: 1 }, unique: true }] }, {});
		await items.connect();
	});

	test("entities carry id, never _id, and queries by id work", async () => {
		const a = await items.insert({ sku: "A", stock: 3 });
		expect(a.id).toEqual(expect.any(String));
		expect(a).not.toHaveProperty("_id");
		expect(await items.findById(a.id)).toEqual(a);
		expect(await items.find({ id: { $in: [a.id] } })).toEqual([a]);
	});

	test("a unique index violation is a 409 ConflictError", async () => {
		await items.insert({ sku: "A", stock: 1 });
		await expect(items.insert({ sku: "A", stock: 2 })).rejects.toMatchObject({ code: 409, type: "DUPLICATE" });
	});

	test("conditional update never lets stock go negative under concurrency", async () => {
		const a = await items.insert({ sku: "A", stock: 10 });
		const results = await Promise.all(
			Array.from({ length: 50 }, () => items.updateOne({ id: a.id, stock: { $gte: 1 } }, { $inc: { stock: -1 } })),
		);
		expect(results.filter(Boolean)).toHaveLength(10);
		expect((await items.findById(a.id))!.stock).toBe(0);
	});

	test("sort, offset and limit page through results", async () => {
		await items.insertMany([3, 1, 2].map((n) => ({ sku: `S${n}`, stock: n })));
		const page = await items.find({}, { sort: { stock: -1 }, offset: 1, limit: 1 });
		expect(page.map((p) => p.stock)).toEqual([2]);
		expect(await items.count({ stock: { $gt: 1 } })).toBe(2);
	});

	test("the mongoose schema declares the same indexes, with only the options set (MongoDB refuses a null one)", () => {
		const schema = buildMongooseSchema({ fields: { sku: String }, indexes: [{ fields: { sku: 1 }, unique: true }, { fields: { at: 1 }, expireAfterSeconds: 60 }] });
		expect(schema.indexes()).toEqual([
			[{ sku: 1 }, expect.objectContaining({ unique: true })],
			[{ at: 1 }, expect.objectContaining({ expireAfterSeconds: 60 })],
		]);
		for (const [, options] of schema.indexes()) expect(Object.values(options).filter((v) => v === undefined || v === null)).toEqual([]);
		expect(schema.indexes()[0][1]).not.toHaveProperty("sparse");
		expect(schema.indexes()[0][1]).not.toHaveProperty("expireAfterSeconds");
		expect(schema.path("_id").instance).toBe("String");
	});

	test("on MongoDB a filter keeps its conditions on fields the schema does not declare, though the adapter turns strictQuery on", () => {
		// What MongoBackend.connect loads: the adapter sets mongoose's strictQuery globally.
		require("moleculer-db-adapter-mongoose");
		const mongoose = require("mongoose");
		const model = mongoose.model(`guarded_${Date.now()}`, buildMongooseSchema({ fields: { status: String } }));
		const filter = { _id: "o1", status: "pending", "saga.state": "running", followUpLease: null, "refunds.r1": { $exists: false } };
		const query = model.find(filter);
		query.cast(model);
		expect(query.getFilter()).toEqual(filter);
	});

	test("the shared MongoDB connection is closed by the last collection to let go, not the first", async () => {
		const closed: string[] = [];
		sharedMongoConnection.acquire();
		sharedMongoConnection.acquire();
		await sharedMongoConnection.release(async () => closed.push("first"));
		expect(closed).toEqual([]);
		await sharedMongoConnection.release(async () => closed.push("last"));
		expect(closed).toEqual(["last"]);
	});
});

test("new ids: 16 base64url characters, distinct, never starting with '-' (a command line takes that for an option)", () => {
	const ids = Array.from({ length: 20_000 }, newId);
	expect(new Set(ids).size).toBe(ids.length);
	for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{15}$/);
	// Every other character still takes all 64 values.
	expect(new Set(ids.map((id) => id[1])).size).toBe(64);
});
