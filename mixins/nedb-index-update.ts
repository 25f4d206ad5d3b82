/**
 * NeDB updates a document in every index by removing the old version and inserting the new one,
 * even when the indexed fields did not change. In an index with few distinct keys (a status) each
 * key holds thousands of documents and the removal filters that whole list: an order update cost
 * ~100 µs, most of it there. When an index's key is unchanged, the new version takes the old one's
 * place in the same list instead. Anything else (a changed key, array-valued fields) goes the usual
 * way, with its unique checks and rollback.
 *
 * Also (`installSparseDateKeys`): NeDB's sparse index takes a key with no defined values for a
 * missing one, and a Date has none of its own (`Object.values(date)` is empty), so a sparse index on
 * a Date field held no document at all and a range query through it found nothing (a TTL index on a
 * field only finished messages have). Here a sparse index keeps a Date key as any other index does.
 *
 * And (`installPlainFieldKeys`): every index reads its key from each document inserted, updated or
 * removed with `model.getDotValues`, which splits the field name on dots (an array per read) even
 * for a plain field; a plain one is now read directly. Dotted fields still go NeDB's way.
 */
const Index = require("@seald-io/nedb/lib/indexes");
const model: {
	getDotValues(doc: unknown, fields: string[]): unknown;
	getDotValue(doc: unknown, field: string): unknown;
	compareThings(a: unknown, b: unknown): number;
} = require("@seald-io/nedb/lib/model");

interface Pair {
	oldDoc: object;
	newDoc: object;
}
interface NedbIndex {
	_fields: string[];
	sparse: boolean;
	tree: { search(key: unknown): object[]; insert(key: unknown, doc: object): void };
	insert(doc: object | object[]): void;
	updateMultipleDocs(pairs: Pair[]): void;
}

const isMultikey = (key: unknown) => Array.isArray(key) || (key !== null && typeof key === "object" && !(key instanceof Date) && Object.values(key).some(Array.isArray));
const isMissing = (key: unknown) => key === undefined || (key !== null && typeof key === "object" && !(key instanceof Date) && Object.values(key).every((v) => v === undefined));

const installed = { keptKeys: false, sparseDates: false, plainKeys: false };

/** `model.getDotValues`, same results: a field without a dot is read directly. */
export function indexKeyOf(doc: unknown, fields: string[]): unknown {
	if (!Array.isArray(fields)) throw new Error("fields must be an Array");
	if (fields.length <= 1) return fieldValue(doc, fields[0]);
	const key: Record<string, unknown> = {};
	for (const field of fields) key[field] = fieldValue(doc, field);
	return key;
}

const dotValue = model.getDotValue;
function fieldValue(doc: unknown, field: string): unknown {
	if (typeof field !== "string" || field.includes(".")) return dotValue(doc, field);
	return doc ? (doc as Record<string, unknown>)[field] : undefined;
}

export function installPlainFieldKeys(): void {
	if (installed.plainKeys) return;
	installed.plainKeys = true;
	model.getDotValues = indexKeyOf;
}

export function installSparseDateKeys(): void {
	if (installed.sparseDates) return;
	installed.sparseDates = true;
	const insert: NedbIndex["insert"] = Index.prototype.insert;
	Index.prototype.insert = function (this: NedbIndex, doc: object | object[]) {
		if (this.sparse && !Array.isArray(doc)) {
			const key = model.getDotValues(doc, this._fields);
			if (key instanceof Date) return this.tree.insert(key, doc);
		}
		return insert.call(this, doc);
	};
}

export function installKeptKeyIndexUpdates(): void {
	if (installed.keptKeys) return;
	installed.keptKeys = true;
	const original: NedbIndex["updateMultipleDocs"] = Index.prototype.updateMultipleDocs;
	Index.prototype.updateMultipleDocs = function updateMultipleDocs(this: NedbIndex, pairs: Pair[]) {
		const places: Array<{ list: object[]; at: number; doc: object } | null> = [];
		for (const { oldDoc, newDoc } of pairs) {
			const key = model.getDotValues(oldDoc, this._fields);
			if (isMultikey(key) || model.compareThings(key, model.getDotValues(newDoc, this._fields)) !== 0) return original.call(this, pairs);
			// A sparse index holds no document without the field: it still holds none.
			if (this.sparse && isMissing(key)) {
				places.push(null);
				continue;
			}
			const list = this.tree.search(key);
			const at = list.indexOf(oldDoc);
			if (at < 0) return original.call(this, pairs);
			places.push({ list, at, doc: newDoc });
		}
		for (const p of places) if (p) p.list[p.at] = p.doc;
	};
}
