/** A write the disk refuses (full) part-way: no torn line is left for the next write to continue, and memory is undone. */
import fs from "node:fs";
import path from "node:path";
import { Collection, type CollectionSpec } from "../../mixins/collection";
import { storeTestDir } from "../helpers/store-dir";
import { storeOutages, watchMongoConnection } from "../../mixins/store-outages";
import { notReadyReasons } from "../../mixins/health-probe.middleware";
import type { ServiceBroker } from "moleculer";
import { catchOpsLog } from "../helpers/ops-log";

const spec = { fields: { sku: String, stock: Number }, indexes: [{ fields: { sku: 1 as const }, unique: true }] };

function errno(code: string, syscall: string): NodeJS.ErrnoException {
	return Object.assign(new Error(`${code}: simulated, ${syscall}`), { code, syscall });
}

/** The disk fills up during the next appends: `bytes` more get written, then every write fails with ENOSPC. */
function diskFullAfter(bytes: number) {
	const realWrite = fs.writeSync;
	let room = bytes;
	return jest.spyOn(fs, "writeSync").mockImplementation(((fd: number, buf: Buffer, offset: number | null = 0) => {
		offset ??= 0;
		if (room <= 0) throw errno("ENOSPC", "write");
		const length = Math.min(room, buf.length - offset);
		room -= length;
		return realWrite(fd, buf, offset, length);
	}) as typeof fs.writeSync);
}

describe("a write that fails part-way", () => {
	const tmp = storeTestDir("store-failed-writes");
	let file: string;
	let items: Collection;
	let logged: jest.Mock;
	beforeEach(async () => {
		file = path.join(tmp.dir, "items.db");
		logged = catchOpsLog().error;
		items = new Collection("items", spec, { dataDir: tmp.dir });
		tmp.opened.push(items);
		await items.connect();
	});

	const skus = async (c: Collection) => (await c.find({}, { sort: { sku: 1 } })).map((d) => `${d.sku}:${d.stock}`);
	const lines = () => fs.readFileSync(file, "utf8").split("\n");
	/** Lets writes through again after the pause that follows a failure. */
	const pauseOver = () => jest.spyOn(Date, "now").mockReturnValue(Date.now() + 1_001);

	async function restarted() {
		await items.disconnect();
		const again = new Collection("items", spec, { dataDir: tmp.dir });
		tmp.opened.splice(tmp.opened.indexOf(items), 1, again);
		items = again;
		await items.connect();
		return skus(items);
	}

	test("leaves no half line: the next write starts cleanly and both are there after a restart", async () => {
		await items.insert({ sku: "A", stock: 1 });
		const full = diskFullAfter(10);
		await expect(items.insert({ sku: "B", stock: 2 })).rejects.toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE", data: { collection: "items", reason: "ENOSPC" } });
		full.mockRestore();
		expect(logged).toHaveBeenCalledWith(`items: writing to ${file} failed (ENOSPC: simulated, write); the change was not made.`);
		expect(lines().at(-1)).toBe("");
		pauseOver();
		await items.insert({ sku: "C", stock: 3 });
		expect(lines().filter(Boolean).every((l) => JSON.parse(l))).toBe(true);
		expect(await restarted()).toEqual(["A:1", "C:3"]);
	});

	test("when cutting the bytes off fails too, the next write starts a new line", async () => {
		await items.insertMany(Array.from({ length: 20 }, (_, i) => ({ sku: `S${i}`, stock: i })));
		const full = diskFullAfter(10);
		const cut = jest.spyOn(fs, "ftruncateSync").mockImplementation(() => {
			throw errno("EIO", "ftruncate");
		});
		await expect(items.insert({ sku: "B", stock: 2 })).rejects.toMatchObject({ code: 503 });
		full.mockRestore();
		cut.mockRestore();
		expect(lines().at(-1)).toHaveLength(10);
		pauseOver();
		await items.insert({ sku: "C", stock: 3 });
		expect(JSON.parse(lines().at(-2)!)).toMatchObject({ sku: "C", stock: 3 });
		// The failed write's bytes are a line of their own now, reported when loaded; C is kept.
		expect(await restarted()).toContain("C:3");
		expect(await items.count()).toBe(21);
	});

	test("is undone in memory too: an insert, an update and a removal that failed left nothing behind", async () => {
		await items.insertMany([{ sku: "A", stock: 5 }, { sku: "Z", stock: 1 }]);
		const full = diskFullAfter(0);
		await expect(items.insert({ sku: "B", stock: 2 })).rejects.toMatchObject({ code: 503 });
		pauseOver();
		await expect(items.updateOne({ sku: "A", stock: { $gte: 2 } }, { $inc: { stock: -2 } })).rejects.toMatchObject({ code: 503 });
		jest.mocked(Date.now).mockReturnValue(Date.now() + 2_002);
		await expect(items.removeOne({ sku: "Z" })).rejects.toMatchObject({ code: 503 });
		full.mockRestore();
		expect(await skus(items)).toEqual(["A:5", "Z:1"]);
		// Nor is the failed insert's key held by the unique index.
		jest.mocked(Date.now).mockReturnValue(Date.now() + 3_003);
		await items.insert({ sku: "B", stock: 7 });
		expect(await restarted()).toEqual(["A:5", "B:7", "Z:1"]);
	});

	test("is undone from what the write changed, without reading the file back: the unique index included", async () => {
		const [a] = await items.insertMany([{ sku: "A", stock: 5 }, { sku: "Z", stock: 1 }]);
		const read = jest.spyOn(fs, "readFileSync");
		const full = diskFullAfter(0);
		await expect(items.updateOne({ sku: "A" }, { $set: { sku: "B" } })).rejects.toMatchObject({ code: 503 });
		pauseOver();
		await expect(items.insertMany([{ sku: "C", stock: 1 }, { sku: "D", stock: 1 }])).rejects.toMatchObject({ code: 503 });
		jest.mocked(Date.now).mockReturnValue(Date.now() + 2_002);
		await expect(items.removeMany({})).rejects.toMatchObject({ code: 503 });
		full.mockRestore();
		expect(read).not.toHaveBeenCalled();
		expect(await skus(items)).toEqual(["A:5", "Z:1"]);
		expect(await items.findOne({ sku: "A" })).toEqual(a);
		expect(await items.findOne({ sku: "B" })).toBeNull();
		jest.mocked(Date.now).mockReturnValue(Date.now() + 3_003);
		await expect(items.insert({ sku: "A", stock: 0 })).rejects.toMatchObject({ code: 409 });
		await items.insertMany([{ sku: "B", stock: 2 }, { sku: "C", stock: 3 }]);
		read.mockRestore();
		expect(await restarted()).toEqual(["A:5", "B:2", "C:3", "Z:1"]);
	});

	test("writes answer 503 for a second after a failure, without touching the file; reads go on", async () => {
		await items.insert({ sku: "A", stock: 1 });
		const full = diskFullAfter(0);
		await expect(items.insert({ sku: "B", stock: 2 })).rejects.toMatchObject({ code: 503 });
		full.mockRestore();
		const write = jest.spyOn(fs, "writeSync");
		await expect(items.updateOne({ sku: "A" }, { $set: { stock: 9 } })).rejects.toMatchObject({ code: 503, data: { collection: "items" } });
		expect(write).not.toHaveBeenCalled();
		expect(await skus(items)).toEqual(["A:1"]);
		pauseOver();
		expect(await items.updateOne({ sku: "A" }, { $set: { stock: 9 } })).toMatchObject({ stock: 9 });
	});

	test("the readiness probe names the collection from the failure until a write there succeeds", async () => {
		await items.insert({ sku: "A", stock: 1 });
		expect(storeOutages()).toEqual([]);
		const full = diskFullAfter(0);
		await expect(items.insert({ sku: "B", stock: 2 })).rejects.toMatchObject({ code: 503 });
		full.mockRestore();
		expect(storeOutages()).toEqual(["store: items (ENOSPC)"]);
		expect(notReadyReasons({ started: true, stopping: false, cacher: null } as unknown as ServiceBroker)).toEqual(["store: items (ENOSPC)"]);
		pauseOver();
		await items.insert({ sku: "C", stock: 3 });
		expect(storeOutages()).toEqual([]);
	});

	test("with no write coming (the node is out of service), the probe tries the disk itself a second after the failure", async () => {
		const full = diskFullAfter(0);
		await expect(items.insert({ sku: "B", stock: 2 })).rejects.toMatchObject({ code: 503 });
		full.mockRestore();
		const probe = jest.spyOn(fs, "writeFileSync").mockImplementation(() => {
			throw errno("ENOSPC", "write");
		});
		expect(storeOutages()).toEqual(["store: items (ENOSPC)"]);
		expect(probe).not.toHaveBeenCalled();
		// Still full a second later.
		expect(storeOutages(Date.now() + 1_001)).toEqual(["store: items (ENOSPC)"]);
		expect(probe).toHaveBeenCalledWith(`${file}.write-check`, expect.any(Buffer));
		probe.mockRestore();
		// Room again: ready, and the probe's file is gone.
		expect(storeOutages(Date.now() + 1_001)).toEqual([]);
		expect(fs.existsSync(`${file}.write-check`)).toBe(false);
	});
});

describe("expiry on a full disk", () => {
	const ttlSpec: CollectionSpec = { fields: { key: String, createdAt: Date }, indexes: [{ fields: { key: 1 }, unique: true }, { fields: { createdAt: 1 }, expireAfterSeconds: 60 }] };
	const tmp = storeTestDir("store-expiry");
	let keys: Collection;
	beforeEach(async () => {
		catchOpsLog();
		keys = new Collection("keys", ttlSpec, { dataDir: tmp.dir });
		tmp.opened.push(keys);
		await keys.connect();
	});
	const stored = () => fs.readFileSync(path.join(tmp.dir, "keys.db"), "utf8");

	test("an upsert meeting an expired document of its key replaces it, as NeDB did", async () => {
		const old = await keys.insert({ key: "k", createdAt: new Date(Date.now() - 61_000) });
		const saved = await keys.updateOne({ key: "k" }, { $set: { createdAt: new Date() } }, { upsert: true });
		expect(saved!.id).not.toBe(old.id);
		expect((await keys.find({})).map((d) => d.id)).toEqual([saved!.id]);
	});

	test("reads go on, without the expired documents and without reading the file back; the expiry is stored once there is space", async () => {
		const [old] = await keys.insertMany([
			{ key: "old", createdAt: new Date(Date.now() - 61_000) },
			{ key: "fresh", createdAt: new Date() },
		]);
		const full = diskFullAfter(0);
		const read = jest.spyOn(fs, "readFileSync");
		for (let i = 0; i < 3; i++) {
			expect((await keys.find({})).map((d) => d.key)).toEqual(["fresh"]);
			expect(await keys.findOne({ key: "old" })).toBeNull();
			expect(await keys.count()).toBe(1);
		}
		expect(read).not.toHaveBeenCalled();
		// One attempt to store the expiry; then none while writes are paused.
		expect(full).toHaveBeenCalledTimes(1);
		expect(stored()).not.toContain('"$$deleted"');
		full.mockRestore();

		jest.spyOn(Date, "now").mockReturnValue(Date.now() + 1_001);
		expect(await keys.findOne({ key: "old" })).toBeNull();
		// The removal is queued behind the read, so stored before the next operation answers.
		expect(await keys.count()).toBe(1);
		expect(stored()).toContain(JSON.stringify({ $$deleted: true, _id: old.id }));
		// Gone from memory too: its unique key is free again.
		await keys.insert({ key: "old", createdAt: new Date(Date.now()) });
		expect(await keys.count({ key: "old" })).toBe(1);
	});
});

describe("a MongoDB connection that is down", () => {
	afterEach(() => watchMongoConnection(() => true));

	test("is named by the readiness probe while mongoose reconnects", () => {
		let up = false;
		watchMongoConnection(() => up);
		expect(storeOutages()).toEqual(["store: mongodb"]);
		up = true;
		expect(storeOutages()).toEqual([]);
	});
});
