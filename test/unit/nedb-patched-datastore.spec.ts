/**
 * NeDB as the collections run it, on our key trees and with our lean updates and copies, answers
 * random operations exactly as the same NeDB on its own AVL trees, updates and copies (a separate copy
 * of the modules, with every other patch of ours): the same documents, in the same order, and the
 * same refusals.
 */
import "../../mixins/collection";
import { KeyTree } from "../../mixins/nedb-key-tree";
import { seededRandom } from "../../lib/demo-catalog";

const Patched = require("@seald-io/nedb");
let OnAvlTrees!: typeof Patched;
jest.isolateModules(() => {
	require("../../mixins/nedb-index-update").installKeptKeyIndexUpdates();
	require("../../mixins/nedb-index-update").installSparseDateKeys();
	require("../../mixins/nedb-index-compare").installFastKeyComparison();
	require("../../mixins/nedb-query-plan").installSelectiveCandidates();
	OnAvlTrees = require("@seald-io/nedb");
});

const STATUSES = ["pending", "confirmed", "shipped", "cancelled"];
const day = (n: number) => new Date(Date.UTC(2026, 0, 1) + n * 3_600_000);

async function open(Store: typeof Patched) {
	const db = new Store({ inMemoryOnly: true });
	await db.ensureIndexAsync({ fieldName: "sku", unique: true });
	await db.ensureIndexAsync({ fieldName: "status" });
	await db.ensureIndexAsync({ fieldName: "qty" });
	await db.ensureIndexAsync({ fieldName: "at" });
	await db.ensureIndexAsync({ fieldName: ["status", "at"] });
	await db.ensureIndexAsync({ fieldName: "tags" });
	return db;
}

/** What an operation gave: its result, or the kind of error it threw. */
async function outcome(run: () => Promise<unknown>) {
	try {
		return { ok: await run() };
	} catch (e) {
		return { error: (e as { errorType?: string }).errorType ?? (e as Error).message };
	}
}

async function compareRuns(seed: number, ops: number) {
	const next = seededRandom(seed);
	const pick = <T>(xs: T[]) => xs[Math.floor(next() * xs.length)];
	const int = (n: number) => Math.floor(next() * n);
	const ours = await open(Patched);
	const theirs = await open(OnAvlTrees);
	expect(ours.indexes.sku.tree).toBeInstanceOf(KeyTree);
	expect(theirs.indexes.sku.tree).not.toBeInstanceOf(KeyTree);
	let ids = 0;
	const doc = () => ({ _id: `d${ids++}`, sku: `S-${int(300)}`, status: pick(STATUSES), qty: int(20), at: day(int(100)), tags: [pick(["a", "b", "c"]), pick(["c", "d"])] });
	const query = () =>
		pick<() => object>([
			() => ({ status: pick(STATUSES) }),
			() => ({ sku: `S-${int(300)}` }),
			() => ({ qty: { $gt: int(20), $lte: int(20) + 5 } }),
			() => ({ at: { $gte: day(int(100)) } }),
			() => ({ status: pick(STATUSES), at: { $lt: day(int(100)) } }),
			() => ({ status: pick(STATUSES), qty: int(20) }),
			() => ({ sku: { $in: [`S-${int(300)}`, `S-${int(300)}`, `S-${int(300)}`] } }),
			() => ({ tags: pick(["a", "b", "c", "d"]) }),
			() => ({ $or: [{ status: pick(STATUSES) }, { qty: int(20) }] }),
			() => ({ _id: `d${int(ids + 1)}` }),
			() => ({ _id: { $gt: `d${int(ids + 1)}` } }),
			// Ranges over string indexes, unique and not: the order of their keys, not just lookups.
			() => ({ status: { $gte: pick(STATUSES) } }),
			() => ({ tags: { $lt: pick(["b", "c", "d", "e"]) } }),
			() => ({ sku: { $gt: `S-${int(300)}`, $lte: `S-${int(300)}` } }),
			() => ({}),
		])();
	for (let i = 0; i < ops; i++) {
		const r = next();
		let both: (db: any) => Promise<unknown>;
		if (r < 0.3) {
			const d = doc();
			both = (db) => db.insertAsync({ ...d, tags: [...d.tags] });
		} else if (r < 0.5) {
			const q = query();
			const set = pick<() => object>([
				() => ({ $set: { status: pick(STATUSES) } }),
				() => ({ $inc: { qty: 1 } }),
				() => ({ $set: { at: day(int(100)), sku: `S-${int(300)}` } }),
				() => ({ $push: { tags: pick(["a", "e"]) } }),
				() => ({ $set: { note: "x" } }),
				() => ({ $set: { "meta.n": int(5) }, $unset: { note: true } }),
				() => ({ $addToSet: { tags: { $each: [pick(["a", "f"])] } }, $inc: { "meta.n": 1 } }),
				() => ({ $set: { status: pick(STATUSES), $bad: 1 } }),
			])();
			const multi = next() < 0.3;
			both = (db) => db.updateAsync(q, set, { multi, returnUpdatedDocs: true });
		} else if (r < 0.6) {
			const q = query();
			const multi = next() < 0.3;
			both = (db) => db.removeAsync(q, { multi });
		} else if (r < 0.95) {
			const q = query();
			both = (db) => db.findAsync(q);
		} else {
			const q = query();
			both = (db) => db.countAsync(q);
		}
		const a = await outcome(() => both(ours));
		const b = await outcome(() => both(theirs));
		expect(a).toEqual(b);
	}
	expect(await ours.findAsync({})).toEqual(await theirs.findAsync({}));
	for (const name of Object.keys(theirs.indexes)) expect(ours.indexes[name].tree.getNumberOfKeys()).toBe(theirs.indexes[name].tree.getNumberOfKeys());
}

test.each([1, 2, 3, 4])("random inserts, updates, removals and queries answer as in NeDB (seed %i)", (seed) => compareRuns(seed, 1500));
