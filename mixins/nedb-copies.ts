/**
 * NeDB copies and walks whole documents more than it needs to, and a checkout updates ~20 of them:
 * - an update deep-copies the whole document (`model.modify`), applies its modifiers to the copy and
 *   walks the copy again to check its field names (`checkObject`), which visits each array's elements
 *   twice at every level: an order with its event log and saga journal (~2 KB), updated six times
 *   in a checkout, took ~25 µs per update, half of it in the check;
 * - every document stored or returned goes through a generic `deepCopy` that tests each object for a
 *   Date with `Object.prototype.toString` and maps arrays through a closure.
 * Here an update builds the new version as a shallow copy of the old one that shares every field the
 * update does not name, and checks only what the update brings. That is safe because NeDB never
 * changes a stored document in place: an update makes a new version, and reads, inserts and updates
 * hand callers deep copies. The common operations ($set, $unset, $inc, $push with or without $each,
 * $addToSet) on a top-level field, or on fields one level down in a plain object (`saga.state`,
 * `countedUpTo.<writer>`), are applied here as NeDB applies them; everything else (deeper paths,
 * arrays by index, $pull, $slice, ...) runs through NeDB's own `modify` on a document holding only the
 * fields it names, so its semantics and errors stay NeDB's. `deepCopy` and `checkObject` are replaced
 * by versions with NeDB's results.
 */
const model: {
	modify(obj: Doc, update: Doc): Doc;
	deepCopy(obj: unknown, strictKeys?: boolean): unknown;
	checkObject(obj: unknown): void;
	compareThings(a: unknown, b: unknown): number;
} = require("@seald-io/nedb/lib/model");
const { isDate }: { isDate(value: unknown): boolean } = require("@seald-io/nedb/lib/utils");

type Doc = Record<string, any>;

const hasOwn = Object.prototype.hasOwnProperty;
const original = { modify: model.modify, deepCopy: model.deepCopy, checkObject: model.checkObject };

/** `model.deepCopy`, same results: Dates are kept as they are, other non-JSON values become undefined. */
export function deepCopy(obj: unknown, strictKeys?: boolean): unknown {
	if (typeof obj !== "object") return typeof obj === "string" || typeof obj === "number" || typeof obj === "boolean" ? obj : undefined;
	if (obj === null || obj instanceof Date) return obj;
	if (Array.isArray(obj)) {
		const out = new Array(obj.length);
		for (let i = 0; i < obj.length; i++) out[i] = deepCopy(obj[i], strictKeys);
		return out;
	}
	const proto = Object.getPrototypeOf(obj);
	// A Date of another realm (node's own, under jest).
	if (proto !== Object.prototype && proto !== null && isDate(obj)) return obj;
	const out: Doc = {};
	for (const k in obj) {
		if (hasOwn.call(obj, k) && (!strictKeys || (k[0] !== "$" && !k.includes(".")))) out[k] = deepCopy((obj as Doc)[k], strictKeys);
	}
	return out;
}

/** NeDB's rule for one field name (its `checkKey`): no leading `$` but its own markers, no dot. */
function checkKey(k: string, v: unknown): void {
	if (k[0] === "$" && !(k === "$$date" && typeof v === "number") && !(k === "$$deleted" && v === true) && k !== "$$indexCreated" && k !== "$$indexRemoved") {
		throw new Error("Field names cannot begin with the $ character");
	}
	if (k.includes(".")) throw new Error("Field names cannot contain a .");
}

/** `model.checkObject`, same results, visiting each value once. */
export function checkObject(obj: unknown): void {
	if (typeof obj !== "object" || obj === null) return;
	if (Array.isArray(obj)) {
		for (let i = 0; i < obj.length; i++) checkObject(obj[i]);
		// Holes or extra own fields: NeDB's walk (for...in) meets those names too.
		if (Object.keys(obj).length === obj.length) return;
	}
	for (const k in obj) {
		if (!hasOwn.call(obj, k)) continue;
		const v = (obj as Doc)[k];
		checkKey(k, v);
		checkObject(v);
	}
}

/** Whether `modifier` with `value` is one applied here (others, and $push with $slice, go NeDB's way). */
function appliedHere(modifier: string, value: any): boolean {
	switch (modifier) {
		case "$set":
		case "$unset":
		case "$inc":
			return true;
		case "$push":
		case "$addToSet": {
			if (value === null || typeof value !== "object") return true;
			if (hasOwn.call(value, "$slice")) return false;
			// With $each: the list alone (NeDB refuses other fields beside it, or reads them as $push's $slice).
			return !value.$each || (Array.isArray(value.$each) && Object.keys(value).length === 1);
		}
		default:
			return false;
	}
}

/** Applies one modifier (appliedHere) to field `field` of `out`, a copy of its own, as NeDB does. */
function applyOnField(out: Doc, modifier: string, field: string, value: any): void {
	switch (modifier) {
		case "$set":
			checkKey(field, value);
			checkObject(value);
			out[field] = value;
			return;
		case "$unset":
			delete out[field];
			return;
		case "$inc":
			if (typeof value !== "number") throw new Error(`${value} must be a number`);
			if (typeof out[field] === "number") out[field] += value;
			else if (!hasOwn.call(out, field)) out[field] = value;
			else throw new Error("Don't use the $inc modifier on non-number fields");
			checkKey(field, out[field]);
			return;
		case "$push":
		case "$addToSet": {
			const current = hasOwn.call(out, field) ? out[field] : [];
			if (!Array.isArray(current)) throw new Error(`Can't ${modifier} an element on non-array values`);
			const next = current.slice();
			const each = value !== null && typeof value === "object" && value.$each ? (value.$each as unknown[]) : [value];
			for (const v of each) {
				// NeDB compares with what the field holds by then, elements added before included.
				if (modifier === "$addToSet" && next.some((held) => model.compareThings(held, v) === 0)) continue;
				checkObject(v);
				next.push(v);
			}
			out[field] = next;
			checkKey(field, next);
			return;
		}
	}
}

/** A document-like object: NeDB walks into it by a dotted path (an array, a Date or null it does not, or not alike). */
function isPlainObject(value: unknown): value is Doc {
	if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
	const proto = Object.getPrototypeOf(value);
	return proto === Object.prototype || proto === null;
}

/**
 * Applies every use of top-level field `field` to `out`: one use of the field itself, or uses of distinct
 * fields one level down in it (`saga.state` and `saga.completed`). False, with `out` unchanged, when
 * the uses are not all applied here.
 */
function applyUses(out: Doc, obj: Doc, field: string, uses: Array<[modifier: string, value: unknown, sub: string | null]>): boolean {
	if (field === "_id") return false;
	if (uses.length === 1 && uses[0][2] === null) {
		const [modifier, value] = uses[0];
		if (!appliedHere(modifier, value)) return false;
		applyOnField(out, modifier, field, value);
		return true;
	}
	const subs = new Set<string>();
	for (const [modifier, value, sub] of uses) {
		if (sub === null || sub.includes(".") || subs.has(sub) || !appliedHere(modifier, value)) return false;
		subs.add(sub);
	}
	const current = obj[field];
	if (current !== undefined && !isPlainObject(current)) return false;
	let target = current === undefined ? undefined : { ...current };
	for (const [modifier, value, sub] of uses) {
		if (target === undefined) {
			// NeDB creates the missing object for any modifier but $unset.
			if (modifier === "$unset") continue;
			checkKey(field, (target = {}));
		}
		applyOnField(target, modifier, sub!, value);
	}
	if (target !== undefined) out[field] = target;
	return true;
}

/**
 * `model.modify` for an update made of modifiers. A top-level field named once, by one of the
 * modifiers above, is changed here; the fields named otherwise (a dotted path, twice, another
 * modifier, `_id`) go through NeDB's `modify` together, in the update's order, on a document holding
 * only them and the `_id`. Anything else (a replacement, an empty or malformed update, a refused one)
 * is NeDB's: with several faults in one update, its error is the one NeDB meets first.
 */
export function modifyNamedFields(obj: Doc, update: Doc): Doc {
	try {
		const out = modifyHere(obj, update);
		if (out) return out;
	} catch {
		// Refused: NeDB's own modify says why.
	}
	return original.modify(obj, update);
}

/** The new version, or null when the update is not made of modifiers on named fields. */
function modifyHere(obj: Doc, update: Doc): Doc | null {
	// Per top-level field, its uses: the modifier, the value and the path below the field (null for the field itself).
	const byField = new Map<string, Array<[string, unknown, string | null]>>();
	for (const modifier in update) {
		const fields = update[modifier];
		if (modifier[0] !== "$" || fields === null || typeof fields !== "object") return null;
		for (const path in fields) {
			const field = topField(path);
			let uses = byField.get(field);
			if (!uses) byField.set(field, (uses = []));
			uses.push([modifier, fields[path], field === path ? null : path.slice(field.length + 1)]);
		}
	}
	if (byField.size === 0) return null;
	// Spread, not a for...in loop: V8 clones the object's own fields in one step (~3x faster here).
	const out: Doc = { ...obj };
	const rest = new Set<string>();
	for (const [field, uses] of byField) if (!applyUses(out, obj, field, uses)) rest.add(field);
	if (rest.size === 0) return out;
	const part: Doc = { _id: obj._id };
	for (const field of rest) if (hasOwn.call(obj, field)) part[field] = obj[field];
	const partUpdate: Doc = {};
	for (const modifier in update) {
		const fields = update[modifier];
		for (const path in fields) if (rest.has(topField(path))) (partUpdate[modifier] ??= {})[path] = fields[path];
	}
	const changed = original.modify(part, partUpdate);
	for (const field of rest) {
		if (hasOwn.call(changed, field)) out[field] = changed[field];
		else delete out[field];
	}
	return out;
}

function topField(path: string): string {
	const dot = path.indexOf(".");
	return dot < 0 ? path : path.slice(0, dot);
}

let installed = false;

export function installLeanCopies(): void {
	if (installed) return;
	installed = true;
	model.modify = modifyNamedFields;
	model.deepCopy = deepCopy;
	model.checkObject = checkObject;
}
