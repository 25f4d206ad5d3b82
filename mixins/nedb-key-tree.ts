/**
 * The ordered map behind each NeDB index. NeDB keeps an AVL tree of one object per key: every insert
 * allocates a node and walks back up the path to rebalance, and every step reads its comparison
 * function off the node. Index upkeep took ~15% of a saturated checkout's main thread.
 * - Keys sit in sorted arrays of at most LEAF_SIZE ("leaves", themselves in key order): a lookup is
 *   a binary search over the leaves' last keys, then one within the leaf; an insert moves a few
 *   pointers within one leaf; ~80 bytes less per key.
 * - String keys (ids, slugs, codes: most of them) are held in a Map, which answers lookups, inserts
 *   and removals with one hash probe. Under load each comparison through keys scattered over the
 *   heap misses the cache: an insert into a 40,000-key index took ~11 µs. A string key is put in its
 *   leaf (or taken out) only when an operation needs the order (a range, a full scan), in one merge
 *   when many wait.
 * It answers exactly as NeDB's tree, quirks included (see `delete`): the same interface (`insert`,
 * `delete`, `search`, `betweenBounds`, `getNumberOfKeys`, `executeOnEveryNode`), the same
 * unique-violation error, `search` returning the key's own list (which the kept-key index update
 * writes into), and a removed value leaving its key with a new list.
 */
const Index = require("@seald-io/nedb/lib/indexes");

type Compare = (a: unknown, b: unknown) => number;
type Equal = (a: unknown, b: unknown) => boolean;
export interface KeyTreeOptions {
	unique?: boolean;
	compareKeys: Compare;
	checkValueEquality?: Equal;
}
type Bounds = { $gt?: unknown; $gte?: unknown; $lt?: unknown; $lte?: unknown };

/** Keys per leaf: a split moves half of it, a lookup within it takes ~6 comparisons. */
export const LEAF_SIZE = 64;
/**
 * Above this many string keys waiting to be placed or taken out, and an eighth of all keys, the
 * leaves are rebuilt in one merge (a sort of the waiting keys and one pass, ~1 µs a key); fewer are
 * placed one by one (a few µs each).
 */
export const MERGE_ABOVE = 64;

class Leaf {
	constructor(
		public keys: unknown[],
		public lists: unknown[][],
	) {}
}

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

export class KeyTree {
	private leaves: Leaf[] = [];
	private keyCount = 0;
	/**
	 * Every string key's values (NeDB orders strings by code unit, so equal keys are identical
	 * strings); a string key in a leaf holds the same list there.
	 */
	private readonly byString = new Map<string, unknown[]>();
	/** String keys in the Map, not yet in a leaf. */
	private readonly unplaced = new Set<string>();
	/** String keys whose slot in a leaf is to go (removed, or inserted again since, with a new list). */
	private readonly displaced = new Set<string>();
	readonly unique: boolean;
	readonly compareKeys: Compare;
	private readonly equal: Equal;

	constructor(options: KeyTreeOptions) {
		this.unique = options.unique ?? false;
		this.compareKeys = options.compareKeys;
		this.equal = options.checkValueEquality ?? ((a, b) => a === b);
	}

	/** The leaf holding `key`, or where it would go: the first whose last key is not below it, else the last. */
	private leafAt(key: unknown): number {
		const leaves = this.leaves;
		let lo = 0;
		let hi = leaves.length - 1;
		while (lo < hi) {
			const mid = (lo + hi) >>> 1;
			const keys = leaves[mid].keys;
			if (this.compareKeys(keys[keys.length - 1], key) < 0) lo = mid + 1;
			else hi = mid;
		}
		return lo;
	}

	/** The first position in `keys` whose key is not below `key` (keys.length if none). */
	private position(keys: unknown[], key: unknown): number {
		let lo = 0;
		let hi = keys.length;
		while (lo < hi) {
			const mid = (lo + hi) >>> 1;
			if (this.compareKeys(keys[mid], key) < 0) lo = mid + 1;
			else hi = mid;
		}
		return lo;
	}

	/** The leaf and position where `key` is or would go (leaves not empty), and whether it is there. */
	private locate(key: unknown): { li: number; at: number; found: boolean } {
		// Keys that grow with time (createdAt, updatedAt, sequence numbers) mostly go after the last one:
		// one comparison instead of a search through every level.
		const lastLeaf = this.leaves.length - 1;
		const last = this.leaves[lastLeaf].keys;
		const c = this.compareKeys(last[last.length - 1], key);
		if (c < 0) return { li: lastLeaf, at: last.length, found: false };
		if (c === 0) return { li: lastLeaf, at: last.length - 1, found: true };
		const li = this.leafAt(key);
		const keys = this.leaves[li].keys;
		const at = this.position(keys, key);
		return { li, at, found: at < keys.length && this.compareKeys(keys[at], key) === 0 };
	}

	/** Where `key` is in the leaves, if it is. */
	private find(key: unknown): { li: number; at: number } | undefined {
		if (this.leaves.length === 0) return undefined;
		const where = this.locate(key);
		return where.found ? where : undefined;
	}

	/** Puts a key in its leaf with `list`; if the key is there already, leaves it and returns its list. */
	private place(key: unknown, list: unknown[]): unknown[] | undefined {
		if (this.leaves.length === 0) {
			this.leaves.push(new Leaf([key], [list]));
			return undefined;
		}
		const { li, at, found } = this.locate(key);
		const leaf = this.leaves[li];
		if (found) return leaf.lists[at];
		leaf.keys.splice(at, 0, key);
		leaf.lists.splice(at, 0, list);
		if (leaf.keys.length > LEAF_SIZE) {
			// Keys arriving in order (dates, sequence numbers) fill each leaf, instead of leaving halves behind.
			const cut = li === this.leaves.length - 1 && at === leaf.keys.length - 1 ? at : leaf.keys.length >>> 1;
			this.leaves.splice(li + 1, 0, new Leaf(leaf.keys.splice(cut), leaf.lists.splice(cut)));
		}
		return undefined;
	}

	private unplace({ li, at }: { li: number; at: number }): void {
		const leaf = this.leaves[li];
		leaf.keys.splice(at, 1);
		leaf.lists.splice(at, 1);
		if (leaf.keys.length === 0) this.leaves.splice(li, 1);
	}

	insert(key: unknown, value: unknown): void {
		if (typeof key === "string") {
			const list = this.byString.get(key);
			if (list !== undefined) return this.addTo(list, key, value);
			this.byString.set(key, [value]);
			this.keyCount++;
			this.unplaced.add(key);
			return;
		}
		const held = this.place(key, [value]);
		if (held !== undefined) return this.addTo(held, key, value);
		this.keyCount++;
	}

	/** Another value for a key already held: refused by a unique index. */
	private addTo(list: unknown[], key: unknown, value: unknown): void {
		if (this.unique) {
			const err = new Error(`Can't insert key ${JSON.stringify(key)}, it violates the unique constraint`) as Error & { key: unknown; errorType: string };
			err.key = key;
			err.errorType = "uniqueViolated";
			throw err;
		}
		list.push(value);
	}

	/**
	 * Removes `value` from `key`'s list, or the whole key when no value is given or the list holds
	 * one value (whichever it is: NeDB's tree does the same, and NeDB only removes what it indexed).
	 * A list with a value removed is a new one, as NeDB's tree makes: one handed out by `search` is
	 * not changed under its holder.
	 */
	delete(key: unknown, value?: unknown): void {
		if (typeof key === "string") {
			const list = this.byString.get(key);
			if (list === undefined) return;
			if (list.length > 1 && value !== undefined) {
				const rest = list.filter((d) => !this.equal(d, value));
				this.byString.set(key, rest);
				const where = this.unplaced.has(key) ? undefined : this.find(key);
				if (where !== undefined) this.leaves[where.li].lists[where.at] = rest;
				return;
			}
			this.byString.delete(key);
			this.keyCount--;
			if (!this.unplaced.delete(key)) this.displaced.add(key);
			return;
		}
		const where = this.find(key);
		if (where === undefined) return;
		const lists = this.leaves[where.li].lists;
		if (lists[where.at].length > 1 && value !== undefined) {
			lists[where.at] = lists[where.at].filter((d) => !this.equal(d, value));
			return;
		}
		this.unplace(where);
		this.keyCount--;
	}

	/** The key's list of values (the tree's own array), or a new empty one. */
	search(key: unknown): unknown[] {
		if (typeof key === "string") return this.byString.get(key) ?? [];
		const where = this.find(key);
		return where === undefined ? [] : this.leaves[where.li].lists[where.at];
	}

	/** Brings the leaves up to date with the Map, before an operation that needs the keys' order. */
	tidy(): void {
		const pending = this.unplaced.size + this.displaced.size;
		if (pending === 0) return;
		if (pending > MERGE_ABOVE && pending * 8 > this.keyCount) this.merge();
		else {
			for (const key of this.displaced) this.unplace(this.find(key)!);
			for (const key of this.unplaced) this.place(key, this.byString.get(key)!);
		}
		this.unplaced.clear();
		this.displaced.clear();
	}

	/** One pass over the leaves: the displaced keys left out, the unplaced ones (sorted) merged in. */
	private merge(): void {
		// Default sort orders strings by code unit, as NeDB compares them.
		const incoming = [...this.unplaced].sort();
		const keys: unknown[] = [];
		const lists: unknown[][] = [];
		let j = 0;
		for (const leaf of this.leaves) {
			for (let i = 0; i < leaf.keys.length; i++) {
				const key = leaf.keys[i];
				while (j < incoming.length && this.compareKeys(incoming[j], key) < 0) {
					keys.push(incoming[j]);
					lists.push(this.byString.get(incoming[j++])!);
				}
				if (typeof key === "string" && this.displaced.has(key)) continue;
				keys.push(key);
				lists.push(leaf.lists[i]);
			}
		}
		for (; j < incoming.length; j++) {
			keys.push(incoming[j]);
			lists.push(this.byString.get(incoming[j])!);
		}
		// Leaves three-quarters full: keys placed one by one afterwards do not split every one of them.
		const fill = (LEAF_SIZE * 3) / 4;
		this.leaves = [];
		for (let i = 0; i < keys.length; i += fill) this.leaves.push(new Leaf(keys.slice(i, i + fill), lists.slice(i, i + fill)));
	}

	/** The values of every key within the bounds ($gt/$gte, $lt/$lte; the stricter of each pair), in key order. */
	betweenBounds(query: Bounds): unknown[] {
		this.tidy();
		const above = this.lowerMatcher(query);
		const below = this.upperMatcher(query);
		const res: unknown[] = [];
		// `above` is false, then true along the keys: start at its first true.
		let li = 0;
		let hi = this.leaves.length;
		while (li < hi) {
			const mid = (li + hi) >>> 1;
			const keys = this.leaves[mid].keys;
			if (above(keys[keys.length - 1])) hi = mid;
			else li = mid + 1;
		}
		for (let first = true; li < this.leaves.length; li++, first = false) {
			const leaf = this.leaves[li];
			let i = 0;
			if (first) while (i < leaf.keys.length && !above(leaf.keys[i])) i++;
			for (; i < leaf.keys.length; i++) {
				if (!below(leaf.keys[i])) return res;
				for (const v of leaf.lists[i]) res.push(v);
			}
		}
		return res;
	}

	private lowerMatcher(q: Bounds): (key: unknown) => boolean {
		const c = this.compareKeys;
		const gt = has(q, "$gt");
		const gte = has(q, "$gte");
		if (gt && gte) return c(q.$gte, q.$gt) > 0 ? (k) => c(k, q.$gte) >= 0 : (k) => c(k, q.$gt) > 0;
		if (gt) return (k) => c(k, q.$gt) > 0;
		if (gte) return (k) => c(k, q.$gte) >= 0;
		return () => true;
	}

	private upperMatcher(q: Bounds): (key: unknown) => boolean {
		const c = this.compareKeys;
		const lt = has(q, "$lt");
		const lte = has(q, "$lte");
		if (lt && lte) return c(q.$lte, q.$lt) < 0 ? (k) => c(k, q.$lte) <= 0 : (k) => c(k, q.$lt) < 0;
		if (lt) return (k) => c(k, q.$lt) < 0;
		if (lte) return (k) => c(k, q.$lte) <= 0;
		return () => true;
	}

	getNumberOfKeys(): number {
		return this.keyCount;
	}

	executeOnEveryNode(fn: (node: { key: unknown; data: unknown[] }) => void): void {
		this.tidy();
		for (const leaf of this.leaves) for (let i = 0; i < leaf.keys.length; i++) fn({ key: leaf.keys[i], data: leaf.lists[i] });
	}
}

let installed = false;

/**
 * NeDB's Index assigns `this.tree = new AVLTree(this.treeOptions)` in its constructor and `reset`;
 * an accessor on the prototype keeps a KeyTree instead. Indexes made after this call use it.
 */
export function installKeyTrees(): void {
	if (installed) return;
	installed = true;
	const TREE = Symbol("keyTree");
	// A whole collection indexed at once (its file loaded, an index added: NeDB's bulk path) is put in
	// order there and then, at start-up, rather than by the first full scan, which would stall requests
	// meanwhile (~0.4 s for 200,000 keys).
	const insertMultipleDocs = Index.prototype.insertMultipleDocs;
	Index.prototype.insertMultipleDocs = function insertAll(this: { tree: KeyTree }, docs: unknown[]) {
		insertMultipleDocs.call(this, docs);
		this.tree.tidy();
	};
	Object.defineProperty(Index.prototype, "tree", {
		configurable: true,
		get(this: { [TREE]: KeyTree }) {
			return this[TREE];
		},
		set(this: { [TREE]: KeyTree; treeOptions: KeyTreeOptions }) {
			this[TREE] = new KeyTree(this.treeOptions);
		},
	});
}
