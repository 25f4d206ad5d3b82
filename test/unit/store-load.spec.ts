/** Loading a collection's file: damage reported and kept, errors naming the file, expiry and compaction across restarts. */
import fs from "node:fs";
import path from "node:path";
import { backgroundLoadFailure, Collection, type CollectionSpec } from "../../mixins/collection";
import { storeTestDir } from "../helpers/store-dir";
import { catchOpsLog } from "../helpers/ops-log";

const spec: CollectionSpec = { fields: { sku: String, stock: Number }, indexes: [{ fields: { sku: 1 }, unique: true }] };
const line = (id: string, stock = 1) => JSON.stringify({ _id: id, sku: id, stock });

describe("loading a collection's file", () => {
	const tmp = storeTestDir("store-load");
	let file: string;
	beforeEach(() => {
		file = path.join(tmp.dir, "items.db");
	});

	function collection(s: CollectionSpec = spec) {
		const c = new Collection("items", s, { dataDir: tmp.dir });
		tmp.opened.push(c);
		return c;
	}
	async function loaded(s: CollectionSpec = spec) {
		const c = collection(s);
		await c.connect();
		return c;
	}
	const fileLines = () => fs.readFileSync(file, "utf8").split("\n").filter(Boolean);
	const copies = () => fs.readdirSync(tmp.dir).filter((f) => f.startsWith("items.db.corrupt-"));

	test("an index the file names that the spec no longer lists is dropped; the listed ones stay", async () => {
		const before: CollectionSpec = { fields: { sku: String, userId: String, at: Date }, indexes: [{ fields: { sku: 1 }, unique: true }, { fields: { userId: 1, at: -1 } }] };
		const first = await loaded(before);
		await first.insert({ sku: "a", userId: "u1", at: new Date() });
		await first.disconnect();
		const after: CollectionSpec = { fields: { sku: String, userId: String, at: Date }, indexes: [{ fields: { sku: 1 }, unique: true }, { fields: { userId: 1 } }] };
		const second = await loaded(after);
		expect(Object.keys((second.backend as any).db.indexes).sort()).toEqual(["_id", "sku", "userId"]);
		expect(await second.count({ userId: "u1" })).toBe(1);
		await second.disconnect();
		// And after another start, from the file.
		const third = await loaded(after);
		expect(Object.keys((third.backend as any).db.indexes).sort()).toEqual(["_id", "sku", "userId"]);
	});

	test("a torn last line is cut off, not counted as corruption: a small file still loads", async () => {
		catchOpsLog();
		// 1 line in 6: over the 10% NeDB tolerates, had it counted.
		fs.writeFileSync(file, ["a", "b", "c", "d", "e"].map((id) => line(id)).join("\n") + '\n{"_id":"f","sku":"f","sto');
		const items = await loaded();
		expect(await items.count()).toBe(5);
		expect(fileLines().every((l) => JSON.parse(l))).toBe(true);
		expect(fileLines().slice(0, 5)).toEqual(["a", "b", "c", "d", "e"].map((id) => line(id)));
		expect(copies()).toEqual([]);
	});

	test("unreadable lines in the middle are logged with their numbers, and the file is kept as it was before it is rewritten", async () => {
		const error = catchOpsLog().error;
		const good = Array.from({ length: 30 }, (_, i) => line(`d${i}`));
		const original = [...good.slice(0, 6), "{garbage", ...good.slice(6, 20), '{"_id":"d3","sku"', ...good.slice(20)].join("\n") + "\n";
		fs.writeFileSync(file, original);
		const items = await loaded();
		expect(await items.count()).toBe(30);
		const [copy] = copies();
		expect(fs.readFileSync(path.join(tmp.dir, copy), "utf8")).toBe(original);
		expect(error).toHaveBeenCalledWith(`${file}: line(s) 7, 22 could not be read and were dropped. The file as it was is kept in ${path.join(tmp.dir, copy)}.`);
		// Rewritten without them, so the next start does not report them again.
		expect(fileLines().every((l) => JSON.parse(l))).toBe(true);
		await items.disconnect();
		error.mockClear();
		await loaded();
		expect(error).not.toHaveBeenCalled();
		expect(copies()).toHaveLength(1);
	});

	test("a line where a failed write's bytes run into a complete one keeps the complete one", async () => {
		catchOpsLog();
		fs.writeFileSync(file, [line("a"), '{"_id":"b","sku":"b","st' + line("c", 7), line("d")].join("\n") + "\n");
		const items = await loaded();
		expect((await items.find({}, { sort: { sku: 1 } })).map((d) => `${d.sku}:${d.stock}`)).toEqual(["a:1", "c:7", "d:1"]);
		expect(copies()).toHaveLength(1);
	});

	describe("errors name the file", () => {
		test.each([
			["too many corrupt lines", () => fs.writeFileSync(file, [line("a"), "{x", line("b")].join("\n") + "\n"), "33% of the lines of FILE are corrupt (lines 2)"],
			["a unique index the data breaks", () => fs.writeFileSync(file, [line("a"), JSON.stringify({ _id: "b", sku: "a" })].join("\n") + "\n"), "Loading FILE failed: Can't insert key \"a\""],
			["its path is a directory", () => fs.mkdirSync(file), "Cannot open FILE for writing (EISDIR"],
		])("%s", async (_name, damage, message) => {
			damage();
			await expect(collection().connect()).rejects.toThrow(message.replace("FILE", file));
		});
	});

	test("a collection loading in the background that fails stops the process, naming the file", async () => {
		fs.writeFileSync(file, [line("a"), "{x", line("b")].join("\n") + "\n");
		const error = catchOpsLog().error;
		const exit = jest.spyOn(process, "exit").mockImplementation((() => undefined) as never);
		const items = collection({ ...spec, loadInBackground: true });
		await items.connect();
		// Operations wait for the load, so by their answer the process has been told to exit.
		await expect(items.find({})).rejects.toMatchObject({ code: 503, message: expect.stringContaining(`The items store could not be loaded: 33% of the lines of ${file} are corrupt`) });
		expect(exit).toHaveBeenCalledWith(1);
		expect(error).toHaveBeenCalledWith(expect.stringMatching(new RegExp(`^Collection items could not be loaded, and the shop cannot run without it: exiting\\. .*${file}`)));
	});

	test("the background failure goes through backgroundLoadFailure.handle", async () => {
		fs.writeFileSync(file, [line("a"), JSON.stringify({ _id: "b", sku: "a" })].join("\n") + "\n");
		const handle = jest.spyOn(backgroundLoadFailure, "handle").mockImplementation(() => undefined);
		const items = collection({ ...spec, loadInBackground: true });
		await items.connect();
		await expect(items.insert({ sku: "c", stock: 1 })).rejects.toMatchObject({ code: 503 });
		expect(handle).toHaveBeenCalledWith("items", expect.objectContaining({ message: expect.stringContaining(file) }));
	});

	test("documents past their time to live expire after a restart too", async () => {
		const ttl: CollectionSpec = { fields: { key: String, createdAt: Date }, indexes: [{ fields: { createdAt: 1 }, expireAfterSeconds: 60 }] };
		const keys = await loaded(ttl);
		await keys.insertMany([
			{ key: "old", createdAt: new Date(Date.now() - 61_000) },
			{ key: "fresh", createdAt: new Date() },
		]);
		await keys.disconnect();
		const again = await loaded(ttl);
		expect((await again.find({})).map((d) => d.key)).toEqual(["fresh"]);
		// Removed from the file, not only hidden.
		await again.disconnect();
		expect(fileLines().some((l) => l.includes('"$$deleted":true'))).toBe(true);
	});

	test("a file grown far past its documents over restarts is compacted when loaded; a normal one is left alone", async () => {
		// 1010 lines for 10 documents: not over 2 x 10 + 1000.
		fs.writeFileSync(file, Array.from({ length: 1010 }, (_, i) => line(`d${i % 10}`, i)).join("\n") + "\n");
		const before = fs.statSync(file);
		const normal = await loaded({ ...spec, indexes: [] });
		expect(fs.statSync(file)).toMatchObject({ ino: before.ino, size: before.size, mtimeMs: before.mtimeMs });
		await normal.disconnect();

		fs.writeFileSync(file, Array.from({ length: 1100 }, (_, i) => line(`d${i % 10}`, i)).join("\n") + "\n");
		const items = await loaded();
		expect(fileLines().filter((l) => !l.includes("$$indexCreated"))).toHaveLength(10);
		expect((await items.findOne({ sku: "d9" }))!.stock).toBe(1099);
	});

	test("lines superseded before a restart count toward the next compaction", async () => {
		fs.writeFileSync(file, Array.from({ length: 900 }, (_, i) => line("a", i)).join("\n") + "\n");
		const items = await loaded();
		for (let i = 0; i < 100; i++) await items.updateOne({ sku: "a" }, { $inc: { stock: 1 } });
		expect(await (items.backend as any).datafile.compactIfGrown()).toBe(true);
		expect(fileLines().filter((l) => !l.includes("$$indexCreated"))).toEqual([line("a", 999)]);
	});
});
