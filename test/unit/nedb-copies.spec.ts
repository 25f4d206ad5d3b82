/**
 * The lean update and copies answer as NeDB's own: the same new documents and the same refusals,
 * over random documents and updates; and an update leaves the old version as it was.
 */
import vm from "node:vm";
import { checkObject, deepCopy, modifyNamedFields } from "../../mixins/nedb-copies";
import { seededRandom } from "../../lib/demo-catalog";

// NeDB's own functions: nothing in this file installs the replacements.
const model = require("@seald-io/nedb/lib/model");
const nedb = { modify: model.modify, deepCopy: model.deepCopy, checkObject: model.checkObject };

function outcome(run: () => unknown) {
	try {
		return { ok: run() };
	} catch (e) {
		return { error: (e as Error).message };
	}
}

const at = new Date("2026-11-30T10:00:00Z");
/**
 * A Date of its own for each document and update: NeDB's modify walks a dotted path into a Date it
 * was just given (`$set: {saga: date, "saga.x": 1}`) and writes on it, which on a shared one would
 * leak into every later case.
 */
const day = () => new Date(at.getTime());

function randomDoc(next: () => number) {
	const int = (n: number) => Math.floor(next() * n);
	const doc: Record<string, unknown> = {
		_id: `o${int(1000)}`,
		status: ["pending", "confirmed"][int(2)],
		total: int(10_000),
		items: Array.from({ length: 1 + int(3) }, (_, i) => ({ variantId: `v${i}`, quantity: 1 + int(3), tags: ["a", "b"].slice(int(2)) })),
		events: Array.from({ length: int(4) }, (_, i) => ({ type: `e${i}`, data: { n: i, list: [{ deep: [i] }] }, createdAt: day() })),
		saga: { state: "running", completed: ["a", "b"].slice(int(3)), runner: { nodeID: "n1" } },
		note: next() < 0.5 ? "text" : null,
		createdAt: day(),
	};
	if (next() < 0.3) delete doc.note;
	return doc;
}

function randomUpdate(next: () => number): Record<string, unknown> {
	const int = (n: number) => Math.floor(next() * n);
	const pick = <T>(xs: T[]) => xs[int(xs.length)];
	const ops: Array<() => [string, string, unknown]> = [
		() => ["$set", pick(["status", "note", "fresh", "total", "events", "saga"]), pick<unknown>(["x", 3, null, { a: 1 }, [1, { b: 2 }], day(), undefined])],
		() => ["$set", pick(["saga.state", "saga.runner.nodeID", "items.0.quantity", "fresh.deep.er", "status.sub"]), pick<unknown>(["y", 5, { c: [1] }])],
		() => ["$set", pick(["_id", "$bad", "ok"]), pick<unknown>(["o1", { "a.b": 1 }, { $x: 1 }, { $$date: 5 }, [{ "$y": 1 }]])],
		() => ["$unset", pick(["status", "note", "missing", "saga.runner", "items.0.tags", "_id"]), true],
		() => ["$inc", pick(["total", "missing", "status", "note", "saga.count", "items.1.quantity"]), pick<unknown>([1, -2, "3", 0.5])],
		() => ["$push", pick(["events", "missing", "status", "saga.completed", "items"]), pick<unknown>(["c", { type: "new", createdAt: day() }, { $each: ["x", "y"] }, { $each: [1, 2, 3], $slice: -2 }, { $slice: 1 }, null, { $bad: 1 }])],
		() => ["$addToSet", pick(["saga.completed", "events", "missing", "status"]), pick<unknown>(["a", "z", { $each: ["a", "q"] }])],
		() => ["$pull", pick(["saga.completed", "items", "status"]), pick<unknown>(["a", { variantId: "v0" }])],
		() => ["$pop", pick(["events", "saga.completed", "status"]), pick<unknown>([1, -1, 0, "1"])],
		() => ["$min", pick(["total", "missing"]), int(20_000)],
		() => ["$max", pick(["total", "createdAt"]), pick<unknown>([int(20_000), new Date("2027-01-01")])],
		() => [pick(["$rename", "$nope"]), "status", "state"],
		// One level down, as the saga's journal and analytics' counters are written; into what is not a plain object too.
		() => [pick(["$set", "$unset", "$inc", "$addToSet", "$push"]), pick(["saga.state", "saga.completed", "saga.fresh", "counted.w1", "note.x", "items.x", "createdAt.x", "$bad.x", "saga.$x"]), pick<unknown>([2, "s", ["a"], { d: day() }, { $each: ["a", "b", "a"] }, { $each: [] }, { $each: "x" }, { $each: [1], other: 1 }, { $each: [{ k: 1 }, { k: 1 }] }, day(), { $bad: 1 }])],
	];
	const update: Record<string, Record<string, unknown>> = {};
	for (let n = 1 + int(4); n > 0; n--) {
		const [modifier, path, value] = pick(ops)();
		(update[modifier] ??= {})[path] = value;
	}
	const r = next();
	if (r < 0.03) return {};
	if (r < 0.06) return { status: "replaced", total: 1 };
	if (r < 0.09) return { ...update, plain: 1 };
	if (r < 0.11) return { $set: "not an object" };
	return update;
}

/** A fresh copy for each side: NeDB's $push with $slice alone writes $each into the update. */
const twice = (make: () => Record<string, unknown>) => [make(), make()];

test.each([1, 2, 3, 4, 5])("random updates give NeDB's documents and refusals (seed %i)", (seed) => {
	const next = seededRandom(seed);
	let applied = 0;
	for (let i = 0; i < 2000; i++) {
		const doc = randomDoc(next);
		const updateSeed = Math.floor(next() * 1e9);
		const [mine, theirs] = twice(() => randomUpdate(seededRandom(updateSeed)));
		const before = structuredClone(doc);
		const a = outcome(() => modifyNamedFields(doc, mine));
		const b = outcome(() => nedb.modify(structuredClone(doc), theirs));
		expect({ update: theirs, ...a }).toEqual({ update: theirs, ...b });
		// The old version is unchanged, whatever happened.
		expect(doc).toEqual(before);
		if ("ok" in a) applied++;
	}
	// Both ways were exercised.
	expect(applied).toBeGreaterThan(400);
	expect(applied).toBeLessThan(1600);
});

test("an update shares the fields it does not name and copies the ones it changes", () => {
	const doc = randomDoc(seededRandom(7));
	const events = doc.events as unknown[];
	const next = modifyNamedFields(doc, { $set: { status: "confirmed", "saga.state": "completed" }, $push: { events: { type: "confirmed" } } });
	expect(next.items).toBe(doc.items);
	expect(next.createdAt).toBe(doc.createdAt);
	expect(next.saga).not.toBe(doc.saga);
	expect(next.saga.state).toBe("completed");
	expect((doc.saga as { state: string }).state).toBe("running");
	expect(next.events).toHaveLength(events.length + 1);
	expect(doc.events).toBe(events);
	expect(events).toHaveLength(next.events.length - 1);
});

test("the saga's and the event log's updates are applied without NeDB's modify: what they do not name stays shared", () => {
	const doc = { _id: "o1", status: "pending", saga: { state: "running", completed: ["a"], runner: { nodeID: "n1" } }, events: [{ type: "created", data: { n: 1 } }] };
	const next = modifyNamedFields(doc, {
		$set: { status: "confirmed", "saga.state": "completed" },
		$addToSet: { "saga.completed": { $each: ["a", "b", "b"] } },
		$push: { events: { $each: [{ type: "confirmed", data: {} }] } },
	});
	expect(next).toEqual({ _id: "o1", status: "confirmed", saga: { state: "completed", completed: ["a", "b"], runner: { nodeID: "n1" } }, events: [{ type: "created", data: { n: 1 } }, { type: "confirmed", data: {} }] });
	// NeDB's modify (of the whole document, or of a part holding the fields) would have copied these.
	expect(next.saga.runner).toBe(doc.saga.runner);
	expect(next.events[0]).toBe(doc.events[0]);
	expect(doc.saga).toEqual({ state: "running", completed: ["a"], runner: { nodeID: "n1" } });
	expect(doc.events).toHaveLength(1);
	const counter = { _id: "c1", value: 2, countedUpTo: { w1: 4, w2: 9 } };
	const counted = modifyNamedFields(counter, { $inc: { value: 3 }, $set: { "countedUpTo.w1": 5 } });
	expect(counted).toEqual({ _id: "c1", value: 5, countedUpTo: { w1: 5, w2: 9 } });
	expect(counter.countedUpTo.w1).toBe(4);
});

test("checkObject refuses what NeDB's refuses, at any depth", () => {
	const next = seededRandom(11);
	const keys = ["a", "b", "$x", "a.b", "$$date", "$$deleted", "$$indexCreated", "0"];
	const value = (depth: number): unknown => {
		const r = next();
		if (depth > 3 || r < 0.3) return [1, "s", true, null, at, 5][Math.floor(next() * 6)];
		if (r < 0.6) return Array.from({ length: Math.floor(next() * 3) }, () => value(depth + 1));
		return Object.fromEntries(Array.from({ length: Math.floor(next() * 3) }, () => [keys[Math.floor(next() * keys.length)], value(depth + 1)]));
	};
	let refused = 0;
	for (let i = 0; i < 5000; i++) {
		const v = value(0);
		const ours = outcome(() => checkObject(v));
		expect(ours).toEqual(outcome(() => nedb.checkObject(v)));
		if ("error" in ours) refused++;
	}
	// Both ways were exercised.
	expect(refused).toBeGreaterThan(500);
	expect(refused).toBeLessThan(4500);
	const holey: unknown[] = [1];
	holey[3] = { $bad: 1 };
	expect(outcome(() => checkObject(holey))).toEqual(outcome(() => nedb.checkObject(holey)));
});

test("deepCopy copies as NeDB's does", () => {
	const otherRealmDate = vm.runInNewContext("new Date(5)");
	const fn = () => 1;
	const doc = { a: [1, { b: at, c: [null, "s", true] }], $d: 1, "e.f": 2, g: undefined, h: fn, i: otherRealmDate, j: Object.create(null) };
	for (const strict of [false, true]) {
		const ours = deepCopy(doc, strict) as Record<string, any>;
		expect(ours).toEqual(nedb.deepCopy(doc, strict));
		expect(Object.keys(ours)).toEqual(Object.keys(nedb.deepCopy(doc, strict)));
		expect(ours.a).not.toBe(doc.a);
		expect(ours.a[1].b).toBe(at);
		expect(ours.i).toBe(otherRealmDate);
	}
	expect(deepCopy(fn)).toBeUndefined();
	expect(deepCopy("x")).toBe("x");
});
