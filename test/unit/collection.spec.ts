/** The collection wrapper on NeDB (in memory): ids, unique indexes, atomic conditional updates. */
import { Collection, buildMongooseSchema } from "../../mixins/collection";

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

	test("the mongoose schema declares the same indexes", () => {
		const schema = buildMongooseSchema({ fields: { sku: String }, indexes: [{ fields: { sku: 1 }, unique: true }] });
		expect(schema.indexes()).toEqual([[{ sku: 1 }, expect.objectContaining({ unique: true })]]);
		expect(schema.path("_id").instance).toBe("String");
	});
});
