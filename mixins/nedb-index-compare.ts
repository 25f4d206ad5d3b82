/**
 * NeDB orders index keys with `model.compareThings`, which for a compound key (an object) lists and
 * sorts both objects' field names at every comparison: an insert into a compound index of 10,000
 * entries did that ~28 times. The same order here, with each key object's sorted names worked out
 * once (index keys are built fresh by NeDB and never changed afterwards) and kept on the key under
 * a symbol, which neither JSON nor NeDB's copies see (a WeakMap lookup cost 9x more), and strings
 * compared first. Indexes built after `installFastKeyComparison()` use it (NeDB reads the function when it
 * creates an index); NeDB's own recursive calls keep the original.
 */
import { isDate } from "./nedb-internals";
const model: { compareThings: Compare } = require("@seald-io/nedb/lib/model");

type Compare = (a: unknown, b: unknown, compareStrings?: (a: string, b: string) => number) => number;

const original: Compare = model.compareThings;
const SORTED_NAMES = Symbol("sortedNames");

function namesOf(o: Record<string | symbol, unknown>): string[] {
	let names = o[SORTED_NAMES] as string[] | undefined;
	if (names === undefined) {
		names = Object.keys(o).sort();
		o[SORTED_NAMES] = names;
	}
	return names;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v) && !isDate(v);

/** `model.compareThings`, same results. */
export const compareIndexKeys: Compare = (a, b, compareStrings) => {
	if (typeof a === "string" && typeof b === "string" && !compareStrings) return a < b ? -1 : a > b ? 1 : 0;
	// Dates and numbers (createdAt, sequence numbers: most non-string keys) without NeDB's walk down its
	// type order, which tests a Date with Object.prototype.toString up to four times per comparison.
	if (typeof a === "number" && typeof b === "number") return a < b ? -1 : a > b ? 1 : 0;
	if (a instanceof Date && b instanceof Date) {
		const x = a.getTime();
		const y = b.getTime();
		return x < y ? -1 : x > y ? 1 : 0;
	}
	if (isPlainObject(a) && isPlainObject(b)) {
		const an = namesOf(a);
		const bn = namesOf(b);
		const n = Math.min(an.length, bn.length);
		for (let i = 0; i < n; i++) {
			const c = compareIndexKeys(a[an[i]], b[bn[i]]);
			if (c !== 0) return c;
		}
		return an.length < bn.length ? -1 : an.length > bn.length ? 1 : 0;
	}
	return original(a, b, compareStrings);
};

export function installFastKeyComparison(): void {
	model.compareThings = compareIndexKeys;
}
