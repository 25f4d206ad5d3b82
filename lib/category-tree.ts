/** The category tree: building it, walking down (listing filters) and up (breadcrumbs, index paths). */

export interface CategoryNode {
	id: string;
	name: string;
	slug: string;
	parentId?: string | null;
	description?: string;
	position?: number;
}

/** A stored category (the `categories` collection). */
export interface Category extends CategoryNode {
	createdAt: Date;
	updatedAt?: Date;
}

export type CategoryTree<C extends CategoryNode = CategoryNode> = C & { children: CategoryTree<C>[] };

function byPositionThenName(a: CategoryNode, b: CategoryNode): number {
	return (a.position ?? 0) - (b.position ?? 0) || a.name.localeCompare(b.name);
}

/** Nested tree; a category whose parent is missing shows as a root rather than vanishing. */
export function buildCategoryTree<C extends CategoryNode>(categories: C[]): CategoryTree<C>[] {
	const nodes = new Map<string, CategoryTree<C>>();
	for (const c of categories) nodes.set(c.id, { ...c, parentId: c.parentId ?? null, children: [] });
	const roots: CategoryTree<C>[] = [];
	for (const node of nodes.values()) {
		const parent = node.parentId ? nodes.get(node.parentId) : undefined;
		if (parent && parent !== node) parent.children.push(node);
		else roots.push(node);
	}
	const sort = (list: CategoryTree<C>[]) => {
		list.sort(byPositionThenName);
		for (const n of list) sort(n.children);
	};
	sort(roots);
	return roots;
}

/** The category and everything below it (a listing of "Clothing" includes "T-Shirts"). */
export function descendantIds(categories: CategoryNode[], rootId: string): string[] {
	const children = new Map<string, string[]>();
	for (const c of categories) {
		if (!c.parentId) continue;
		const list = children.get(c.parentId) ?? [];
		list.push(c.id);
		children.set(c.parentId, list);
	}
	const seen = new Set<string>([rootId]);
	const queue = [rootId];
	while (queue.length) {
		for (const child of children.get(queue.shift()!) ?? []) {
			// The seen-set keeps a corrupted (cyclic) tree from looping forever.
			if (!seen.has(child)) {
				seen.add(child);
				queue.push(child);
			}
		}
	}
	return [...seen];
}

/** Root-first path to the category, inclusive: [Clothing, T-Shirts]. Empty when unknown. */
export function ancestorPath<C extends CategoryNode>(categories: C[] | Map<string, C>, id: string | null | undefined): C[] {
	const byId = categories instanceof Map ? categories : new Map(categories.map((c) => [c.id, c]));
	const path: C[] = [];
	const seen = new Set<string>();
	let current = id ? byId.get(id) : undefined;
	while (current && !seen.has(current.id)) {
		seen.add(current.id);
		path.unshift(current);
		current = current.parentId ? byId.get(current.parentId) : undefined;
	}
	return path;
}

/** Moving `id` under `newParentId` would make it its own ancestor. */
export function wouldCreateCycle(categories: CategoryNode[], id: string, newParentId: string | null | undefined): boolean {
	if (!newParentId) return false;
	return descendantIds(categories, id).includes(newParentId);
}
