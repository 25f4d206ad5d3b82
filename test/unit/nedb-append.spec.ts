/** NeDB files written through one open descriptor: every write is in the file, also across compaction. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Collection } from "../../mixins/collection";

const spec = { fields: { sku: String, stock: Number }, indexes: [{ fields: { sku: 1 as const }, unique: true }] };

describe("NeDB appends through an open file", () => {
	let dir: string;
	beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "nedb-append-"))));
	afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

	/** What another process would load from the file now, without this one closing anything. */
	async function reloaded() {
		const copy = fs.mkdtempSync(path.join(os.tmpdir(), "nedb-copy-"));
		fs.copyFileSync(path.join(dir, "items.db"), path.join(copy, "items.db"));
		const other = new Collection("items", spec, { dataDir: copy });
		await other.connect();
		const docs = await other.find({}, { sort: { sku: 1 } });
		await other.disconnect();
		fs.rmSync(copy, { recursive: true, force: true });
		return docs.map((d) => `${d.sku}:${d.stock}`);
	}

	test("inserts, updates and removals are on disk as soon as they return", async () => {
		const items = new Collection("items", spec, { dataDir: dir });
		await items.connect();
		const a = await items.insert({ sku: "A", stock: 5 });
		await items.insertMany([{ sku: "B", stock: 1 }, { sku: "C", stock: 2 }]);
		await items.updateOne({ id: a.id, stock: { $gte: 2 } }, { $inc: { stock: -2 } });
		await items.removeOne({ sku: "C" });
		expect(await reloaded()).toEqual(["A:3", "B:1"]);
		await items.disconnect();
	});

	test("writes after a compaction go to the new file, not the replaced one", async () => {
		const items = new Collection("items", spec, { dataDir: dir });
		await items.connect();
		await items.insert({ sku: "A", stock: 1 });
		const db = (items.backend as any).db;
		await db.compactDatafileAsync();
		await items.insert({ sku: "B", stock: 2 });
		await db.compactDatafileAsync();
		await items.updateOne({ sku: "A" }, { $set: { stock: 7 } });
		expect(await reloaded()).toEqual(["A:7", "B:2"]);
		await items.disconnect();
		const again = new Collection("items", spec, { dataDir: dir });
		await again.connect();
		expect((await again.find({}, { sort: { sku: 1 } })).map((d) => `${d.sku}:${d.stock}`)).toEqual(["A:7", "B:2"]);
		await again.disconnect();
	});
});
