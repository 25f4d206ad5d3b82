/**
 * Which rows of a generated catalog (lib/demo-catalog.ts) are new to the store: re-running a seed
 * adds only what is missing and links new rows to the categories already stored.
 */
import type { DemoCatalog } from "./demo-catalog";

/** What the store already holds of the catalog's natural keys. */
export interface StoredCatalogKeys {
	/** Stored id of each category slug. */
	categoryIds: Map<string, string>;
	productSlugs: Set<string>;
	skus: Set<string>;
}

/** The rows to insert: new categories, new products, their new variants and the variants' opening stock rows. */
export function newCatalogRows(catalog: DemoCatalog, stored: StoredCatalogKeys, reference: string) {
	// A category already stored keeps its id: new children and products point at it.
	const categoryId = new Map(catalog.categories.map((c) => [c.id, stored.categoryIds.get(c.slug) ?? c.id]));
	const categories = catalog.categories.filter((c) => !stored.categoryIds.has(c.slug)).map((c) => ({ ...c, parentId: c.parentId && categoryId.get(c.parentId) }));
	const products = catalog.products.filter((p) => !stored.productSlugs.has(p.slug)).map((p) => ({ ...p, categoryId: p.categoryId && categoryId.get(p.categoryId) }));
	const productIds = new Set(products.map((p) => p.id));
	const variants = catalog.variants.filter((v) => productIds.has(v.productId) && !stored.skus.has(v.sku));
	// Opening stock is a purchase, so the audit trail of every variant sums to its stock.
	const openingStock = variants.filter((v) => v.stock > 0).map((v) => ({ variantId: v.id, productId: v.productId, delta: v.stock, type: "purchase", reference, stockAfter: v.stock, createdAt: v.createdAt }));
	return { categories, products, variants, openingStock };
}
