/**
 * NeDB answers a query from one index: of the fields the query asks to equal a value, it takes the
 * last one that has an index, however many documents that index holds for the value. An order query
 * for `status: "pending"` and `"saga.state": "completed"` went through the saga index, so through every
 * completed order, every minute. Here the equality index with the fewest documents for its value is
 * taken (looking each up is one index lookup), among the plain ones (neither sparse nor on a dotted path);
 * a query with none goes NeDB's way. The candidates are all the documents holding the value, a superset
 * of the matches: NeDB matches each one against the whole query.
 */
import { isDate, type Doc } from "./nedb-internals";

const Datastore = require("@seald-io/nedb/lib/datastore");

interface Indexed {
	indexes: Record<string, { getMatching(value: unknown): Doc[]; sparse: boolean }>;
}

/** What NeDB's basic-match path takes: a plain value, not an operator object or an array. */
const isPlainValue = (v: unknown) => typeof v === "string" || typeof v === "number" || typeof v === "boolean" || v === null || isDate(v);

let installed = false;

export function installSelectiveCandidates(): void {
	if (installed) return;
	installed = true;
	const original: (this: Indexed, query: Record<string, unknown>) => Doc[] = Datastore.prototype._getRawCandidates;
	Datastore.prototype._getRawCandidates = function _getRawCandidates(this: Indexed, query: Record<string, unknown>): Doc[] {
		let best: Doc[] | undefined;
		for (const field in query) {
			// Only indexes that hold every document by its value: a sparse one leaves out documents without the
			// field, and a dotted one misses arrays inside arrays of subdocuments. Those stay NeDB's own choice, as before.
			if (!Object.hasOwn(this.indexes, field) || field.includes(".")) continue;
			const index = this.indexes[field];
			const value = query[field];
			if (index.sparse || !isPlainValue(value)) continue;
			const docs = index.getMatching(value);
			if (best === undefined || docs.length < best.length) best = docs;
			if (best.length === 0) break;
		}
		return best ?? original.call(this, query);
	};
}
