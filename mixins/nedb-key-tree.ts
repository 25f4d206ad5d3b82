/**
 * The ordered map behind each NeDB index. NeDB keeps an AVL tree of one object per key: every insert
 * allocates a node and walks back up the path to rebalance, and every step reads its comparison
 * function off the node. Index upkeep took ~15% of a saturated checkout's main thread.
 * Here the keys sit in sorted arrays of at most LEAF_SIZE ("leaves", themselves in key order); a
 * lookup is a binary search over the leaves' last keys, then one within the leaf, and an insert
 * moves a few pointers within one leaf. It also takes ~80 bytes less per key.
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

	insert(key: unknown, value: unknown): void {
		if (this.leaves.length === 0) {
			this.leaves.push(new Leaf([key], [[value]]));
			this.keyCount = 1;
			return;
		}
		const li = this.leafAt(key);
		const leaf = this.leaves[li];
		const at = this.position(leaf.keys, key);
		if (at < leaf.keys.length && this.compareKeys(leaf.keys[at], key) === 0) {
			if (this.unique) {
				const err = new Error(`Can't insert key ${JSON.stringify(key)}, it violates the unique constraint`) as Error & { key: unknown; errorType: string };
				err.key = key;
				err.errorType = "uniqueViolated";
				throw err;
			}
			leaf.lists[at].push(value);
			return;
		}
		leaf.keys.splice(at, 0, key);
		leaf.lists.splice(at, 0, [value]);
		this.keyCount++;
		if (leaf.keys.length > LEAF_SIZE) {
			// Keys arriving in order (dates, sequence numbers) fill each leaf, instead of leaving halves behind.
			const cut = li === this.leaves.length - 1 && at === leaf.keys.length - 1 ? at : leaf.keys.length >>> 1;
			this.leaves.splice(li + 1, 0, new Leaf(leaf.keys.splice(cut), leaf.lists.splice(cut)));
		}
	}

	/**
	 * Removes `value` from `key`'s list, or the whole key when no value is given or the list holds
	 * one value (whichever it is: NeDB's tree does the same, and NeDB only removes what it indexed).
	 */
	delete(key: unknown, value?: unknown): void {
		if (this.leaves.length === 0) return;
		const li = this.leafAt(key);
		const leaf = this.leaves[li];
		const at = this.position(leaf.keys, key);
		if (at === leaf.keys.length || this.compareKeys(leaf.keys[at], key) !== 0) return;
		const list = leaf.lists[at];
		if (list.length > 1 && value !== undefined) {
			// A new list, as NeDB's tree makes: one handed out by `search` is not changed under its holder.
			leaf.lists[at] = list.filter((d) => !this.equal(d, value));
			return;
		}
		leaf.keys.splice(at, 1);
		leaf.lists.splice(at, 1);
		this.keyCount--;
		if (leaf.keys.length === 0) this.leaves.splice(li, 1);
	}

	/** The key's list of values (the tree's own array), or a new empty one. */
	search(key: unknown): unknown[] {
		if (this.leaves.length === 0) return [];
		const leaf = this.leaves[this.leafAt(key)];
		const at = this.position(leaf.keys, key);
		return at < leaf.keys.length && this.compareKeys(leaf.keys[at], key) === 0 ? leaf.lists[at] : [];
	}

	/** The values of every key within the bounds ($gt/$gte, $lt/$lte; the stricter of each pair), in key order. */
	betweenBounds(query: Bounds): unknown[] {
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
			const { keys, lists } = this.leaves[li];
			let i = 0;
			if (first) while (i < keys.length && !above(keys[i])) i++;
			for (; i < keys.length; i++) {
				if (!below(keys[i])) return res;
				for (const v of lists[i]) res.push(v);
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
		for (const { keys, lists } of this.leaves) for (let i = 0; i < keys.length; i++) fn({ key: keys[i], data: lists[i] });
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
