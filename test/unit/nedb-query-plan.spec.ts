/** mixins/nedb-query-plan.ts: NeDB's candidates come from the equality index holding the fewest documents. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Collection, type CollectionSpec } from "../../mixins/collection";

const spec: CollectionSpec = {
	fields: { status: String, state: String, kind: String, at: Date },
	indexes: [{ fields: { status: 1 } }, { fields: { state: 1 } }, { fields: { at: 1 } }],
};

describe("candidates of a NeDB query", () => {
	let dir: string;
	let orders: Collection;
	let db: any;
	beforeAll(async () => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "nedb-plan-"));
		orders = new Collection("orders", spec, { dataDir: dir });
		await orders.connect();
		const docs = Array.from({ length: 1000 }, (_, i) => ({ status: i < 3 ? "pending" : "confirmed", state: "completed", kind: i % 2 ? "a" : "b", at: new Date(1_700_000_000_000 + i * 1000) }));
		await orders.insertMany(docs);
		db = (orders.backend as any).db;
	});
	afterAll(async () => {
		await orders.disconnect();
		fs.rmSync(dir, { recursive: true, force: true });
	});

	test("the equality index with the fewest documents for its value, whatever the order of the query's fields", () => {
		// NeDB took the last indexed field: `state`, all 1,000 completed orders.
		expect(db._getRawCandidates({ status: "pending", state: "completed" })).toHaveLength(3);
		expect(db._getRawCandidates({ state: "completed", status: "pending" })).toHaveLength(3);
		expect(db._getRawCandidates({ state: "completed", status: "gone" })).toHaveLength(0);
		// Unindexed fields and operators are not equality lookups.
		expect(db._getRawCandidates({ kind: "a", state: "completed", status: { $ne: "confirmed" } })).toHaveLength(1000);
	});

	test("without an equality on an indexed field, NeDB's own way: a range through its index, else everything", () => {
		expect(db._getRawCandidates({ at: { $lt: new Date(1_700_000_000_000 + 10_000) } })).toHaveLength(10);
		expect(db._getRawCandidates({ kind: "a" })).toHaveLength(1000);
	});

	test("answers are those of a full scan", async () => {
		const queries = [
			{ status: "pending", state: "completed" },
			{ status: "pending", kind: "a" },
			{ state: "completed", at: { $gte: new Date(1_700_000_000_000 + 990_000) } },
			{ status: "confirmed", state: "other" },
		];
		for (const query of queries) {
			const found = (await orders.find(query, {})).map((d) => d.id).sort();
			const scanned = db
				.getAllData()
				.filter((d: any) => Object.entries(query).every(([k, v]) => (v && typeof v === "object" && "$gte" in v ? d[k] >= (v as any).$gte : d[k] === v)))
				.map((d: any) => d._id)
				.sort();
			expect({ query, found }).toEqual({ query, found: scanned });
		}
	});

	test("a field named like an object's own members is no index (before: a TypeError, a 500)", async () => {
		for (const field of ["constructor", "toString", "hasOwnProperty", "valueOf"]) {
			await expect(orders.find(JSON.parse(`{"${field}": "x"}`), {})).resolves.toEqual([]);
		}
	});

	test("a sparse index (NeDB's leave Dates out) and a dotted one are not taken: a matching document is never missed", async () => {
		const dir2 = fs.mkdtempSync(path.join(os.tmpdir(), "nedb-plan-sparse-"));
		const docs = new Collection("docs", { fields: { f: Date, other: Number, "a.b": String }, indexes: [{ fields: { f: 1 }, sparse: true }, { fields: { other: 1 } }, { fields: { "a.b": 1 } }] }, { dataDir: dir2 });
		await docs.connect();
		const at = new Date(1_700_000_000_000);
		await docs.insertMany([{ f: at, other: 1, a: [{ b: ["x", "y"] }] }, { other: 1 }, { other: 2 }]);
		expect(await docs.count({ f: at, other: 1 })).toBe(1);
		expect(await docs.count({ "a.b": "x", other: 1 })).toBe(1);
		await docs.disconnect();
		fs.rmSync(dir2, { recursive: true, force: true });
	});
});
