/** NeDB files: appended through one open descriptor, loaded without a rewrite, rewritten once grown. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Collection, type CollectionSpec } from "../../mixins/collection";
import { parseDatafile, rewrittenLines, serializeDocument } from "../../mixins/nedb-datafile";
import { catchOpsLog } from "../helpers/ops-log";

const nedbModel = require("@seald-io/nedb/lib/model");

const spec = { fields: { sku: String, stock: Number }, indexes: [{ fields: { sku: 1 as const }, unique: true }] };

describe("NeDB appends through an open file", () => {
	let dir: string;
	beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "nedb-datafile-"))));
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

	const lines = () => fs.readFileSync(path.join(dir, "items.db"), "utf8").split("\n").filter(Boolean);

	test("a rewrite writes the same lines NeDB's own rewrite writes: documents, then index definitions", async () => {
		const model = require("@seald-io/nedb/lib/model");
		const items = new Collection("items", { fields: {}, indexes: [{ fields: { sku: 1 }, unique: true }, { fields: { at: 1 }, sparse: true }] }, { dataDir: dir });
		await items.connect();
		await items.insertMany([{ sku: "A", at: new Date(5), nested: { when: new Date(6), list: [1, "x", null] } }, { sku: "B", note: "é\n\"q\"" }]);
		const db = (items.backend as any).db;
		const expected = [
			...db.getAllData().map((d: unknown) => model.serialize(d)),
			...Object.keys(db.indexes).filter((f) => f !== "_id").map((f) => model.serialize({ $$indexCreated: { fieldName: db.indexes[f].fieldName, unique: db.indexes[f].unique, sparse: db.indexes[f].sparse } })),
		];
		await db.compactDatafileAsync();
		expect(lines()).toEqual(expected);
		await items.disconnect();
	});

	test("loading a cleanly ended file does not rewrite it; a torn last line is cut off", async () => {
		const file = path.join(dir, "items.db");
		const doc = (id: string, stock: number) => JSON.stringify({ _id: id, sku: id, stock });
		// Three versions of one document and others: the file as a running shop leaves it.
		const others = Array.from({ length: 20 }, (_, i) => doc(`z${i}`, i));
		fs.writeFileSync(file, [doc("a", 1), doc("a", 2), doc("a", 3), doc("b", 1), ...others].join("\n") + "\n");
		const items = new Collection("items", spec, { dataDir: dir });
		await items.connect();
		expect((await items.find({ sku: { $in: ["a", "b"] } }, { sort: { sku: 1 } })).map((d) => `${d.sku}:${d.stock}`)).toEqual(["a:3", "b:1"]);
		expect(lines().slice(0, 4)).toEqual([doc("a", 1), doc("a", 2), doc("a", 3), doc("b", 1)]);
		await items.disconnect();

		// A crash tore the last line: the load cuts it off, so the next append starts a clean line.
		fs.appendFileSync(file, '{"_id":"c","sku":"c","st');
		const warn = catchOpsLog().warn;
		const again = new Collection("items", spec, { dataDir: dir });
		await again.connect();
		expect(warn).toHaveBeenCalledWith(`${file}: dropped its last line (24 bytes), cut off by a crash or a full disk before it was complete, so never acknowledged.`);
		warn.mockRestore();
		await again.insert({ sku: "d", stock: 4 });
		expect((await reloaded()).filter((d) => !d.startsWith("z"))).toEqual(["a:3", "b:1", "d:4"]);
		expect(lines().every((l) => JSON.parse(l))).toBe(true);
		await again.disconnect();
	});

	test("the file is rewritten only once the appended lines outnumber the live documents (and 1000)", async () => {
		const items = new Collection("items", spec, { dataDir: dir });
		await items.connect();
		const a = await items.insert({ sku: "A", stock: 0 });
		// With the index line and the insert: 999 lines appended.
		for (let i = 0; i < 997; i++) await items.updateOne({ id: a.id }, { $inc: { stock: 1 } });
		const file = (items.backend as any).datafile;
		expect(await file.compactIfGrown()).toBe(false);
		await items.updateOne({ id: a.id }, { $inc: { stock: 1 } });
		const before = lines().length;
		expect(before).toBeGreaterThanOrEqual(1000);
		expect(await file.compactIfGrown()).toBe(true);
		expect(lines().filter((l) => !l.includes("$$indexCreated"))).toHaveLength(1);
		expect(await reloaded()).toEqual(["A:998"]);
		await items.disconnect();
	});

	test("a datafile reads as NeDB reads it: last version wins, deletions, index lines, dates, text", () => {
		const when = new Date("2026-11-28T01:02:03.004Z");
		const line = (doc: unknown) => nedbModel.serialize(doc);
		const raw = [
			line({ _id: "a", name: "first", createdAt: when }),
			line({ $$indexCreated: { fieldName: "sku", unique: true } }),
			line({ _id: "b", name: "Ünïcödé ✓", nested: { at: when, list: [when, { at: when }] } }),
			line({ _id: "a", name: "second", createdAt: when }),
			line({ _id: "c", name: "gone" }),
			line({ _id: "c", $$deleted: true }),
			line({ $$indexCreated: { fieldName: "old" } }),
			line({ $$indexRemoved: "old" }),
			"",
		].join("\n");
		const parsed = parseDatafile(raw, 0.1);
		expect(parsed.indexes).toEqual({ sku: { fieldName: "sku", unique: true } });
		expect(parsed.data).toEqual([
			{ _id: "a", name: "second", createdAt: when },
			{ _id: "b", name: "Ünïcödé ✓", nested: { at: when, list: [when, { at: when }] } },
		]);
		expect((parsed.data[1] as any).nested.list[1].at).toBeInstanceOf(Date);
		// The same documents as NeDB's own reader.
		for (const l of raw.split("\n").filter(Boolean).slice(0, 4)) expect(parseDatafile(l + "\n", 0).data).toEqual([nedbModel.deserialize(l)].filter((d) => d._id));
	});

	test("too many corrupt lines refuse to load, naming the file and the lines; a few are tolerated", () => {
		const good = Array.from({ length: 19 }, (_, i) => JSON.stringify({ _id: `d${i}` }));
		const few = parseDatafile([...good.slice(0, 10), '{"_id":"bro', ...good.slice(10)].join("\n"), 0.1);
		expect(few).toMatchObject({ lines: 20, corruptLines: [11], tornTail: false });
		expect(few.data).toHaveLength(19);
		expect(() => parseDatafile([...good.slice(0, 5), "garbage", good[5]].join("\n"), 0.1, "/srv/data/items.db")).toThrow(
			"14% of the lines of /srv/data/items.db are corrupt (lines 6), more than the 10% tolerated",
		);
	});

	test("a torn last line is dropped and never counts as corruption, however small the file", () => {
		const good = Array.from({ length: 5 }, (_, i) => JSON.stringify({ _id: `d${i}` }));
		const parsed = parseDatafile([...good, '{"_id":"torn'].join("\n"), 0.1);
		expect(parsed).toMatchObject({ lines: 5, corruptLines: [], tornTail: true });
		expect(parsed.data).toHaveLength(5);
		// Complete but without its line break: kept.
		expect(parseDatafile([...good, '{"_id":"last"}'].join("\n"), 0.1)).toMatchObject({ lines: 6, tornTail: false });
		expect(parseDatafile('{"_id":"only"', 0)).toMatchObject({ lines: 0, tornTail: true, data: [] });
	});

	test("a failed write's bytes followed on the same line by a complete one: the complete one is kept", () => {
		const line = (doc: unknown) => nedbModel.serialize(doc);
		const torn = line({ _id: "x", items: [{ sku: "A", at: new Date(1) }], note: "{\"_id\":\"fake\"}" }).slice(0, 40);
		const raw = [line({ _id: "a", n: 1 }), torn + line({ _id: "b", nested: { list: [{ k: 1 }] } }), torn + line({ $$deleted: true, _id: "a" }), ""].join("\n");
		const parsed = parseDatafile(raw, 0);
		expect(parsed).toMatchObject({ lines: 3, corruptLines: [], repairedLines: [2, 3] });
		expect(parsed.data).toEqual([{ _id: "b", nested: { list: [{ k: 1 }] } }]);
		// Only a whole datafile line is taken, not an object that happens to close at the line's end.
		expect(parseDatafile([line({ _id: "a" }), '{"_id":"y","address":{"city":"X"}', line({ _id: "b" })].join("\n"), 1).corruptLines).toEqual([2]);
	});

	test("a collection loading in the background answers only once loaded", async () => {
		fs.writeFileSync(path.join(dir, "items.db"), Array.from({ length: 500 }, (_, i) => JSON.stringify({ _id: `d${i}`, sku: `S${i}`, stock: i })).join("\n") + "\n");
		const items = new Collection("items", { ...spec, loadInBackground: true }, { dataDir: dir });
		await items.connect();
		// connect() did not wait for the file; the operations do.
		const [count, doc] = await Promise.all([items.count(), items.findOne({ sku: "S499" })]);
		expect(count).toBe(500);
		expect(doc).toMatchObject({ id: "d499", stock: 499 });
		await items.insert({ sku: "new", stock: 1 });
		await items.disconnect();
	});
});

describe("datafile lines", () => {
	test.each([
		["flat fields, null and undefined", { _id: "a", name: "Tee", price: 1999, active: true, note: null, gone: undefined }],
		["dates at any depth, an invalid one", { _id: "b", at: new Date("2026-11-28T05:00:00Z"), saga: { at: new Date(0), steps: [new Date(1), new Date(NaN), undefined, 2] } }],
		["nested arrays and objects, text that needs escaping", { _id: "c", items: [{ sku: "A-1", tags: ["x", 'quote " and \\ backslash', "ünï"] }], empty: {}, none: [] }],
		["a deletion", { _id: "d", $$deleted: true }],
	])("%s: the same bytes as NeDB's serialise", (_name, doc) => {
		expect(serializeDocument(doc)).toBe(nedbModel.serialize(doc));
	});

	test("Dates serialise as usual again afterwards, also after a failure", () => {
		serializeDocument({ at: new Date(0) });
		const cyclic: any = { at: new Date(0) };
		cyclic.self = cyclic;
		expect(() => serializeDocument(cyclic)).toThrow();
		expect(JSON.stringify({ at: new Date(0) })).toBe('{"at":"1970-01-01T00:00:00.000Z"}');
	});
});


describe("expired documents no read meets", () => {
	let dir: string;
	beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "nedb-expiry-"))));
	afterEach(() => {
		jest.useRealTimers();
		fs.rmSync(dir, { recursive: true, force: true });
	});
	// An outbox: read by sequence, kept for a minute by its TTL index on createdAt.
	const outboxSpec: CollectionSpec = { fields: { seq: Number, createdAt: Date }, indexes: [{ fields: { seq: 1 }, unique: true }, { fields: { createdAt: 1 }, expireAfterSeconds: 60 }] };
	const ago = (ms: number) => new Date(Date.now() - ms);

	test("are removed by the sweep, from memory and the file, through the TTL index; live ones and those without the field stay", async () => {
		const outbox = new Collection("outbox", outboxSpec, { dataDir: dir });
		await outbox.connect();
		await outbox.insertMany([{ seq: 1, createdAt: ago(120_000) }, { seq: 2, createdAt: ago(61_000) }, { seq: 3, createdAt: ago(1_000) }, { seq: 4 }]);
		// Reads by sequence never meet the old ones: before, they stayed for good.
		expect((await outbox.find({ seq: { $gt: 2 } }, { sort: { seq: 1 } })).map((d) => d.seq)).toEqual([3, 4]);
		const backend = outbox.backend as any;
		expect(backend.db.getAllData()).toHaveLength(4);

		expect(await backend.datafile.removeExpired()).toBe(2);
		expect(backend.db.getAllData().map((d: any) => d.seq).sort()).toEqual([3, 4]);
		const deleted = fs.readFileSync(path.join(dir, "outbox.db"), "utf8").split("\n").filter((l) => l.includes('"$$deleted"'));
		expect(deleted).toHaveLength(2);
		expect(await backend.datafile.removeExpired()).toBe(0);
		await outbox.disconnect();

		const again = new Collection("outbox", outboxSpec, { dataDir: dir });
		await again.connect();
		expect((again.backend as any).db.getAllData().map((d: any) => d.seq).sort()).toEqual([3, 4]);
		await again.disconnect();
	});

	test("a backlog goes in steps of EXPIRED_PER_SWEEP, and the collection's timer sweeps soon after it opens, then each minute", async () => {
		const { EXPIRED_PER_SWEEP } = require("../../mixins/nedb-internals");
		const outbox = new Collection("outbox", outboxSpec, { dataDir: dir });
		await outbox.connect();
		await outbox.insertMany(Array.from({ length: EXPIRED_PER_SWEEP + 10 }, (_, i) => ({ seq: i, createdAt: ago(3_600_000) })));
		const backend = outbox.backend as any;
		expect(await backend.datafile.removeExpired()).toBe(EXPIRED_PER_SWEEP);
		expect(backend.db.getAllData()).toHaveLength(10);
		await outbox.disconnect();

		jest.useFakeTimers({ doNotFake: ["setImmediate", "nextTick", "queueMicrotask"] });
		const reopened = new Collection("outbox", outboxSpec, { dataDir: dir });
		await reopened.connect();
		const sweep = jest.spyOn((reopened.backend as any).datafile, "removeExpired");
		await jest.advanceTimersByTimeAsync(15_000);
		expect(sweep).toHaveBeenCalledTimes(1);
		await jest.advanceTimersByTimeAsync(60_000);
		expect(sweep).toHaveBeenCalledTimes(2);
		expect((reopened.backend as any).db.getAllData()).toHaveLength(0);
		jest.useRealTimers();
		await reopened.disconnect();
	});
});

describe("a rewrite of a large file", () => {
	test("serialises in slices, giving the event loop turns meanwhile, and writes every document", async () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nedb-rewrite-"));
		const items = new Collection("items", spec, { dataDir: dir });
		await items.connect();
		await items.insertMany(Array.from({ length: 9000 }, (_, i) => ({ sku: `S${i}`, stock: i })));
		const db = (items.backend as any).db;
		let turns = 0;
		let done = false;
		const tick = () => {
			turns++;
			if (!done) setImmediate(tick);
		};
		setImmediate(tick);
		const lines = await rewrittenLines(db);
		done = true;
		// Before: one synchronous pass, no turn of the event loop until every document was serialised.
		expect(turns).toBeGreaterThanOrEqual(4);
		expect(lines.filter((l) => l.includes('"stock"'))).toHaveLength(9000);
		await db.compactDatafileAsync();
		expect(fs.readFileSync(path.join(dir, "items.db"), "utf8").split("\n").filter(Boolean)).toEqual(lines);
		await items.disconnect();
		fs.rmSync(dir, { recursive: true, force: true });
	});
});
